/**
 * Tells MHQ the agent is alive: a signed POST with a sealed `details` document, on its own fiber
 * (default every 5 minutes), independent of data cycles. A failed heartbeat is logged and counted,
 * never fatal. The answer may carry commands: they are stored, run once (see Commands) and their
 * outcomes travel in the next heartbeat.
 */
import { Database, Staging, Uuid } from "@mhq-sync/core"
import { Clock, Context, Effect, Fiber, Layer, Option, Ref, Schedule, Schema, Scope, Semaphore } from "effect"
import { SqlClient } from "effect/sql"
import * as Commands from "./Commands.ts"
import * as Sealing from "./Sealing.ts"
import * as SinkConfig from "./SinkConfig.ts"
import * as Webhook from "./Webhook.ts"
import * as WireProtocol from "./WireProtocol.ts"

/** What the runner knows better than the sink; every field overrides the default. */
export interface DetailsOverrides {
  readonly status?: WireProtocol.HeartbeatStatus | undefined
  readonly lastCycles?: ReadonlyArray<WireProtocol.ProjectCycle> | undefined
  readonly nextFetchAt?: Date | null | undefined
  readonly nextSendAt?: Date | null | undefined
  /** Extra effective configuration (never secrets), merged over the sink's own. */
  readonly config?: { readonly [key: string]: Schema.Json } | undefined
}
export type DetailsProvider = Effect.Effect<DetailsOverrides>

export interface Stats {
  readonly sent: number
  readonly failed: number
  readonly consecutiveFailures: number
  readonly lastAttemptAt: Date | null
  readonly lastOkAt: Date | null
  readonly lastError: string | null
}

export interface BeatResult {
  readonly id: string
  readonly ok: boolean
  readonly status: number | null
  /** Commands newly stored from the answer. */
  readonly commands: number
  readonly error: string | null
}

export interface Service {
  /** Sends one heartbeat now (never fails). */
  readonly beat: (status?: WireProtocol.HeartbeatStatus) => Effect.Effect<BeatResult>
  readonly stats: Effect.Effect<Stats>
  /** The details the next heartbeat would seal (for `status` commands and tests). */
  readonly details: Effect.Effect<{ readonly status: WireProtocol.HeartbeatStatus; readonly details: WireProtocol.HeartbeatDetails }>
  /** Waits until commands started by heartbeat answers have finished. */
  readonly awaitCommands: Effect.Effect<void>
}

export class Heartbeat extends Context.Service<Heartbeat, Service>()("@mhq-sync/mhq-sink/Heartbeat") {}

export const stateKey = "heartbeat"

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null)

export const encodeHeartbeatBody = (envelope: WireProtocol.HeartbeatEnvelope): string =>
  JSON.stringify(Schema.encodeSync(WireProtocol.HeartbeatEnvelope)(envelope))

export interface Options {
  readonly details?: DetailsProvider | undefined
}

/** Needs SinkConfig, Webhook, Staging, SqlClient, Scope; uses Commands and DatabaseInfo when present. */
export const make = (options: Options = {}) =>
  Effect.gen(function*() {
    const settings = yield* SinkConfig.SinkConfig
    const webhook = yield* Webhook.Webhook
    const staging = yield* Staging.Staging
    const sql = yield* SqlClient.SqlClient
    const commands = yield* Effect.serviceOption(Commands.Commands)
    const database = yield* Effect.serviceOption(Database.DatabaseInfo)
    const scope = yield* Scope.Scope
    const startedAt = yield* Clock.currentTimeMillis
    const stats = yield* Ref.make<Stats>({ sent: 0, failed: 0, consecutiveFailures: 0, lastAttemptAt: null, lastOkAt: null, lastError: null })
    const commandLock = yield* Semaphore.make(1)
    const commandFibers = yield* Ref.make<ReadonlyArray<Fiber.Fiber<void>>>([])

    const defaults = Effect.gen(function*() {
      const summary = yield* Effect.result(staging.summary)
      const runs = yield* staging.runs({ limit: 500 }).pipe(Effect.orElseSucceed(() => []))
      const seen = new Set<string>()
      const lastCycles: Array<WireProtocol.ProjectCycle> = []
      for (const r of runs) {
        const key = `${r.instance}\u0000${r.projectId ?? ""}`
        if (seen.has(key)) continue
        seen.add(key)
        lastCycles.push({
          instance: r.instance,
          project_id: r.projectId ?? null,
          project_path: r.projectPath ?? null,
          cycle_id: r.cycleId,
          status: r.status,
          started_at: r.startedAt.toISOString(),
          finished_at: iso(r.finishedAt)
        })
      }
      const s = summary._tag === "Success" ? summary.success : undefined
      return {
        lastCycles,
        batches: s?.batches ?? { pending: 0, failed: 0, delivered: 0, split: 0 },
        undelivered: s?.undelivered ?? 0,
        quarantined: s?.quarantined ?? 0,
        // Operation name and error kind only: database messages can quote row values.
        dbError: summary._tag === "Failure" ? `${summary.failure.operation}: ${summary.failure.cause.reason._tag}` : null
      }
    })

    const details = Effect.gen(function*() {
      const base = yield* defaults
      const extra = options.details ? yield* options.details : {}
      const now = yield* Clock.currentTimeMillis
      const s = yield* Ref.get(stats)
      const results = Option.isSome(commands) ? yield* commands.value.unreported.pipe(Effect.orElseSucceed(() => [])) : []
      const status: WireProtocol.HeartbeatStatus = extra.status ??
        (base.dbError !== null ? "failing" : base.batches.failed > 0 || base.quarantined > 0 ? "degraded" : "ok")
      const details: WireProtocol.HeartbeatDetails = {
        uptime_seconds: Math.round((now - startedAt) / 1000),
        started_at: new Date(startedAt).toISOString(),
        last_cycles: extra.lastCycles ?? base.lastCycles,
        batches: base.batches,
        undelivered_records: base.undelivered,
        quarantined: base.quarantined,
        database: {
          backend: Option.isSome(database) ? database.value.backend : "unknown",
          target: Option.isSome(database) ? database.value.target : null,
          healthy: base.dbError === null,
          error: base.dbError
        },
        next_fetch_at: iso(extra.nextFetchAt),
        next_send_at: iso(extra.nextSendAt),
        heartbeats: { sent: s.sent, failed: s.failed, consecutive_failures: s.consecutiveFailures },
        config: { ...SinkConfig.effective(settings), ...extra.config },
        command_results: results
      }
      return { status, details }
    })

    const persist = Ref.get(stats).pipe(
      Effect.flatMap((s) =>
        sql`INSERT INTO agent_state (key, value, updated_at) VALUES (${stateKey}, ${JSON.stringify({
          sent: s.sent,
          failed: s.failed,
          consecutive_failures: s.consecutiveFailures,
          last_attempt_at: iso(s.lastAttemptAt),
          last_ok_at: iso(s.lastOkAt),
          last_error: s.lastError
        })}::jsonb, now()) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`
      ),
      Effect.catchCause(() => Effect.logWarning("could not record heartbeat state")),
      Effect.asVoid
    )

    const failed = (id: string, status: number | null, error: string) =>
      Effect.gen(function*() {
        const at = new Date(yield* Clock.currentTimeMillis)
        const s = yield* Ref.updateAndGet(stats, (s) => ({
          ...s,
          failed: s.failed + 1,
          consecutiveFailures: s.consecutiveFailures + 1,
          lastAttemptAt: at,
          lastError: error
        }))
        yield* Effect.logWarning("heartbeat failed", { heartbeat_id: id, error, consecutive_failures: s.consecutiveFailures })
        yield* persist
        return { id, ok: false, status, commands: 0, error } satisfies BeatResult
      })

    const runCommands = Option.isSome(commands)
      ? commandLock.withPermit(commands.value.runPending.pipe(
        Effect.catchCause((cause) => Effect.logError("running commands failed", cause)),
        Effect.asVoid
      ))
      : Effect.void
    const startCommands = Effect.gen(function*() {
      const fiber = yield* Effect.forkIn(runCommands, scope)
      yield* Ref.update(commandFibers, (fs) => [...fs.filter((f) => f.pollUnsafe() === undefined), fiber])
    })

    const attempt = (requested?: WireProtocol.HeartbeatStatus) =>
      Effect.gen(function*() {
        const id = Uuid.v7()
        const built = yield* details
        const sealed = yield* Effect.result(Effect.tryPromise(() => Sealing.sealJson(built.details, settings.publicKey)))
        if (sealed._tag === "Failure") return yield* failed(id, null, "sealing details failed")
        const body = encodeHeartbeatBody({
          type: "heartbeat",
          version: WireProtocol.version,
          id,
          client_id: settings.clientId,
          agent_version: settings.agentVersion,
          status: requested ?? built.status,
          sent_at: new Date(yield* Clock.currentTimeMillis).toISOString(),
          details: sealed.success
        })
        const response = yield* Effect.result(webhook.post({ id, body }))
        if (response._tag === "Failure") return yield* failed(id, null, response.failure.message)
        const { status } = response.success
        if (status < 200 || status >= 300) {
          return yield* failed(id, status, `HTTP ${status}: ${Webhook.truncateBytes(response.success.body, 200)}`)
        }
        const at = new Date(yield* Clock.currentTimeMillis)
        yield* Ref.update(stats, (s) => ({ ...s, sent: s.sent + 1, consecutiveFailures: 0, lastAttemptAt: at, lastOkAt: at, lastError: null }))
        yield* persist
        let stored = 0
        if (Option.isSome(commands)) {
          yield* commands.value.markReported(built.details.command_results.map((r) => r.id)).pipe(
            Effect.catchCause((cause) => Effect.logError("could not mark command results reported", cause))
          )
          const answer = response.success.body.trim() === "" ? undefined : WireProtocol.decodeHeartbeatResponse(response.success.body)
          if (answer?._tag === "Failure") yield* Effect.logWarning("heartbeat answer is not the expected JSON; no commands taken")
          const list = answer?._tag === "Success" ? answer.success.commands ?? [] : []
          if (list.length > 0) {
            const received = yield* commands.value.receive(list).pipe(
              Effect.catchCause((cause) => Effect.as(Effect.logError("could not store commands", cause), undefined))
            )
            stored = received?.stored ?? 0
            if (stored > 0) yield* startCommands
          }
        }
        yield* Effect.logDebug("heartbeat sent", { heartbeat_id: id, status })
        return { id, ok: true, status, commands: stored, error: null } satisfies BeatResult
      })

    const beat = (status?: WireProtocol.HeartbeatStatus): Effect.Effect<BeatResult> =>
      attempt(status).pipe(
        Effect.catchCause((cause) =>
          Effect.gen(function*() {
            yield* Effect.logError("heartbeat failed unexpectedly", cause)
            return yield* failed("unknown", null, "internal error")
          })
        ),
        Effect.annotateLogs({ component: "mhq-heartbeat" })
      )

    // Pending commands left by a previous process run before the first beat reports them.
    if (Option.isSome(commands)) yield* startCommands

    return Heartbeat.of({
      beat,
      stats: Ref.get(stats),
      details,
      awaitCommands: Ref.get(commandFibers).pipe(Effect.flatMap((fs) => Fiber.awaitAll(fs)), Effect.asVoid)
    })
  })

/** The service only (beats when asked). */
export const layerService = (options: Options = {}) => Layer.effect(Heartbeat, make(options))

/**
 * The service plus its periodic fiber: a beat right away, then every `heartbeatInterval`
 * (`Schedule.spaced`); a final `stopping` beat when the layer's scope closes.
 */
export const layer = (options: Options & { readonly stoppingBeat?: boolean | undefined } = {}) =>
  Layer.effect(
    Heartbeat,
    Effect.gen(function*() {
      const service = yield* make(options)
      const settings = yield* SinkConfig.SinkConfig
      yield* service.beat().pipe(Effect.repeat(Schedule.spaced(settings.heartbeatInterval)), Effect.forkScoped)
      if (options.stoppingBeat !== false) {
        yield* Effect.addFinalizer(() => service.beat("stopping").pipe(Effect.timeoutOption("5 seconds"), Effect.asVoid))
      }
      return service
    })
  )
