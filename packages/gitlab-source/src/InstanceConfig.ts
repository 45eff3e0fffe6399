/**
 * Settings of one GitLab instance: where it is, how to authenticate, what to sync, how politely.
 * The runner builds these from its config file and passes them through `decode`, whose errors name
 * the offending field.
 */
import { Data, Duration, Effect, Redacted, Schema, SchemaIssue, SchemaTransformation } from "effect"

/** Normalises an instance URL: http(s) only, no query/fragment/credentials, no trailing slash. */
export const normaliseUrl = (input: string): string => {
  let url: URL
  try {
    url = new URL(input.trim())
  } catch {
    throw new Error(`not a URL: ${JSON.stringify(input)} (expected e.g. https://gitlab.example.com or https://host/gitlab)`)
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`unsupported scheme ${url.protocol} (use http:// or https://)`)
  }
  if (url.username !== "" || url.password !== "") throw new Error("credentials in the URL are not allowed; use token")
  if (url.search !== "" || url.hash !== "") throw new Error("the URL must not have a query or fragment")
  const path = url.pathname.replace(/\/+$/, "")
  return `${url.protocol}//${url.host.toLowerCase()}${path}`
}

const InstanceUrl = Schema.String.pipe(
  Schema.decodeTo(
    Schema.String,
    SchemaTransformation.transformEffect({
      decode: (s) => {
        try {
          return Effect.succeed(normaliseUrl(s))
        } catch (e) {
          return Effect.fail(new SchemaIssue.InvalidValue({ message: (e as Error).message }, s))
        }
      },
      encode: (s) => Effect.succeed(s)
    })
  )
)

/** Duration given as text ("10 minutes", "30 seconds") or a number of milliseconds. */
const DurationInput = Schema.Union([Schema.DurationFromString, Schema.DurationFromMillis])

const PositiveInt = Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1)))

export const PrivacyMode = Schema.Literals(["keep", "hash", "drop"])
export type PrivacyMode = typeof PrivacyMode.Type

export const Privacy = Schema.Struct({
  emails: PrivacyMode.pipe(Schema.withDecodingDefaultKey(Effect.succeed("keep" as const))),
  names: PrivacyMode.pipe(Schema.withDecodingDefaultKey(Effect.succeed("keep" as const)))
})
export type Privacy = typeof Privacy.Type

export const AuthKind = Schema.Literals(["private-token", "oauth"])
export type AuthKind = typeof AuthKind.Type

/** A project or group reference: a web link, a full path, or a numeric id. */
export const Reference = Schema.Union([Schema.String, Schema.Int])
export type Reference = typeof Reference.Type

export const InstanceConfig = Schema.Struct({
  /** Base URL: http or https, optional port and relative root (https://host/gitlab); normalised. */
  url: InstanceUrl,
  /** Personal/project/group access token or OAuth token. Only ever sent as a header. */
  token: Schema.RedactedFromValue(Schema.NonEmptyString),
  /** "private-token" → `PRIVATE-TOKEN` header; "oauth" → `Authorization: Bearer`. */
  authKind: AuthKind.pipe(Schema.withDecodingDefaultKey(Effect.succeed("private-token" as const))),
  projects: Schema.Array(Reference).pipe(Schema.withDecodingDefaultKey(Effect.succeed([]))),
  groups: Schema.Array(Reference).pipe(Schema.withDecodingDefaultKey(Effect.succeed([]))),
  includeArchived: Schema.Boolean.pipe(Schema.withDecodingDefaultKey(Effect.succeed(false))),
  /** PEM bundle of additional trusted CAs (private PKI). */
  caFile: Schema.optionalKey(Schema.NonEmptyString),
  /** Disables TLS verification (warned about on every run). */
  insecureSkipVerify: Schema.Boolean.pipe(Schema.withDecodingDefaultKey(Effect.succeed(false))),
  /** Explicit proxy URL; otherwise HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment. */
  proxy: Schema.optionalKey(Schema.NonEmptyString),
  concurrency: PositiveInt.pipe(Schema.withDecodingDefaultKey(Effect.succeed(4))),
  requestsPerMinute: PositiveInt.pipe(Schema.withDecodingDefaultKey(Effect.succeed(300))),
  backfillDays: PositiveInt.pipe(Schema.withDecodingDefaultKey(Effect.succeed(31))),
  cursorOverlap: DurationInput.pipe(Schema.withDecodingDefaultKey(Effect.succeed("10 minutes"))),
  privacy: Privacy.pipe(Schema.withDecodingDefaultKey(Effect.succeed({}))),
  /**
   * Read diff stats and commits of many MRs per GraphQL request (`MergeRequestDetails`); false
   * reads them per MR over REST (about two more requests per changed MR).
   */
  graphql: Schema.Boolean.pipe(Schema.withDecodingDefaultKey(Effect.succeed(true))),
  /** MRs per GraphQL request (GitLab's page size caps it at 100). */
  graphqlBatchSize: PositiveInt.pipe(Schema.check(Schema.isLessThanOrEqualTo(100)), Schema.withDecodingDefaultKey(Effect.succeed(50))),
  /** Budget for one request including reading its body. */
  requestTimeout: DurationInput.pipe(Schema.withDecodingDefaultKey(Effect.succeed("30 seconds")))
})
export type InstanceConfig = typeof InstanceConfig.Type
export type InstanceConfigInput = typeof InstanceConfig.Encoded

export class InvalidInstanceConfig extends Data.TaggedError("InvalidInstanceConfig")<{
  readonly field: string
  readonly message: string
}> {}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const fieldOf = (path: ReadonlyArray<unknown> | undefined, prefix: string): string => {
  const parts = (path ?? []).map((p) => (typeof p === "object" && p !== null && "key" in p ? (p as { key: unknown }).key : p))
  return [prefix, ...parts.map(String)].filter((s) => s !== "").join(".")
}

/** Decodes settings; the error names the first offending field, e.g. `instances[0].concurrency`. */
export const decode = (input: unknown, options: { readonly fieldPrefix?: string } = {}) =>
  Schema.decodeUnknownEffect(InstanceConfig)(input, { errors: "all" }).pipe(
    Effect.mapError((error) => {
      const issues = formatter(error.issue).issues
      const first = issues[0]
      const field = fieldOf(first?.path, options.fieldPrefix ?? "")
      const text = issues.map((i) => `${fieldOf(i.path, options.fieldPrefix ?? "") || "(config)"}: ${i.message}`).join("; ")
      return new InvalidInstanceConfig({ field: field || "(config)", message: `invalid GitLab instance settings: ${text}` })
    }),
    Effect.tap((config) =>
      config.caFile !== undefined && config.insecureSkipVerify
        ? Effect.fail(new InvalidInstanceConfig({
          field: fieldOf(["insecureSkipVerify"], options.fieldPrefix ?? ""),
          message: "invalid GitLab instance settings: caFile and insecureSkipVerify exclude each other; prefer caFile"
        }))
        : Effect.void
    )
  )

/** Convenience for tests and the demo: decode or throw. */
export const make = (input: InstanceConfigInput | { readonly [k: string]: unknown }): InstanceConfig =>
  Effect.runSync(decode(input).pipe(Effect.orDie))

export const overlapMillis = (config: InstanceConfig): number => Duration.toMillis(config.cursorOverlap)
export const timeoutMillis = (config: InstanceConfig): number => Duration.toMillis(config.requestTimeout)
export const tokenValue = (config: InstanceConfig): string => Redacted.value(config.token)
