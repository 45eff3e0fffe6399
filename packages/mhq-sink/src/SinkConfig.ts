/**
 * Settings of the MHQ sink, validated once: the webhook URL must be https (plain http only to a
 * loopback host), keys must parse, secrets stay `Redacted`. `effective` is the view without
 * secrets that heartbeats and status may show.
 */
import { isIP } from "node:net"
import { Backoff, Staging } from "@mhq-sync/core"
import { Config, Context, Data, Duration, Effect, Layer, Option, Redacted } from "effect"
import * as Keys from "./Keys.ts"

export interface Options {
  /** MHQ_WEBHOOK_URL */
  readonly webhookUrl: string | URL
  /** MHQ_CLIENT_ID */
  readonly clientId: string
  /** MHQ_CLIENT_SECRET (signs every request) */
  readonly clientSecret: string | Redacted.Redacted<string>
  /** MHQ_PUBLIC_KEY: standard base64 of the admin's 32-byte X25519 public key */
  readonly publicKey: string
  /** Reported as agent_version and in the user-agent. */
  readonly agentVersion: string
  readonly limits?: Staging.BatchLimits | undefined
  /** Batches in flight at once (default 2). */
  readonly concurrency?: number | undefined
  /** Retry a batch until this long after its first attempt, then fail it (default 72 h). */
  readonly maxAge?: Duration.Input | undefined
  /** Retry waits (default: core's shared policy). */
  readonly backoff?: Backoff.Options | undefined
  /** Budget for one request until its response body is read (default 60 s). */
  readonly requestTimeout?: Duration.Input | undefined
  /** How long a claimed batch stays ours before another sender may take it (default 300 s). */
  readonly leaseSeconds?: number | undefined
  /** Heartbeat period (default 5 minutes). */
  readonly heartbeatInterval?: Duration.Input | undefined
  /** Execute commands from heartbeat answers (default true). */
  readonly commandsEnabled?: boolean | undefined
}

export interface Settings {
  readonly webhookUrl: URL
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
  readonly publicKey: Uint8Array
  /** As configured (base64), for display. */
  readonly publicKeyText: string
  readonly agentVersion: string
  readonly limits: Staging.BatchLimits
  readonly concurrency: number
  readonly maxAge: Duration.Duration
  readonly backoff: Backoff.Options
  readonly requestTimeout: Duration.Duration
  readonly leaseSeconds: number
  readonly heartbeatInterval: Duration.Duration
  readonly commandsEnabled: boolean
}

export class SinkConfig extends Context.Service<SinkConfig, Settings>()("@mhq-sync/mhq-sink/SinkConfig") {}

export class SinkConfigError extends Data.TaggedError("SinkConfigError")<{
  readonly setting: string
  readonly message: string
}> {}

/** 127.0.0.0/8, ::1 and localhost: the only hosts plain http may be used with. */
export const isLoopbackHost = (hostname: string): boolean => {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase()
  if (host === "localhost" || host.endsWith(".localhost")) return true
  if (isIP(host) === 4) return host.split(".")[0] === "127"
  if (isIP(host) === 6) return host === "::1" || /^::ffff:127\./.test(host)
  return false
}

/** Validates the webhook URL: https anywhere, http only to loopback; no credentials in it. */
export const parseWebhookUrl = (value: string | URL, setting = "MHQ_WEBHOOK_URL"): URL => {
  let url: URL
  try {
    url = new URL(value.toString())
  } catch {
    throw new SinkConfigError({ setting, message: `${setting} is not a valid URL` })
  }
  if (url.username !== "" || url.password !== "") {
    throw new SinkConfigError({ setting, message: `${setting} must not contain credentials (user:password@)` })
  }
  if (url.protocol === "https:") return url
  if (url.protocol === "http:") {
    if (isLoopbackHost(url.hostname)) return url
    throw new SinkConfigError({
      setting,
      message: `${setting} must use https; plain http is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost), not ${url.hostname}`
    })
  }
  throw new SinkConfigError({ setting, message: `${setting} must be an https URL, not ${url.protocol}` })
}

const positiveInt = (n: number, setting: string) => {
  if (!Number.isInteger(n) || n < 1) throw new SinkConfigError({ setting, message: `${setting} must be a positive integer` })
  return n
}

const duration = (input: Duration.Input, setting: string) => {
  const d = Duration.fromInput(input)
  if (Option.isNone(d)) throw new SinkConfigError({ setting, message: `${setting} is not a duration` })
  return d.value
}

export const makeUnsafe = (options: Options): Settings => {
  const keyError = (e: unknown) =>
    e instanceof Keys.KeyError ? new SinkConfigError({ setting: e.name, message: e.message }) : e
  let publicKey: Uint8Array
  let clientSecret: Redacted.Redacted<string>
  try {
    publicKey = Keys.parsePublicKey(options.publicKey)
    clientSecret = Keys.parseClientSecret(options.clientSecret)
  } catch (e) {
    throw keyError(e)
  }
  if (options.clientId.trim() === "") throw new SinkConfigError({ setting: "MHQ_CLIENT_ID", message: "MHQ_CLIENT_ID must not be empty" })
  const limits = options.limits ?? Staging.defaultLimits
  return {
    webhookUrl: parseWebhookUrl(options.webhookUrl),
    clientId: options.clientId,
    clientSecret,
    publicKey,
    publicKeyText: options.publicKey.trim(),
    agentVersion: options.agentVersion,
    limits: {
      maxRecords: positiveInt(limits.maxRecords, "MHQ_BATCH_MAX_RECORDS"),
      maxBytes: positiveInt(limits.maxBytes, "MHQ_BATCH_MAX_BYTES")
    },
    concurrency: positiveInt(options.concurrency ?? 2, "MHQ_SEND_CONCURRENCY"),
    maxAge: duration(options.maxAge ?? "72 hours", "MHQ_DELIVERY_MAX_AGE"),
    backoff: options.backoff ?? Backoff.defaults,
    requestTimeout: duration(options.requestTimeout ?? "60 seconds", "MHQ_REQUEST_TIMEOUT"),
    leaseSeconds: positiveInt(options.leaseSeconds ?? 300, "MHQ_LEASE_SECONDS"),
    heartbeatInterval: duration(options.heartbeatInterval ?? "5 minutes", "MHQ_HEARTBEAT_INTERVAL"),
    commandsEnabled: options.commandsEnabled ?? true
  }
}

export const make = (options: Options): Effect.Effect<Settings, SinkConfigError> =>
  Effect.try({
    try: () => makeUnsafe(options),
    catch: (e) => e instanceof SinkConfigError ? e : new SinkConfigError({ setting: "mhq-sink", message: String(e) })
  })

export const layer = (options: Options): Layer.Layer<SinkConfig, SinkConfigError> => Layer.effect(SinkConfig, make(options))

/** Reads the settings from the environment (names as in `Options`). */
export const layerConfig = (agentVersion: string) =>
  Layer.effect(
    SinkConfig,
    Effect.gen(function*() {
      const c = yield* Config.all({
        webhookUrl: Config.String("MHQ_WEBHOOK_URL"),
        clientId: Config.String("MHQ_CLIENT_ID"),
        clientSecret: Config.Redacted("MHQ_CLIENT_SECRET"),
        publicKey: Config.String("MHQ_PUBLIC_KEY"),
        maxRecords: Config.Int("MHQ_BATCH_MAX_RECORDS").pipe(Config.withDefault(Staging.defaultLimits.maxRecords)),
        maxBytes: Config.Int("MHQ_BATCH_MAX_BYTES").pipe(Config.withDefault(Staging.defaultLimits.maxBytes)),
        concurrency: Config.Int("MHQ_SEND_CONCURRENCY").pipe(Config.withDefault(2)),
        maxAge: Config.Duration("MHQ_DELIVERY_MAX_AGE").pipe(Config.withDefault(Duration.hours(72))),
        heartbeatInterval: Config.Duration("MHQ_HEARTBEAT_INTERVAL").pipe(Config.withDefault(Duration.minutes(5))),
        commandsEnabled: Config.Boolean("MHQ_COMMANDS_ENABLED").pipe(Config.withDefault(true))
      })
      return yield* make({
        webhookUrl: c.webhookUrl,
        clientId: c.clientId,
        clientSecret: c.clientSecret,
        publicKey: c.publicKey,
        agentVersion,
        limits: { maxRecords: c.maxRecords, maxBytes: c.maxBytes },
        concurrency: c.concurrency,
        maxAge: c.maxAge,
        heartbeatInterval: c.heartbeatInterval,
        commandsEnabled: c.commandsEnabled
      })
    })
  )

/** The settings without secrets (no client secret; the public key is public). */
export const effective = (s: Settings): { readonly [key: string]: string | number | boolean } => ({
  webhook_url: `${s.webhookUrl.origin}${s.webhookUrl.pathname}`,
  client_id: s.clientId,
  public_key: s.publicKeyText,
  agent_version: s.agentVersion,
  batch_max_records: s.limits.maxRecords,
  batch_max_bytes: s.limits.maxBytes,
  send_concurrency: s.concurrency,
  delivery_max_age: Duration.format(s.maxAge),
  request_timeout: Duration.format(s.requestTimeout),
  heartbeat_interval: Duration.format(s.heartbeatInterval),
  commands_enabled: s.commandsEnabled
})
