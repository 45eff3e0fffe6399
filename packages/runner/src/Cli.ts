/**
 * The `mhq-sync` command line. Every command loads the config the same way (file, .env,
 * environment), reports every config problem at once, and ends with a documented exit code:
 *
 *   0  success (also: stopped by SIGTERM/SIGINT after a clean shutdown)
 *   1  runtime failure (GitLab token rejected, database unreachable, a batch could not be replayed …)
 *   2  invalid configuration or command-line usage
 *   3  `check` found at least one problem (✗)
 */
import { Staging } from "@mhq-sync/core"
import { Delivery, Heartbeat, Keys } from "@mhq-sync/mhq-sink"
import { Console, Duration, Effect, Layer, Logger, Option, Ref, References, Schema } from "effect"
import { Command, Flag, GlobalFlag } from "effect/cli"
import * as Agent from "./Agent.ts"
import * as AppConfig from "./AppConfig.ts"
import * as Check from "./Check.ts"
import * as Demo from "./Demo.ts"
import * as HealthServer from "./HealthServer.ts"
import * as Status from "./Status.ts"
import * as Version from "./Version.ts"

// ---------------------------------------------------------------------------------------------
// Shared flags and the config every command starts from

const shared = {
  config: Flag.String("config").pipe(
    Flag.withAlias("c"),
    Flag.withDescription("Config file (default ./mhq-sync.json, else the older agent's ./config.json)"),
    Flag.optional
  ),
  envFile: Flag.String("env-file").pipe(Flag.withDescription("Env file (default ./.env when present)"), Flag.optional)
}

const root = Command.make("mhq-sync").pipe(
  Command.withSharedFlags(shared),
  Command.withDescription(
    "Syncs engineering data from your self-hosted GitLab to MiddlewareHQ: fetches, minimises, stages in " +
      "PostgreSQL, ships sealed batches. Exit codes: 0 ok, 1 failure, 2 invalid config or usage, 3 check found problems."
  )
)

const levels = { debug: "Debug", info: "Info", warn: "Warn", error: "Error" } as const

/** Logs go to stderr so stdout stays clean for command output (status --json, keygen …). */
const loggingLayer = (config: AppConfig.AppConfig, flagLevel: Option.Option<string>, quiet: boolean) => {
  const json = config.log.format === "json" || (config.log.format === "auto" && !process.stderr.isTTY)
  const logger = Logger.withConsoleError(json ? Logger.formatJson : Logger.formatSimple)
  const level = Option.getOrElse(flagLevel, () => (quiet && config.log.level === "info" ? "Warn" : levels[config.log.level]))
  return Layer.mergeAll(
    Logger.layer([logger]),
    Layer.succeed(References.MinimumLogLevel, level as "Info")
  )
}

interface Needs {
  readonly gitlab?: boolean
  readonly delivery?: boolean
  /** One-shot informational commands log warnings and errors only (unless --log-level). */
  readonly quiet?: boolean
}

/** Loads and checks the config, installs logging, runs `body`; failures become clean messages + exit codes. */
const withConfig = <A, E, R>(needs: Needs, body: (loaded: AppConfig.Loaded) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const flags = yield* root
    const flagLevel = yield* GlobalFlag.LogLevel
    const loaded = yield* AppConfig.load({
      configFile: Option.getOrUndefined(flags.config),
      envFile: Option.getOrUndefined(flags.envFile),
      require: { gitlab: needs.gitlab, delivery: needs.delivery }
    })
    return yield* body(loaded).pipe(Effect.provide(loggingLayer(loaded.config, flagLevel as Option.Option<string>, needs.quiet ?? false)))
  }).pipe(Effect.catch((e) => Effect.fail(toCommandFailed(e))))

/** Every typed failure ends as one clear line and an exit code (no stack traces for users). */
export const toCommandFailed = (e: unknown): Agent.CommandFailed => {
  const err = e as { _tag?: string; message?: string; exitCode?: number }
  if (err._tag === "CommandFailed") return e as Agent.CommandFailed
  if (err._tag === "ConfigError") return new Agent.CommandFailed({ message: err.message ?? "invalid configuration", exitCode: 2 })
  return new Agent.CommandFailed({ message: `${err._tag ? `${err._tag}: ` : ""}${err.message ?? String(e)}`, exitCode: 1 })
}

/** The services of a data command: staging (+ database) and the runner's state … */
const baseLayer = (config: AppConfig.AppConfig) => Layer.mergeAll(Agent.stagingLayer(config), Agent.AgentState.layer)
/** … plus the sink. */
const dataLayer = (config: AppConfig.AppConfig) => Agent.sinkLayer(config).pipe(Layer.provideMerge(baseLayer(config)))

// ---------------------------------------------------------------------------------------------
// run: the daemon

/** `run` on a machine with nothing configured at all: one demo cycle instead of a list of errors. */
const unconfigured = (config: AppConfig.AppConfig) =>
  config.gitlab.length === 0 && config.mhq.webhookUrl === undefined && config.mhq.clientId === undefined &&
  config.mhq.publicKey === undefined

const runDemoInstead = Effect.gen(function*() {
  yield* Console.log("No GitLab is configured (GITLAB_DOMAIN_URL, config.json or mhq-sync.json): running one demo cycle.\n" +
    "Configure GitLab and MHQ (see README.md, or `mhq-sync check`) to run the agent for real.\n")
  // The simulated GitLab is plain http on loopback: its warning would only confuse a first look.
  const result = yield* Demo.run({ projects: 4, mrsPerProject: 25, keep: false }).pipe(
    Effect.provideService(References.MinimumLogLevel, "Error")
  )
  if (!result.complete) return yield* new Agent.CommandFailed({ message: "the receiver did not get every staged record", exitCode: 1 })
})

const run = Command.make("run", {}, () =>
  Effect.gen(function*() {
    const flags = yield* root
    const loaded = yield* AppConfig.load({ configFile: Option.getOrUndefined(flags.config), envFile: Option.getOrUndefined(flags.envFile) }).pipe(Effect.option)
    return Option.isSome(loaded) && unconfigured(loaded.value.config) ? "demo" as const : "daemon" as const
  }).pipe(Effect.flatMap((mode) => mode === "demo" ? withConfig({ quiet: true }, () => runDemoInstead) : daemon))
).pipe(Command.withDescription("Run the agent: a fetch+send cycle now, then fetch and send on their intervals, heartbeats, /healthz and /metrics (with nothing configured: one demo cycle)"))

const daemon = Effect.suspend(() =>
  withConfig({ gitlab: true, delivery: true }, (loaded) =>
    Effect.gen(function*() {
      const config = loaded.config
      const targets = yield* Agent.instances(config)
      const state = yield* Agent.AgentState
      const trigger = yield* Agent.FetchTrigger
      const lifecycle = { stopping: false }
      yield* Effect.addFinalizer(() => Effect.sync(() => (lifecycle.stopping = true)))
      if (config.http.listen) {
        const server = yield* HealthServer.make(config.http.listen, {
          live: Effect.sync(() => !lifecycle.stopping),
          ready: Effect.gen(function*() {
            const staging = yield* Staging.Staging
            return yield* staging.summary.pipe(
              Effect.timeout("3 seconds"),
              Effect.match({
                onFailure: (e) => ({ ok: false, detail: `database not ready: ${(e as { message?: string }).message ?? e}` }),
                onSuccess: () => ({ ok: !lifecycle.stopping, detail: lifecycle.stopping ? "stopping" : "ready" })
              })
            )
          })
        })
        yield* Effect.logInfo(`health and metrics on ${server.url}/healthz, /readyz, /metrics`)
      }
      yield* Effect.logInfo(`mhq-sync ${Version.current} running: ${targets.length} GitLab instance(s), fetch every ${Duration.format(config.sync.fetchInterval)}, send every ${Duration.format(config.sync.sendInterval)}, heartbeat every ${Duration.format(config.mhq.heartbeatInterval)}`)
      yield* Agent.schedule(
        Agent.fetchCycle(targets, { skipWhenLocked: true }),
        Agent.sendCycle(),
        { fetchInterval: config.sync.fetchInterval, sendInterval: config.sync.sendInterval },
        (next) => Ref.update(state, (s) => ({ ...s, ...(next.fetchAt ? { nextFetchAt: next.fetchAt } : {}), ...(next.sendAt ? { nextSendAt: next.sendAt } : {}) })),
        trigger
      )
    }).pipe(
      Effect.onInterrupt(() => Effect.logInfo("stopping: finishing the open transaction, sending a stopping heartbeat")),
      Effect.scoped,
      Effect.provide(Layer.unwrap(Effect.gen(function*() {
        const state = yield* Agent.AgentState
        return Heartbeat.layer({ details: Agent.heartbeatDetails(loaded.config).pipe(Effect.provideService(Agent.AgentState, state)) })
      })).pipe(
        Layer.provideMerge(Agent.commandsLayer),
        Layer.provideMerge(Layer.merge(dataLayer(loaded.config), Agent.FetchTrigger.layer))
      ))
    )))

// ---------------------------------------------------------------------------------------------
// one-shot cycles

const printFetch = (reports: ReadonlyArray<{ readonly instance: string; readonly projects: ReadonlyArray<{ readonly projectPath: string; readonly status: string; readonly staged: { readonly inserted: number; readonly updated: number; readonly unchanged: number; readonly quarantined: number } }> }>) =>
  Console.log(reports.flatMap((r) => r.projects.map((p) =>
    `fetched ${p.projectPath}: ${p.status} — ${p.staged.inserted} new, ${p.staged.updated} changed, ${p.staged.unchanged} unchanged, ${p.staged.quarantined} quarantined`
  )).join("\n") || "no project fetched")

const printSend = (r: { readonly packed: number; readonly delivered: number; readonly records: number; readonly retried: number; readonly failed: number }) =>
  Console.log(`sent: ${r.packed} batches packed, ${r.delivered} delivered (${r.records} records), ${r.retried} to retry, ${r.failed} failed`)

const failOnFetchErrors = (reports: ReadonlyArray<{ readonly status: string; readonly errors: ReadonlyArray<string>; readonly instance: string }>) => {
  const failed = reports.filter((r) => r.status === "failed")
  return failed.length > 0
    ? Effect.fail(new Agent.CommandFailed({ message: failed.map((r) => `${r.instance}: ${r.errors.join("; ")}`).join("\n"), exitCode: 1 }))
    : Effect.void
}

const sync = Command.make("sync", {}, () =>
  withConfig({ gitlab: true, delivery: true }, (loaded) =>
    Effect.gen(function*() {
      const targets = yield* Agent.instances(loaded.config)
      const reports = yield* Agent.fetchCycle(targets, { wait: "10 minutes" })
      yield* printFetch(reports)
      yield* printSend(yield* Agent.sendCycle())
      yield* failOnFetchErrors(reports)
    }).pipe(Effect.provide(dataLayer(loaded.config))))
).pipe(Command.withDescription("One fetch+send cycle now, then exit"))

const fetch = Command.make("fetch", {}, () =>
  withConfig({ gitlab: true }, (loaded) =>
    Effect.gen(function*() {
      const targets = yield* Agent.instances(loaded.config)
      const reports = yield* Agent.fetchCycle(targets, { wait: "10 minutes" })
      yield* printFetch(reports)
      yield* failOnFetchErrors(reports)
    }).pipe(Effect.provide(baseLayer(loaded.config))))
).pipe(Command.withDescription("Fetch from GitLab into staging now (nothing is sent)"))

const send = Command.make("send", {}, () =>
  withConfig({ delivery: true }, (loaded) =>
    Agent.sendCycle().pipe(Effect.flatMap(printSend), Effect.provide(dataLayer(loaded.config))))
).pipe(Command.withDescription("Pack what changed and deliver every due batch now"))

// ---------------------------------------------------------------------------------------------
// replay

const IsoTime = Schema.String.pipe(Schema.check(Schema.makeFilter((s: string) => !Number.isNaN(Date.parse(s)) || "Expected an ISO time such as 2026-11-01T00:00:00Z")))

const replay = Command.make("replay", {
  batch: Flag.String("batch").pipe(
    Flag.withDescription("Re-send one batch: same id, same records, marked mhq-replay"),
    Flag.withSchema(Schema.String.pipe(Schema.check(Schema.isUUID()))),
    Flag.optional
  ),
  since: Flag.String("since").pipe(Flag.withDescription("Re-send the current content of every record staged since this ISO time"), Flag.withSchema(IsoTime), Flag.optional),
  kind: Flag.String("kind").pipe(Flag.withDescription("With --since: only this kind (merge_request, note, pipeline …)"), Flag.optional)
}, ({ batch, kind, since }) =>
  withConfig({ delivery: true }, (loaded) =>
    Effect.gen(function*() {
      const delivery = yield* Delivery.Delivery
      if (Option.isSome(batch) === Option.isSome(since)) {
        return yield* new Agent.CommandFailed({ message: "give exactly one of --batch <id> or --since <ISO time>", exitCode: 2 })
      }
      if (Option.isSome(kind) && Option.isNone(since)) {
        return yield* new Agent.CommandFailed({ message: "--kind only goes with --since", exitCode: 2 })
      }
      const report = Option.isSome(batch)
        ? yield* delivery.replayBatch(batch.value).pipe(
          Effect.catchTag("BatchNotFound", (e) => Effect.fail(new Agent.CommandFailed({ message: `${e.message} — list batches with mhq-sync status`, exitCode: 1 })))
        )
        : yield* delivery.replaySince(new Date(Option.getOrThrow(since)), { kind: Option.getOrUndefined(kind) })
      yield* printSend(report)
    }).pipe(Effect.provide(dataLayer(loaded.config))))
).pipe(Command.withDescription("Replay staged batches: --batch <id>, or --since <ISO time> [--kind <kind>]"))

// ---------------------------------------------------------------------------------------------
// status, check, keygen, config, demo

const status = Command.make("status", {
  json: Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable output"), Flag.withDefault(false))
}, ({ json }) =>
  withConfig({ quiet: true }, (loaded) =>
    Status.collect.pipe(
      Effect.flatMap((report) => Console.log(json ? JSON.stringify(report, null, 2) : Status.render(report))),
      Effect.provide(Agent.stagingLayer(loaded.config))
    ))
).pipe(Command.withDescription("Per project: last run, cursors, staged counts, pending and failed batches, quarantine, last error"))

const check = Command.make("check", {}, () =>
  withConfig({ quiet: true }, (loaded) =>
    Effect.gen(function*() {
      const items = yield* Check.run(loaded)
      yield* Console.log(Check.render(items))
      const failed = items.filter((i) => !i.ok).length
      if (failed > 0) return yield* new Agent.CommandFailed({ message: `${failed} check(s) failed`, exitCode: 3 })
      yield* Console.log("all checks passed")
    }))
).pipe(Command.withDescription("Run the setup checklist against GitLab, the webhook and the database"))

const keygen = Command.make("keygen", {
  json: Flag.Boolean("json").pipe(Flag.withDescription("Print the key pair as JSON"), Flag.withDefault(false))
}, ({ json }) =>
  Effect.gen(function*() {
    const pair = Keys.generateKeyPair()
    yield* Console.log(json ? JSON.stringify({ public_key: pair.publicKey, private_key: pair.privateKey }) : [
      "A new X25519 key pair for MHQ (libsodium sealed boxes).",
      "",
      `public key  (give to every agent as MHQ_PUBLIC_KEY): ${pair.publicKey}`,
      `private key (keep secret, on MHQ's side only):        ${pair.privateKey}`
    ].join("\n"))
  })
).pipe(Command.withDescription("Generate an X25519 key pair for MHQ admins"))

const configCmd = Command.make("config", {
  json: Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable output"), Flag.withDefault(false))
}, ({ json }) =>
  withConfig({ quiet: true }, (loaded) =>
    Effect.gen(function*() {
      const display = AppConfig.toDisplay(loaded.config)
      if (json) return yield* Console.log(JSON.stringify({ config: display, sources: Object.fromEntries(loaded.sources), files: loaded.files }, null, 2))
      const lines: Array<string> = [`files read: ${loaded.files.length > 0 ? loaded.files.join(", ") : "none"}`, ""]
      const walk = (value: unknown, prefix: string) => {
        if (value !== null && typeof value === "object" && !Array.isArray(value)) {
          for (const [k, v] of Object.entries(value)) walk(v, prefix ? `${prefix}.${k}` : k)
        } else if (Array.isArray(value) && value.some((v) => typeof v === "object" && v !== null)) {
          value.forEach((v, i) => walk(v, `${prefix}[${i}]`))
        } else {
          const source = loaded.sources.get(prefix) ?? (value === undefined || value === null ? "unset" : "default")
          lines.push(`${prefix} = ${JSON.stringify(value) ?? "(unset)"}    # ${source}`)
        }
      }
      walk(display, "")
      yield* Console.log(lines.join("\n"))
    }))
).pipe(Command.withDescription("Print the effective configuration (secrets masked) and where each value came from"))

const demo = Command.make("demo", {
  projects: Flag.Int("projects").pipe(Flag.withDescription("Simulated projects"), Flag.withDefault(4)),
  mrs: Flag.Int("mrs").pipe(Flag.withDescription("Merge requests per simulated project"), Flag.withDefault(25)),
  keep: Flag.Boolean("keep").pipe(Flag.withDescription("Keep the temporary data directory"), Flag.withDefault(false))
}, ({ keep, mrs, projects }) =>
  Effect.gen(function*() {
    const flagLevel = yield* GlobalFlag.LogLevel
    const result = yield* Demo.run({ projects, mrsPerProject: mrs, keep }).pipe(
      Effect.provide(Layer.mergeAll(
        Logger.layer([Logger.withConsoleError(Logger.formatSimple)]),
        Layer.succeed(References.MinimumLogLevel, Option.getOrElse(flagLevel as Option.Option<string>, () => "Error") as "Error")
      ))
    )
    if (!result.complete) return yield* new Agent.CommandFailed({ message: "the receiver did not get every staged record", exitCode: 1 })
  }).pipe(Effect.catch((e) => Effect.fail(toCommandFailed(e))))
).pipe(Command.withDescription("No account needed: one full cycle against a simulated GitLab and a local MHQ receiver"))

export const command = root.pipe(
  Command.withSubcommands([run, sync, fetch, send, replay, status, check, keygen, configCmd, demo])
)

export const cli = Command.run(command, { version: Version.current })
