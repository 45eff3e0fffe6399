/**
 * The product: composes the GitLab source, the staging store and the MHQ sink into fetch and send
 * cycles, the daemon's schedules, and the layers every CLI command builds from the config.
 */
import { Database, Locks, Staging, Uuid } from "@mhq-sync/core"
import { InstanceConfig, Sync } from "@mhq-sync/gitlab-source"
import { Commands, Delivery, Heartbeat, SinkConfig, Webhook, type WireProtocol } from "@mhq-sync/mhq-sink"
import { Context, Data, Deferred, Duration, Effect, Layer, Metric, Option, Queue, Redacted, Ref, Schedule } from "effect"
import type { SqlClient } from "effect/sql"
import * as AppConfig from "./AppConfig.ts"
import * as Version from "./Version.ts"

// ---------------------------------------------------------------------------------------------
// Errors

/** A failure that ends a command with a specific exit code (see README "Exit codes"). */
export class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly message: string; readonly exitCode: number }> {}

// ---------------------------------------------------------------------------------------------
// Metrics (rendered at /metrics)

export const metrics = {
  fetchCycles: Metric.counter("mhq_fetch_cycles_total", { description: "Fetch cycles by outcome" }),
  sendCycles: Metric.counter("mhq_send_cycles_total", { description: "Send cycles by outcome" }),
  recordsStaged: Metric.counter("mhq_records_staged_total", { description: "Records new or changed at the source and staged, by kind" }),
  batches: Metric.counter("mhq_batches_total", { description: "Batch delivery outcomes (delivered, retried, failed, split)" }),
  quarantined: Metric.counter("mhq_quarantined_total", { description: "Records quarantined (bad data kept for inspection)" }),
  lastFetch: Metric.gauge("mhq_last_successful_fetch_timestamp_seconds", { description: "Unix time of the last fetch cycle without errors" }),
  lastSend: Metric.gauge("mhq_last_successful_send_timestamp_seconds", { description: "Unix time of the last send cycle without failures" })
}

const count = (metric: Metric.Metric<number, unknown>, n: number, attributes: Record<string, string> = {}) =>
  n > 0 ? Metric.update(Metric.withAttributes(metric, attributes), n) : Effect.void

// ---------------------------------------------------------------------------------------------
// Runtime state the heartbeat and status report

export interface State {
  readonly startedAt: Date
  readonly lastFetch: ReadonlyArray<Sync.InstanceReport> | undefined
  readonly lastFetchOk: boolean | undefined
  readonly lastSend: Delivery.Report | undefined
  readonly nextFetchAt: Date | undefined
  readonly nextSendAt: Date | undefined
}
export class AgentState extends Context.Service<AgentState, Ref.Ref<State>>()("@mhq-sync/runner/AgentState") {
  static readonly layer = Layer.effect(AgentState, Ref.make<State>({
    startedAt: new Date(),
    lastFetch: undefined,
    lastFetchOk: undefined,
    lastSend: undefined,
    nextFetchAt: undefined,
    nextSendAt: undefined
  }))
}

// ---------------------------------------------------------------------------------------------
// Layers from the config

export const databaseLayer = (config: AppConfig.AppConfig) =>
  Database.layer({ url: config.database.url, dataDir: config.database.dataDir })

/** Staging + SqlClient + DatabaseInfo: what every command that touches data needs. */
export const stagingLayer = (config: AppConfig.AppConfig) => Staging.layer.pipe(Layer.provideMerge(databaseLayer(config)))

/** GitLab instance settings as the source package wants them; field names in errors match the config file. */
export const instances = (config: AppConfig.AppConfig) =>
  Effect.forEach(config.gitlab, (g, i) =>
    InstanceConfig.decode({
      url: g.url,
      token: Redacted.value(g.token),
      authKind: g.authKind,
      projects: g.projects,
      groups: g.groups,
      includeArchived: g.includeArchived,
      ...(g.caFile === undefined ? {} : { caFile: g.caFile }),
      insecureSkipVerify: g.insecureSkipVerify,
      ...(g.proxy === undefined ? {} : { proxy: g.proxy }),
      concurrency: g.concurrency,
      requestsPerMinute: g.requestsPerMinute,
      graphql: g.graphql,
      graphqlBatchSize: g.graphqlBatchSize,
      backfillDays: config.sync.backfillDays,
      cursorOverlap: Duration.toMillis(config.sync.cursorOverlap),
      privacy: config.sync.privacy
    }, { fieldPrefix: `gitlab[${i}]` })).pipe(
    Effect.mapError((e) => new AppConfig.ConfigError({ problems: [{ path: e.field, message: e.message }] }))
  )

export const sinkOptions = (config: AppConfig.AppConfig): SinkConfig.Options => ({
  webhookUrl: config.mhq.webhookUrl!,
  clientId: config.mhq.clientId!,
  clientSecret: config.mhq.clientSecret!,
  publicKey: Redacted.value(config.mhq.publicKey!),
  agentVersion: Version.current,
  limits: { maxRecords: config.batch.maxRecords, maxBytes: config.batch.maxBytes },
  concurrency: config.batch.concurrency,
  maxAge: config.batch.maxAge,
  heartbeatInterval: config.mhq.heartbeatInterval,
  commandsEnabled: config.mhq.commands
})

/**
 * SinkConfig + Webhook + Delivery over the staging layer's services. Remote commands are not part
 * of it: only the daemon takes and runs them (`commandsLayer`), so a one-shot `check`, `sync` or
 * `replay` never claims, interrupts or marks failed a command the daemon owns.
 */
export const sinkLayer = (config: AppConfig.AppConfig) =>
  Delivery.layer().pipe(
    Layer.provideMerge(Webhook.layerLive),
    Layer.provideMerge(SinkConfig.layer(sinkOptions(config)).pipe(
      Layer.catchTag("SinkConfigError", (e) =>
        Layer.effect(SinkConfig.SinkConfig, Effect.fail(new AppConfig.ConfigError({ problems: [{ path: configPathOf(e.setting), message: e.message }] }))))
    ))
  )

/**
 * The daemon's remote-command service: the sink's built-in executors, with `resync_project`
 * also starting a fetch now rather than at the next interval.
 */
export const commandsLayer = Layer.unwrap(Effect.gen(function*() {
  const trigger = yield* FetchTrigger
  const builtIn = yield* Commands.defaultExecutors
  return Commands.layer({
    extra: {
      resync_project: (command) =>
        builtIn.resync_project!(command).pipe(Effect.tap(() => Queue.offer(trigger, undefined)))
    }
  })
}))

const configPathOf = (setting: string) =>
  ({
    MHQ_WEBHOOK_URL: "mhq.webhookUrl",
    MHQ_CLIENT_ID: "mhq.clientId",
    MHQ_CLIENT_SECRET: "mhq.clientSecret",
    MHQ_PUBLIC_KEY: "mhq.publicKey"
  } as Record<string, string>)[setting] ?? setting

// ---------------------------------------------------------------------------------------------
// Cycles

const plainHttpWarning = (instance: InstanceConfig.InstanceConfig) =>
  instance.url.startsWith("http:")
    ? Effect.logWarning(`GitLab ${instance.url} is configured over plain http: the access token and all data travel unencrypted. Use https.`)
    : Effect.void

/**
 * One fetch cycle over every instance. Holds the database's "fetch" advisory lock so two agents on
 * one database never fetch at the same time (the second waits, up to `wait`).
 */
export const fetchCycle = (
  targets: ReadonlyArray<InstanceConfig.InstanceConfig>,
  options: {
    readonly wait?: Duration.Input | undefined
    readonly cycleId?: string | undefined
    /** The daemon skips a cycle while another agent on the database fetches (its data is as fresh). */
    readonly skipWhenLocked?: boolean | undefined
  } = {}
): Effect.Effect<ReadonlyArray<Sync.InstanceReport>, Locks.LockTimeout | CommandFailed, Staging.Staging | SqlClient.SqlClient | AgentState> =>
  Effect.gen(function*() {
    const state = yield* AgentState
    const cycleId = options.cycleId ?? Uuid.v7()
    yield* Effect.forEach(targets, plainHttpWarning, { discard: true })
    const locked = yield* Locks.withLock("fetch", {
      wait: options.skipWhenLocked ? Option.none() : Option.some(options.wait ?? "6 hours"),
      poll: "2 seconds"
    })(
      Effect.gen(function*() {
        yield* Effect.logInfo(`fetch cycle ${cycleId} started for ${targets.length} GitLab instance(s)`)
        return yield* Sync.runAll(targets, { cycleId })
      })
    ).pipe(
      Effect.map(Option.some),
      Effect.catchTag("LockTimeout", (e) =>
        options.skipWhenLocked
          ? Effect.as(Effect.logInfo("fetch cycle skipped: another mhq-sync on this database is fetching right now"), Option.none())
          : Effect.fail(e)),
      Effect.catchTag("SqlError", (e) => Effect.fail(new CommandFailed({ message: `database error while taking the fetch lock: ${e.message}`, exitCode: 1 })))
    )
    if (Option.isNone(locked)) return []
    const reports = locked.value
    let ok = true
    for (const report of reports) {
      for (const p of report.projects) {
        for (const [kind, n] of Object.entries(p.counts)) if (kind !== "quarantined") yield* count(metrics.recordsStaged, n, { kind })
        yield* count(metrics.quarantined, p.staged.quarantined)
        yield* Effect.logInfo(`fetched ${report.instance} ${p.projectPath}: ${p.status}, ${p.requests} requests, ${p.staged.inserted} new, ${p.staged.updated} changed, ${p.staged.unchanged} unchanged, ${p.staged.quarantined} quarantined` +
          (p.warnings.length > 0 ? `; warnings: ${p.warnings.join(" | ")}` : "") +
          (p.errors.length > 0 ? `; errors: ${p.errors.join(" | ")}` : ""))
      }
      for (const e of report.errors) yield* Effect.logError(`${report.instance}: ${e}`)
      for (const w of report.warnings) yield* Effect.logWarning(`${report.instance}: ${w}`)
      if (report.status !== "ok") ok = false
    }
    yield* count(metrics.fetchCycles, 1, { outcome: ok ? "ok" : "partial" })
    if (ok) yield* Metric.update(metrics.lastFetch, Date.now() / 1000)
    yield* Ref.update(state, (s) => ({ ...s, lastFetch: reports, lastFetchOk: ok }))
    yield* Effect.logInfo(`fetch cycle ${cycleId} finished: ${ok ? "ok" : "with problems (see above)"}`)
    return reports
  }).pipe(Effect.annotateLogs({ cycle: "fetch" }))

/** One send cycle: pack what changed and deliver every due batch. */
export const sendCycle = (options: { readonly drain?: Duration.Input | undefined } = {}) =>
  Effect.gen(function*() {
    const delivery = yield* Delivery.Delivery
    const state = yield* AgentState
    const report = options.drain === undefined
      ? yield* delivery.sendPending()
      : yield* delivery.drain({ timeout: options.drain })
    yield* count(metrics.batches, report.delivered, { outcome: "delivered" })
    yield* count(metrics.batches, report.retried, { outcome: "retried" })
    yield* count(metrics.batches, report.failed, { outcome: "failed" })
    yield* count(metrics.batches, report.split, { outcome: "split" })
    yield* count(metrics.quarantined, report.quarantined)
    const ok = report.failed === 0 && report.retried === 0
    yield* count(metrics.sendCycles, 1, { outcome: ok ? "ok" : "partial" })
    if (ok) yield* Metric.update(metrics.lastSend, Date.now() / 1000)
    yield* Ref.update(state, (s) => ({ ...s, lastSend: report }))
    yield* Effect.logInfo(`send cycle: ${report.packed} batches packed, ${report.delivered} delivered (${report.records} records, ${report.bytes} bytes), ${report.retried} to retry, ${report.failed} failed, ${report.split} split`)
    return report
  }).pipe(Effect.annotateLogs({ cycle: "send" }))

// ---------------------------------------------------------------------------------------------
// The daemon's schedules

export interface Schedules {
  readonly fetchInterval: Duration.Input
  readonly sendInterval: Duration.Input
}

/** Asks the daemon for a fetch cycle now (e.g. after MHQ's `resync_project`), instead of at the next interval. */
export class FetchTrigger extends Context.Service<FetchTrigger, Queue.Queue<void>>()("@mhq-sync/runner/FetchTrigger") {
  // Sliding(1): many requests while a fetch runs collapse into one more fetch.
  static readonly layer = Layer.effect(FetchTrigger, Queue.sliding<void>(1))
}

/**
 * A fetch then a send at start; then fetch every `fetchInterval` and send every `sendInterval`
 * (`Schedule.spaced`: the next cycle starts an interval after the previous one ended); `trigger`
 * starts a fetch early. A failed cycle is logged and never ends the loop. Runs until interrupted.
 */
export const schedule = <E1, R1, E2, R2>(
  fetch: Effect.Effect<unknown, E1, R1>,
  send: Effect.Effect<unknown, E2, R2>,
  intervals: Schedules,
  onPlanned: (next: { readonly fetchAt?: Date; readonly sendAt?: Date }) => Effect.Effect<void> = () => Effect.void,
  trigger?: Queue.Queue<void>
) =>
  Effect.gen(function*() {
    const guard = <E, R>(name: string, effect: Effect.Effect<unknown, E, R>) =>
      effect.pipe(Effect.catchCause((cause) => Effect.logError(`${name} cycle failed; the next one runs as scheduled`, cause)))
    const firstFetchDone = yield* Deferred.make<void>()
    const plan = (interval: Duration.Input, key: "fetchAt" | "sendAt") =>
      Effect.clockWith((clock) => onPlanned({ [key]: new Date(clock.currentTimeMillisUnsafe() + Duration.toMillis(Duration.fromInputUnsafe(interval))) }))
    const waitForNextFetch = trigger === undefined
      ? Effect.sleep(intervals.fetchInterval)
      : Effect.raceFirst(Effect.sleep(intervals.fetchInterval), Queue.take(trigger).pipe(Effect.tap(() => Effect.logInfo("fetch requested now"))))
    const fetchLoop = Effect.forever(
      guard("fetch", fetch).pipe(
        Effect.andThen(Deferred.succeed(firstFetchDone, undefined)),
        Effect.andThen(plan(intervals.fetchInterval, "fetchAt")),
        Effect.andThen(waitForNextFetch)
      )
    )
    const sendLoop = Deferred.await(firstFetchDone).pipe(
      Effect.andThen(guard("send", send).pipe(
        Effect.tap(() => plan(intervals.sendInterval, "sendAt")),
        Effect.repeat(Schedule.spaced(intervals.sendInterval))
      ))
    )
    yield* Effect.all([fetchLoop, sendLoop], { concurrency: 2, discard: true })
  })

/** Heartbeat details only the runner knows: last cycles, next runs, status, config. */
export const heartbeatDetails = (config: AppConfig.AppConfig): Effect.Effect<Heartbeat.DetailsOverrides, never, AgentState> =>
  Effect.gen(function*() {
    const state = yield* Ref.get(yield* AgentState)
    const lastCycles: Array<WireProtocol.ProjectCycle> = []
    for (const r of state.lastFetch ?? []) {
      for (const p of r.projects) {
        lastCycles.push({
          instance: r.instance,
          project_id: p.projectId,
          project_path: p.projectPath,
          cycle_id: r.cycleId,
          status: p.status,
          started_at: r.startedAt,
          finished_at: new Date(Date.parse(r.startedAt) + r.durationMs).toISOString()
        })
      }
    }
    const status: WireProtocol.HeartbeatStatus = state.lastFetch?.some((r) => r.status === "failed")
      ? "failing"
      : state.lastFetchOk === false || (state.lastSend?.failed ?? 0) > 0
      ? "degraded"
      : "ok"
    return {
      status,
      ...(lastCycles.length > 0 ? { lastCycles } : {}),
      nextFetchAt: state.nextFetchAt ?? null,
      nextSendAt: state.nextSendAt ?? null,
      config: AppConfig.toDisplay(config) as { readonly [key: string]: never }
    }
  })
