/**
 * What every entity module shares: the project scope records belong to, GitLab time fields, and
 * decoding a page item by item so one malformed record goes to quarantine while its neighbours
 * are still used.
 */
import type { Staging, SyncRecord } from "@mhq-sync/core"
import { Effect, Result, Schema, SchemaIssue, SchemaTransformation, Stream } from "effect"
import type * as GitlabClient from "./GitlabClient.ts"

/** The project a record belongs to, on its instance. */
export interface ProjectScope {
  readonly instance: string
  readonly projectId: number
  readonly projectPath: string
}

/** An ISO-8601 time as GitLab sends it (Z or offset), normalised to UTC `...Z`. */
export const Time = Schema.String.pipe(
  Schema.decodeTo(
    Schema.String,
    SchemaTransformation.transformEffect({
      decode: (s) => {
        const t = Date.parse(s)
        return Number.isNaN(t)
          ? Effect.fail(new SchemaIssue.InvalidValue({ message: "Expected an ISO-8601 time" }, s))
          : Effect.succeed(new Date(t).toISOString())
      },
      encode: (s) => Effect.succeed(s)
    })
  )
)

/** A user reference; only the username is kept. */
export const UserRef = Schema.Struct({ username: Schema.String })

export interface Decoded<A> {
  readonly items: ReadonlyArray<A>
  readonly quarantine: ReadonlyArray<Staging.QuarantineEntry>
}

const safeJson = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/** Decodes each item on its own; failures become quarantine entries (raw JSON, error, origin). */
export const decodeItems = <S extends Schema.Decoder<unknown>>(
  schema: S,
  items: ReadonlyArray<unknown>,
  context: { readonly scope: ProjectScope; readonly kind: string; readonly origin: string }
): Decoded<S["Type"]> => {
  const decode = Schema.decodeUnknownResult(schema as Schema.Decoder<S["Type"]>)
  const ok: Array<S["Type"]> = []
  const quarantine: Array<Staging.QuarantineEntry> = []
  items.forEach((item, i) => {
    const r = decode(item, { errors: "all" })
    if (Result.isSuccess(r)) ok.push(r.success)
    else {
      quarantine.push({
        instance: context.scope.instance,
        kind: context.kind,
        projectId: context.scope.projectId,
        projectPath: context.scope.projectPath,
        origin: `${context.origin} [item ${i}]`,
        raw: safeJson(item),
        error: r.failure.message
      })
    }
  })
  return { items: ok, quarantine }
}

/** A quarantine entry for a whole payload that could not be used (e.g. truncated JSON). */
export const quarantinePayload = (
  scope: ProjectScope,
  kind: string,
  origin: string,
  raw: string,
  error: string
): Staging.QuarantineEntry => ({ instance: scope.instance, kind, projectId: scope.projectId, projectPath: scope.projectPath, origin, raw, error })

/** Builds a record of this scope. */
export const record = (
  scope: ProjectScope,
  kind: string,
  key: string,
  updatedAt: string,
  data: { readonly [k: string]: SyncRecord.SyncRecord["data"] }
): SyncRecord.SyncRecord => ({
  instance: scope.instance,
  kind,
  projectId: scope.projectId,
  projectPath: scope.projectPath,
  key,
  updatedAt,
  data: data as SyncRecord.SyncRecord["data"]
})

/** Two GitLab times denote the same instant (staged values are normalised, listed ones may not be). */
export const sameInstant = (a: string | undefined, b: string | undefined): boolean =>
  a !== undefined && b !== undefined && Date.parse(a) === Date.parse(b)

/** Every page of a list endpoint, decoded item by item. */
export const collect = <S extends Schema.Decoder<unknown>>(
  client: GitlabClient.GitlabClient,
  path: string,
  params: GitlabClient.Params,
  schema: S,
  context: { readonly scope: ProjectScope; readonly kind: string }
): Effect.Effect<Decoded<S["Type"]>, GitlabClient.GitlabError> =>
  Stream.runFold(
    client.paginate(path, params),
    (): { items: Array<S["Type"]>; quarantine: Array<Staging.QuarantineEntry> } => ({ items: [], quarantine: [] }),
    (acc, page) => {
      const d = decodeItems(schema, page.items, { ...context, origin: page.origin })
      acc.items.push(...d.items)
      acc.quarantine.push(...d.quarantine)
      return acc
    }
  )
