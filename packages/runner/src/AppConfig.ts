/**
 * The agent's configuration: a JSON file (`./mhq-sync.json`, or the older agent's `config.json`),
 * a `.env` file and the environment, in increasing precedence. Every problem is reported at once
 * with its path and a hint; secrets are `Redacted` and may come from `*File` keys (Docker secrets);
 * each effective value remembers where it came from (`mhq-sync config`).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Data, Duration, Effect, Option, Redacted, Schema, SchemaIssue } from "effect"
import * as DotEnv from "./DotEnv.ts"

// ---------------------------------------------------------------------------------------------
// The file format (all keys optional: defaults and the environment fill in)

const Str = Schema.String
const Num = Schema.Finite
const Bool = Schema.Boolean
const opt = Schema.optionalKey

const InstanceFile = Schema.Struct({
  url: opt(Str),
  token: opt(Str),
  tokenFile: opt(Str),
  authKind: opt(Schema.Literals(["private-token", "oauth"])),
  projects: opt(Schema.Array(Schema.Union([Str, Num]))),
  groups: opt(Schema.Array(Schema.Union([Str, Num]))),
  includeArchived: opt(Bool),
  caFile: opt(Str),
  insecureSkipVerify: opt(Bool),
  proxy: opt(Str),
  concurrency: opt(Num),
  requestsPerMinute: opt(Num),
  graphql: opt(Bool),
  graphqlBatchSize: opt(Num)
})
const Privacy = Schema.Literals(["keep", "hash", "drop"])
export const FileConfig = Schema.Struct({
  gitlab: opt(Schema.Array(InstanceFile)),
  mhq: opt(Schema.Struct({
    webhookUrl: opt(Str),
    clientId: opt(Str),
    clientSecret: opt(Str),
    clientSecretFile: opt(Str),
    publicKey: opt(Str),
    publicKeyFile: opt(Str),
    heartbeatInterval: opt(Str),
    commands: opt(Bool)
  })),
  sync: opt(Schema.Struct({
    backfillDays: opt(Num),
    cursorOverlap: opt(Str),
    fetchInterval: opt(Str),
    sendInterval: opt(Str),
    privacy: opt(Schema.Struct({ emails: opt(Privacy), names: opt(Privacy) }))
  })),
  batch: opt(Schema.Struct({
    maxRecords: opt(Num),
    maxBytes: opt(Num),
    maxAge: opt(Str),
    concurrency: opt(Num)
  })),
  database: opt(Schema.Struct({ url: opt(Str), urlFile: opt(Str), password: opt(Str), passwordFile: opt(Str), dataDir: opt(Str) })),
  http: opt(Schema.Struct({ listen: opt(Schema.Union([Str, Schema.Literal(false)])) })),
  log: opt(Schema.Struct({
    level: opt(Schema.Literals(["debug", "info", "warn", "error"])),
    format: opt(Schema.Literals(["auto", "json", "pretty"]))
  }))
})
export type FileConfig = typeof FileConfig.Type

/** The older agent's config.json. */
const LegacyFile = Schema.Struct({
  integrations: Schema.Struct({
    gitlab: Schema.Struct({ repositories: Schema.Array(Str) })
  })
})

// ---------------------------------------------------------------------------------------------
// The effective configuration

export type PrivacyMode = "keep" | "hash" | "drop"

export interface GitlabInstance {
  readonly url: string
  readonly token: Redacted.Redacted<string>
  readonly authKind: "private-token" | "oauth"
  readonly projects: ReadonlyArray<string>
  readonly groups: ReadonlyArray<string>
  readonly includeArchived: boolean
  readonly caFile: string | undefined
  readonly insecureSkipVerify: boolean
  readonly proxy: string | undefined
  readonly concurrency: number
  readonly requestsPerMinute: number
  /** Diff stats and commits of many MRs per GraphQL request (false: per MR over REST). */
  readonly graphql: boolean
  readonly graphqlBatchSize: number
}

export interface AppConfig {
  readonly gitlab: ReadonlyArray<GitlabInstance>
  readonly mhq: {
    readonly webhookUrl: URL | undefined
    readonly clientId: string | undefined
    readonly clientSecret: Redacted.Redacted<string> | undefined
    readonly publicKey: Redacted.Redacted<string> | undefined
    readonly heartbeatInterval: Duration.Duration
    readonly commands: boolean
  }
  readonly sync: {
    readonly backfillDays: number
    readonly cursorOverlap: Duration.Duration
    readonly fetchInterval: Duration.Duration
    readonly sendInterval: Duration.Duration
    readonly privacy: { readonly emails: PrivacyMode; readonly names: PrivacyMode }
  }
  readonly batch: {
    readonly maxRecords: number
    readonly maxBytes: number
    readonly maxAge: Duration.Duration
    readonly concurrency: number
  }
  readonly database: { readonly url: Redacted.Redacted<string> | undefined; readonly dataDir: string }
  readonly http: { readonly listen: { readonly host: string; readonly port: number } | undefined }
  readonly log: { readonly level: "debug" | "info" | "warn" | "error"; readonly format: "auto" | "json" | "pretty" }
}

export interface Problem {
  readonly path: string
  readonly message: string
}

export class ConfigError extends Data.TaggedError("ConfigError")<{ readonly problems: ReadonlyArray<Problem> }> {
  override get message() {
    return `invalid configuration (${this.problems.length} problem${this.problems.length === 1 ? "" : "s"}):\n` +
      this.problems.map((p) => `  ${p.path}: ${p.message}`).join("\n")
  }
}

export interface Loaded {
  readonly config: AppConfig
  /** Where each effective value came from, by path: "default", "mhq-sync.json", ".env", "env MHQ_…", "file …". */
  readonly sources: ReadonlyMap<string, string>
  /** Files that were read. */
  readonly files: ReadonlyArray<string>
}

export interface LoadOptions {
  /** --config; default ./mhq-sync.json, else the older agent's ./config.json, else none. */
  readonly configFile?: string | undefined
  /** --env-file; default ./.env when present. */
  readonly envFile?: string | undefined
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  readonly cwd?: string | undefined
  /** What the command needs beyond a valid file: reported with the other problems, all at once. */
  readonly require?: { readonly gitlab?: boolean | undefined; readonly delivery?: boolean | undefined } | undefined
}

// ---------------------------------------------------------------------------------------------
// Environment overrides: variable -> path in the file format

const envMap: ReadonlyArray<readonly [string, string, "string" | "number" | "boolean" | "list"]> = [
  ["GITLAB_DOMAIN_URL", "gitlab[0].url", "string"], // the older agent's name
  ["GITLAB_URL", "gitlab[0].url", "string"],
  ["GITLAB_ACCESS_TOKEN", "gitlab[0].token", "string"],
  ["GITLAB_ACCESS_TOKEN_FILE", "gitlab[0].tokenFile", "string"],
  ["GITLAB_AUTH_KIND", "gitlab[0].authKind", "string"],
  ["GITLAB_PROJECTS", "gitlab[0].projects", "list"],
  ["GITLAB_GROUPS", "gitlab[0].groups", "list"],
  ["GITLAB_CA_FILE", "gitlab[0].caFile", "string"],
  ["GITLAB_INSECURE_SKIP_VERIFY", "gitlab[0].insecureSkipVerify", "boolean"],
  ["GITLAB_PROXY", "gitlab[0].proxy", "string"],
  ["GITLAB_CONCURRENCY", "gitlab[0].concurrency", "number"],
  ["GITLAB_REQUESTS_PER_MINUTE", "gitlab[0].requestsPerMinute", "number"],
  ["GITLAB_GRAPHQL", "gitlab[0].graphql", "boolean"],
  ["GITLAB_GRAPHQL_BATCH_SIZE", "gitlab[0].graphqlBatchSize", "number"],
  ["MHQ_WEBHOOK_URL", "mhq.webhookUrl", "string"],
  ["MHQ_CLIENT_ID", "mhq.clientId", "string"],
  ["MHQ_CLIENT_SECRET", "mhq.clientSecret", "string"],
  ["MHQ_CLIENT_SECRET_FILE", "mhq.clientSecretFile", "string"],
  ["MHQ_PUBLIC_KEY", "mhq.publicKey", "string"],
  ["MHQ_PUBLIC_KEY_FILE", "mhq.publicKeyFile", "string"],
  ["MHQ_HEARTBEAT_INTERVAL", "mhq.heartbeatInterval", "string"],
  ["MHQ_COMMANDS", "mhq.commands", "boolean"],
  ["MHQ_BACKFILL_DAYS", "sync.backfillDays", "number"],
  ["MHQ_CURSOR_OVERLAP", "sync.cursorOverlap", "string"],
  ["MHQ_FETCH_INTERVAL", "sync.fetchInterval", "string"],
  ["MHQ_SEND_INTERVAL", "sync.sendInterval", "string"],
  ["MHQ_PRIVACY_EMAILS", "sync.privacy.emails", "string"],
  ["MHQ_PRIVACY_NAMES", "sync.privacy.names", "string"],
  ["MHQ_BATCH_MAX_RECORDS", "batch.maxRecords", "number"],
  ["MHQ_BATCH_MAX_BYTES", "batch.maxBytes", "number"],
  ["DATABASE_URL", "database.url", "string"],
  ["DATABASE_URL_FILE", "database.urlFile", "string"],
  // A password kept out of the URL (compose's postgres profile shares POSTGRES_PASSWORD from an env file).
  ["POSTGRES_PASSWORD", "database.password", "string"],
  ["DATABASE_PASSWORD", "database.password", "string"],
  ["DATABASE_PASSWORD_FILE", "database.passwordFile", "string"],
  ["MHQ_DATA_DIR", "database.dataDir", "string"],
  ["MHQ_HTTP_LISTEN", "http.listen", "string"],
  ["MHQ_LOG_LEVEL", "log.level", "string"],
  ["MHQ_LOG_FORMAT", "log.format", "string"]
]

/** Dotted path with [i] segments -> segments. */
const segments = (p: string): Array<string | number> =>
  p.split(/\.|\[(\d+)\]/).filter((s) => s !== undefined && s !== "").map((s) => (/^\d+$/.test(s) ? Number(s) : s))

const setPath = (target: Record<string, unknown>, p: string, value: unknown) => {
  const segs = segments(p)
  let cur: Record<string | number, unknown> = target
  for (let i = 0; i < segs.length - 1; i++) {
    const s = segs[i]!
    const nextIsIndex = typeof segs[i + 1] === "number"
    if (cur[s] === undefined || cur[s] === null || typeof cur[s] !== "object") cur[s] = nextIsIndex ? [] : {}
    cur = cur[s] as Record<string | number, unknown>
  }
  cur[segs[segs.length - 1]!] = value
}

const formatPath = (p: ReadonlyArray<PropertyKey>): string =>
  p.reduce<string>((acc, s) => (typeof s === "number" ? `${acc}[${s}]` : acc === "" ? String(s) : `${acc}.${String(s)}`), "")

/** Every leaf path of a JSON value (for provenance). */
const leaves = (value: unknown, prefix: string, out: Array<string>) => {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) leaves(v, prefix === "" ? k : `${prefix}.${k}`, out)
  } else if (Array.isArray(value) && value.some((v) => v !== null && typeof v === "object")) {
    value.forEach((v, i) => leaves(v, `${prefix}[${i}]`, out))
  } else out.push(prefix)
  return out
}

// ---------------------------------------------------------------------------------------------
// Value parsers

const durationPattern = /^(\d+(?:\.\d+)?)\s*(ms|millis|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)$/i
export const parseDuration = (text: string): Option.Option<Duration.Duration> => {
  const m = durationPattern.exec(text.trim())
  if (!m) return Option.none()
  const n = Number(m[1])
  const unit = m[2]!.toLowerCase()
  const ms = unit.startsWith("ms") || unit.startsWith("milli")
    ? n
    : unit.startsWith("s")
    ? n * 1000
    : unit.startsWith("m")
    ? n * 60_000
    : unit.startsWith("h")
    ? n * 3_600_000
    : n * 86_400_000
  return Option.some(Duration.millis(ms))
}

const loopbackHosts = new Set(["127.0.0.1", "localhost", "::1", "[::1]"])
export const isLoopback = (host: string) => loopbackHosts.has(host.toLowerCase()) || /^127\.\d+\.\d+\.\d+$/.test(host)

// ---------------------------------------------------------------------------------------------
// Loading

const readJson = (file: string, problems: Array<Problem>): unknown => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"))
  } catch (e) {
    problems.push({
      path: file,
      message: (e as NodeJS.ErrnoException).code === "ENOENT"
        ? "file not found — check --config"
        : `not valid JSON: ${(e as Error).message}`
    })
    return undefined
  }
}

export const load = (options: LoadOptions = {}): Effect.Effect<Loaded, ConfigError> =>
  Effect.suspend(() => {
    const cwd = options.cwd ?? process.cwd()
    const env = options.env ?? process.env
    const problems: Array<Problem> = []
    const files: Array<string> = []
    const sources = new Map<string, string>()
    let raw: Record<string, unknown> = {}

    // 1. The config file (ours, or the older agent's).
    const explicit = options.configFile !== undefined
    const candidates = explicit ? [path.resolve(cwd, options.configFile!)] : [path.join(cwd, "mhq-sync.json"), path.join(cwd, "config.json")]
    const configFile = candidates.find((f) => explicit || fs.existsSync(f))
    if (configFile) {
      const json = readJson(configFile, problems)
      if (json !== undefined) {
        files.push(configFile)
        const label = path.basename(configFile)
        if (json !== null && typeof json === "object" && "integrations" in json) {
          const legacy = Schema.decodeUnknownResult(LegacyFile)(json)
          if (legacy._tag === "Failure") {
            problems.push({ path: `${label}: integrations.gitlab.repositories`, message: "expected a list of GitLab project links" })
          } else {
            raw = { gitlab: [{ projects: [...legacy.success.integrations.gitlab.repositories] }] }
            sources.set("gitlab[0].projects", `${label} (older agent's format)`)
          }
        } else if (json !== null && typeof json === "object" && !Array.isArray(json)) {
          raw = json as Record<string, unknown>
          for (const leaf of leaves(raw, "", [])) sources.set(leaf, label)
        } else problems.push({ path: label, message: "expected a JSON object" })
      }
    }

    // 2. .env, then the process environment (higher precedence).
    let dotenv: Readonly<Record<string, string>> = {}
    const envFile = options.envFile !== undefined ? path.resolve(cwd, options.envFile) : path.join(cwd, ".env")
    if (fs.existsSync(envFile)) {
      try {
        dotenv = DotEnv.parse(fs.readFileSync(envFile, "utf8"), path.basename(envFile))
        files.push(envFile)
      } catch (e) {
        problems.push({ path: path.basename(envFile), message: (e as Error).message })
      }
    } else if (options.envFile !== undefined) {
      problems.push({ path: options.envFile, message: "env file not found — check --env-file" })
    }
    for (const [layerName, vars] of [[path.basename(envFile), dotenv], ["env", env]] as const) {
      for (const [name, target, kind] of envMap) {
        const value = vars[name]
        if (value === undefined || value === "") continue
        let parsed: unknown = value
        if (kind === "number") parsed = Number.isFinite(Number(value)) ? Number(value) : value
        else if (kind === "boolean") parsed = /^(1|true|yes|on)$/i.test(value) ? true : /^(0|false|no|off)$/i.test(value) ? false : value
        else if (kind === "list") parsed = value.split(/[\s,]+/).filter((s) => s !== "")
        else if (target === "http.listen" && /^(off|false|none)$/i.test(value)) parsed = false
        setPath(raw, target, parsed)
        sources.set(target, layerName === "env" ? `env ${name}` : `${layerName} ${name}`)
      }
    }

    // 3. Structure and types: every problem at once, unknown keys included (typos).
    const decoded = Schema.decodeUnknownResult(FileConfig)(raw, { errors: "all", onExcessProperty: "error" })
    if (decoded._tag === "Failure") {
      for (const issue of SchemaIssue.makeFormatterStandardSchemaV1()(decoded.failure.issue).issues) {
        const p = formatPath((issue.path ?? []).map((s) => (typeof s === "object" ? s.key : s)))
        const from = sources.get(p)
        problems.push({
          path: p || "(root)",
          message: `${issue.message === "Expected no excess property" ? "unknown key (typo?)" : issue.message}` +
            (from?.startsWith("env ") || from?.includes(" ") ? ` (from ${from})` : "")
        })
      }
      return Effect.fail(new ConfigError({ problems }))
    }
    const file = decoded.success
    const source = (p: string) => sources.get(p)

    // 4. Values, with defaults and semantic checks.
    const durationAt = (p: string, value: string | undefined, fallback: string): Duration.Duration => {
      if (value === undefined) {
        sources.set(p, sources.get(p) ?? "default")
        return Option.getOrThrow(parseDuration(fallback))
      }
      return Option.getOrElse(parseDuration(value), () => {
        problems.push({ path: p, message: `"${value}" is not a duration — use e.g. "6 hours", "30m", "90s"` })
        return Option.getOrThrow(parseDuration(fallback))
      })
    }
    const numberAt = (p: string, value: number | undefined, fallback: number, check: (n: number) => boolean, hint: string) => {
      if (value === undefined) {
        sources.set(p, sources.get(p) ?? "default")
        return fallback
      }
      if (!check(value)) problems.push({ path: p, message: `${value} is out of range — ${hint}${source(p)?.startsWith("env") ? ` (from ${source(p)})` : ""}` })
      return value
    }
    const secretAt = (p: string, inline: string | undefined, fileKey: string, filePath: string | undefined) => {
      if (inline !== undefined) return Redacted.make(inline.trim())
      if (filePath === undefined) return undefined
      try {
        const value = fs.readFileSync(path.resolve(cwd, filePath), "utf8").trim()
        sources.set(p, `file ${filePath}`)
        return Redacted.make(value)
      } catch (e) {
        problems.push({ path: fileKey, message: `cannot read ${filePath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` })
        return undefined
      }
    }

    const gitlab: Array<GitlabInstance> = []
    ;(file.gitlab ?? []).forEach((g, i) => {
      const at = (k: string) => `gitlab[${i}].${k}`
      let url = g.url
      if (url === undefined) {
        problems.push({ path: at("url"), message: "missing — set GITLAB_DOMAIN_URL or gitlab[" + i + "].url (e.g. https://gitlab.example.com)" })
      } else {
        try {
          const u = new URL(url)
          if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error("scheme must be http or https")
          url = u.toString().replace(/\/+$/, "")
        } catch (e) {
          problems.push({ path: at("url"), message: `"${url}" is not a valid URL (${(e as Error).message}) — e.g. https://gitlab.example.com` })
        }
      }
      const token = secretAt(at("token"), g.token, at("tokenFile"), g.tokenFile)
      if (token === undefined && !problems.some((p) => p.path === at("tokenFile"))) {
        problems.push({ path: at("token"), message: `missing — set GITLAB_ACCESS_TOKEN or gitlab[${i}].tokenFile (a token with the read_api scope)` })
      }
      const projects = (g.projects ?? []).map(String)
      const groups = (g.groups ?? []).map(String)
      if (projects.length === 0 && groups.length === 0) {
        problems.push({ path: at("projects"), message: `no projects or groups — list repository links in config.json (integrations.gitlab.repositories) or gitlab[${i}].projects / gitlab[${i}].groups` })
      }
      if (g.caFile !== undefined && !fs.existsSync(path.resolve(cwd, g.caFile))) {
        problems.push({ path: at("caFile"), message: `file ${g.caFile} not found — a PEM bundle of your private CA` })
      }
      if (g.proxy !== undefined) {
        try {
          new URL(g.proxy)
        } catch {
          problems.push({ path: at("proxy"), message: `"${g.proxy}" is not a URL — e.g. http://proxy.internal:3128` })
        }
      }
      gitlab.push({
        url: url ?? "",
        token: token ?? Redacted.make(""),
        authKind: g.authKind ?? "private-token",
        projects,
        groups,
        includeArchived: g.includeArchived ?? false,
        caFile: g.caFile === undefined ? undefined : path.resolve(cwd, g.caFile),
        insecureSkipVerify: g.insecureSkipVerify ?? false,
        proxy: g.proxy,
        concurrency: numberAt(at("concurrency"), g.concurrency, 4, (n) => Number.isInteger(n) && n >= 1 && n <= 32, "an integer from 1 to 32"),
        requestsPerMinute: numberAt(at("requestsPerMinute"), g.requestsPerMinute, 300, (n) => n >= 1 && n <= 100_000, "1 to 100000 requests per minute"),
        graphql: g.graphql ?? true,
        graphqlBatchSize: numberAt(at("graphqlBatchSize"), g.graphqlBatchSize, 50, (n) => Number.isInteger(n) && n >= 1 && n <= 100, "an integer from 1 to 100 (GitLab's page size)")
      })
    })

    const m = file.mhq ?? {}
    let webhookUrl: URL | undefined
    if (m.webhookUrl !== undefined) {
      try {
        webhookUrl = new URL(m.webhookUrl)
        const local = isLoopback(webhookUrl.hostname)
        if (webhookUrl.protocol !== "https:" && !(webhookUrl.protocol === "http:" && local)) {
          problems.push({ path: "mhq.webhookUrl", message: `must be https:// (plain http is only allowed for a loopback host) — got ${webhookUrl.protocol}//${webhookUrl.host}` })
        }
      } catch {
        problems.push({ path: "mhq.webhookUrl", message: `"${m.webhookUrl}" is not a valid URL — set MHQ_WEBHOOK_URL to the https URL MHQ gave you` })
      }
    }
    const clientSecret = secretAt("mhq.clientSecret", m.clientSecret, "mhq.clientSecretFile", m.clientSecretFile)
    const publicKey = secretAt("mhq.publicKey", m.publicKey, "mhq.publicKeyFile", m.publicKeyFile)

    const s = file.sync ?? {}
    const b = file.batch ?? {}
    const d = file.database ?? {}
    let databaseUrl = secretAt("database.url", d.url, "database.urlFile", d.urlFile)
    const databasePassword = secretAt("database.password", d.password, "database.passwordFile", d.passwordFile)
    if (databaseUrl !== undefined) {
      try {
        const u = new URL(Redacted.value(databaseUrl))
        if (databasePassword !== undefined && u.password === "") {
          u.password = encodeURIComponent(Redacted.value(databasePassword))
          databaseUrl = Redacted.make(u.toString())
        }
      } catch {
        problems.push({ path: "database.url", message: "not a valid URL — expected postgres://user:password@host:5432/database" })
      }
    }
    const dataDir = path.resolve(cwd, d.dataDir ?? "data")
    if (d.dataDir === undefined) sources.set("database.dataDir", sources.get("database.dataDir") ?? "default")

    let listen: AppConfig["http"]["listen"] = { host: "127.0.0.1", port: 9464 }
    const listenRaw = file.http?.listen
    if (listenRaw === false) listen = undefined
    else if (listenRaw !== undefined) {
      const lm = /^(?:(\[[^\]]+\]|[^:]+):)?(\d+)$/.exec(listenRaw)
      if (!lm || Number(lm[2]) > 65535) {
        problems.push({ path: "http.listen", message: `"${listenRaw}" is not host:port — e.g. 127.0.0.1:9464, or false to turn the endpoint off` })
      } else listen = { host: (lm[1] ?? "127.0.0.1").replace(/^\[|\]$/g, ""), port: Number(lm[2]) }
    } else sources.set("http.listen", "default")

    const config: AppConfig = {
      gitlab,
      mhq: {
        webhookUrl,
        clientId: m.clientId,
        clientSecret,
        publicKey,
        heartbeatInterval: durationAt("mhq.heartbeatInterval", m.heartbeatInterval, "5 minutes"),
        commands: m.commands ?? true
      },
      sync: {
        backfillDays: numberAt("sync.backfillDays", s.backfillDays, 31, (n) => Number.isInteger(n) && n >= 1 && n <= 3650, "whole days from 1 to 3650"),
        cursorOverlap: durationAt("sync.cursorOverlap", s.cursorOverlap, "10 minutes"),
        fetchInterval: durationAt("sync.fetchInterval", s.fetchInterval, "6 hours"),
        sendInterval: durationAt("sync.sendInterval", s.sendInterval, "6 hours"),
        privacy: { emails: s.privacy?.emails ?? "keep", names: s.privacy?.names ?? "keep" }
      },
      batch: {
        maxRecords: numberAt("batch.maxRecords", b.maxRecords, 500, (n) => Number.isInteger(n) && n >= 1 && n <= 100_000, "an integer from 1 to 100000"),
        maxBytes: numberAt("batch.maxBytes", b.maxBytes, 4 * 1024 * 1024, (n) => Number.isInteger(n) && n >= 4096 && n <= 256 * 1024 * 1024, "4096 to 268435456 bytes"),
        maxAge: durationAt("batch.maxAge", b.maxAge, "72 hours"),
        concurrency: numberAt("batch.concurrency", b.concurrency, 2, (n) => Number.isInteger(n) && n >= 1 && n <= 16, "an integer from 1 to 16")
      },
      database: { url: databaseUrl, dataDir },
      http: { listen },
      log: { level: file.log?.level ?? "info", format: file.log?.format ?? "auto" }
    }
    for (const p of ["mhq.commands", "sync.privacy.emails", "sync.privacy.names", "log.level", "log.format"]) {
      if (!sources.has(p)) sources.set(p, "default")
    }
    const reported = new Set(problems.map((p) => p.path))
    for (const p of [
      ...(options.require?.gitlab ? requireGitlab(config) : []),
      ...(options.require?.delivery ? requireDelivery(config) : [])
    ]) if (!reported.has(p.path)) problems.push(p)
    return problems.length > 0
      ? Effect.fail(new ConfigError({ problems }))
      : Effect.succeed({ config, sources, files })
  })

/** What `run`/`sync`/`send` additionally need: somewhere to send to, and the keys for it. */
export const requireDelivery = (config: AppConfig): ReadonlyArray<Problem> => {
  const problems: Array<Problem> = []
  if (config.mhq.webhookUrl === undefined) problems.push({ path: "mhq.webhookUrl", message: "missing — set MHQ_WEBHOOK_URL to the https URL MHQ gave you" })
  if (config.mhq.clientId === undefined) problems.push({ path: "mhq.clientId", message: "missing — set MHQ_CLIENT_ID" })
  if (config.mhq.clientSecret === undefined) problems.push({ path: "mhq.clientSecret", message: "missing — set MHQ_CLIENT_SECRET or mhq.clientSecretFile" })
  if (config.mhq.publicKey === undefined) problems.push({ path: "mhq.publicKey", message: "missing — set MHQ_PUBLIC_KEY to the public key your MHQ admin gave you (mhq-sync keygen makes one for tests)" })
  return problems
}

/** What fetching needs: at least one GitLab instance. */
export const requireGitlab = (config: AppConfig): ReadonlyArray<Problem> =>
  config.gitlab.length > 0 ? [] : [{ path: "gitlab", message: "no GitLab instance configured — set GITLAB_DOMAIN_URL and GITLAB_ACCESS_TOKEN, or add gitlab[] to mhq-sync.json" }]

export const check = (problems: ReadonlyArray<Problem>): Effect.Effect<void, ConfigError> =>
  problems.length === 0 ? Effect.void : Effect.fail(new ConfigError({ problems }))

/** The effective config as plain JSON with secrets masked, for `mhq-sync config` and heartbeats. */
export const toDisplay = (config: AppConfig): unknown =>
  JSON.parse(JSON.stringify(config, (k, v) => {
    if (Redacted.isRedacted(v)) return "<redacted>"
    if (Duration.isDuration(v)) return Duration.format(v)
    // A query string or user:password@ in a URL may carry a credential: show origin and path only.
    // (URL objects reach the replacer already as strings, through URL.prototype.toJSON.)
    if ((k === "url" || k === "proxy" || k === "webhookUrl") && typeof v === "string") {
      try {
        const u = new URL(v)
        return `${u.origin}${u.pathname.replace(/\/$/, "")}`
      } catch {
        return v
      }
    }
    return v
  }))
