/**
 * One sync cycle of one GitLab instance: resolve projects, then per project stream every entity
 * into staging incrementally, with a run-log row per (cycle, project) and a report.
 *
 * Incremental rules:
 * - cursor per (instance, project, entity) = start of the last successful run minus the overlap;
 *   the first run backfills `backfillDays`. A cursor only moves in the unit that completes its
 *   entity, and only when nothing was left behind (failed pages/MRs keep the old cursor).
 * - an MR is (re)fetched with all pages of its notes, approvals, commits and diff stats only when
 *   its `updated_at` differs from the staged one, and it is staged in ONE unit (one transaction)
 *   with all its children: a crash never leaves an MR recorded as current with missing children.
 *   Diff stats and commits of the changed MRs of a list page come from one GraphQL request per
 *   `graphqlBatchSize` MRs (`MergeRequestDetails`); what it cannot give is read over REST per MR.
 * - a project's failure never blocks other projects; 401 (or a TLS failure) stops the instance.
 */
import { Pipeline as CorePipeline, Staging, type SyncRecord, Uuid } from "@mhq-sync/core"
import { Cause, Duration, Effect, Exit, Fiber, Option, Schedule, Semaphore, Stream } from "effect"
import * as Approval from "./Approval.ts"
import * as Commit from "./Commit.ts"
import * as Deployment from "./Deployment.ts"
import * as DiffStat from "./DiffStat.ts"
import * as Entity from "./Entity.ts"
import * as GitlabClient from "./GitlabClient.ts"
import * as InstanceConfig from "./InstanceConfig.ts"
import * as MergeRequest from "./MergeRequest.ts"
import * as MergeRequestDetails from "./MergeRequestDetails.ts"
import * as Note from "./Note.ts"
import * as Pipeline from "./Pipeline.ts"
import * as Project from "./Project.ts"

export type Status = "ok" | "partial" | "failed"

export interface ProjectReport {
  readonly projectId: number
  readonly projectPath: string
  readonly status: Status
  /** Records handed to staging per kind (new or changed at the source), plus "quarantined". */
  readonly counts: { readonly [kind: string]: number }
  readonly staged: CorePipeline.Totals
  readonly warnings: ReadonlyArray<string>
  readonly errors: ReadonlyArray<string>
  readonly requests: number
  readonly pages: number
  readonly durationMs: number
}

export interface InstanceReport {
  readonly instance: string
  readonly cycleId: string
  readonly status: Status
  readonly startedAt: string
  readonly durationMs: number
  /** Every request sent to the instance in this cycle (resolution included). */
  readonly requests: number
  readonly projects: ReadonlyArray<ProjectReport>
  readonly warnings: ReadonlyArray<string>
  /** Instance-level errors (config, token, TLS, unresolvable references). */
  readonly errors: ReadonlyArray<string>
}

export interface Options {
  readonly cycleId?: string | undefined
  /** Clock for cursors (epoch ms); default Date.now. */
  readonly now?: (() => number) | undefined
  /** Projects synced at the same time (default: the instance's concurrency). */
  readonly projectConcurrency?: number | undefined
  /** How often long project syncs log their progress (default 30 s). */
  readonly progressInterval?: Duration.Input | undefined
  readonly client?: GitlabClient.Options | undefined
  /** Re-polling of unfinished pipelines/deployments not listed in a run (see `defaultRepoll`). */
  readonly repoll?: {
    /** Items per staged unit (default 200). */
    readonly chunkSize?: number | undefined
    /** GETs per (project, entity) and run at most, newest items first (default 500). */
    readonly maxPerRun?: number | undefined
  } | undefined
}

export const defaultRepoll = { chunkSize: 200, maxPerRun: 500 }

const mrChildKinds = [Note.kind, Approval.kind, Commit.kind, DiffStat.kind] as const
type ChildKind = typeof mrChildKinds[number]

/** Mutable bookkeeping of one project's sync. */
interface ProjectState {
  readonly scope: Entity.ProjectScope
  readonly counter: GitlabClient.Counter
  readonly counts: { [kind: string]: number }
  readonly warnings: Array<string>
  readonly errors: Array<string>
  staged: CorePipeline.Totals
  records: number
  /** Child endpoints this project does not offer (skipped after the first 403/404). */
  readonly unavailable: Set<ChildKind>
  /** Child endpoints known to answer: until then one request probes, the others wait for it. */
  readonly available: Set<ChildKind>
  readonly probes: Map<ChildKind, Semaphore.Semaphore>
}


type Fatal = GitlabClient.TokenRejected | GitlabClient.TlsFailure
const isFatal = (e: { readonly _tag: string }): e is Fatal => e._tag === "TokenRejected" || e._tag === "TlsFailure"

/** Splits errors into fatal (propagated: they stop the instance) and per-entity ones (handled). */
const handleEntityError = (state: ProjectState, entity: string, e: GitlabClient.GitlabError | Staging.StagingError): Effect.Effect<void, Fatal> => {
  if (isFatal(e)) return Effect.fail(e)
  switch (e._tag) {
    case "EntityUnavailable":
      state.warnings.push(`${entity}: skipped, not available for this project (${e.status} on ${e.url}${e.detail ? `: ${e.detail}` : ""})`)
      return Effect.void
    case "MalformedResponse":
      state.warnings.push(`${entity}: ${e.message}; the payload is quarantined and the entity will be fetched again next run`)
      return Effect.void
    default:
      state.errors.push(`${entity}: ${e.message}`)
      return Effect.void
  }
}

export const run = (
  config: InstanceConfig.InstanceConfig,
  options: Options = {}
): Effect.Effect<InstanceReport, never, Staging.Staging> =>
  Effect.scoped(Effect.gen(function*() {
    const staging = yield* Staging.Staging
    const now = options.now ?? Date.now
    const cycleId = options.cycleId ?? Uuid.v7()
    const runStart = now()
    const instance = config.url
    const newCursor = new Date(runStart - InstanceConfig.overlapMillis(config)).toISOString()
    const backfillFrom = new Date(runStart - config.backfillDays * 86_400_000).toISOString()
    const warnings: Array<string> = []
    const errors: Array<string> = []
    const reports: Array<ProjectReport> = []
    const progressEvery = Duration.fromInputUnsafe(options.progressInterval ?? "30 seconds")

    const finish = (status: Status, requests: number): InstanceReport => ({
      instance,
      cycleId,
      status,
      startedAt: new Date(runStart).toISOString(),
      durationMs: now() - runStart,
      requests,
      projects: [...reports].sort((a, b) => a.projectId - b.projectId),
      warnings,
      errors
    })

    const clientResult = yield* Effect.result(GitlabClient.make(config, options.client))
    if (clientResult._tag === "Failure") {
      errors.push(clientResult.failure.message)
      yield* Effect.logError(`GitLab ${instance}: ${clientResult.failure.message}`)
      return finish("failed", 0)
    }
    const client = clientResult.success

    // ------------------------------------------------------------------ resolution
    const resolved = yield* Effect.result(Project.resolve(client))
    if (resolved._tag === "Failure") {
      errors.push(resolved.failure.message)
      yield* Effect.logError(`GitLab ${instance}: ${resolved.failure.message}`)
      return finish("failed", yield* client.requests)
    }
    const { projects } = resolved.success
    errors.push(...resolved.success.errors)
    warnings.push(...resolved.success.warnings)
    if (resolved.success.quarantine.length > 0) {
      yield* staging.quarantine(resolved.success.quarantine).pipe(Effect.catch((e) => Effect.sync(() => errors.push(e.message))))
    }
    if (projects.length === 0 && errors.length === 0) warnings.push("no projects configured or found: nothing to sync")
    yield* Effect.logInfo(`GitLab ${instance}: syncing ${projects.length} project(s)`)

    // ------------------------------------------------------------------ per project
    /** Set (with the reason) once the instance answered that it cannot serve the GraphQL query. */
    let graphqlOff: string | undefined
    const stageUnits = (state: ProjectState, units: Stream.Stream<CorePipeline.Unit, GitlabClient.GitlabError | Staging.StagingError>) =>
      CorePipeline.stage(Stream.tap(units, (u) =>
        Effect.sync(() => {
          for (const r of u.records) state.counts[r.kind] = (state.counts[r.kind] ?? 0) + 1
          const q = u.quarantine?.length ?? 0
          if (q > 0) state.counts["quarantined"] = (state.counts["quarantined"] ?? 0) + q
          state.records += u.records.length
        }))).pipe(Effect.map((totals) => {
          state.staged = CorePipeline.addTotals(state.staged, totals)
        }), Effect.provideService(Staging.Staging, staging))

    /** Runs one entity's units; errors are recorded (fatal ones propagate), staged units stay staged. */
    const entity = (
      state: ProjectState,
      name: string,
      units: Stream.Stream<CorePipeline.Unit, GitlabClient.GitlabError | Staging.StagingError>
    ): Effect.Effect<void, Fatal> =>
      stageUnits(state, units).pipe(
        Effect.catch((e) => {
          if (e._tag === "MalformedResponse") {
            const q = Entity.quarantinePayload(state.scope, name, `GET ${e.url}`, e.raw, e.message)
            return staging.quarantine([q]).pipe(
              Effect.catch((se) => Effect.sync(() => state.errors.push(se.message))),
              Effect.andThen(handleEntityError(state, name, e))
            )
          }
          return handleEntityError(state, name, e)
        })
      )

    const sinceOf = (state: ProjectState, kind: string) =>
      staging.cursor({ instance, projectId: state.scope.projectId, kind }).pipe(
        Effect.map(Option.match({ onNone: () => backfillFrom, onSome: (c) => c.value }))
      )

    const cursorUnit = (state: ProjectState, kind: string): CorePipeline.Unit => ({
      records: [],
      cursors: [{ instance, projectId: state.scope.projectId, kind, value: newCursor }]
    })

    /** The changed items of a listed page: staged version differs (or nothing staged yet). */
    const changedOf = <A>(state: ProjectState, kind: string, items: ReadonlyArray<A>, keyOf: (a: A) => string, updatedOf: (a: A) => string) =>
      items.length === 0 ? Effect.succeed([] as ReadonlyArray<A>) : Effect.map(
        staging.versions({ instance, kind, projectId: state.scope.projectId, keys: items.map(keyOf) }),
        (versions) => items.filter((a) => !Entity.sameInstant(versions.get(keyOf(a)), updatedOf(a)))
      )

    // --- merge requests + children ------------------------------------------------------------
    type ChildResult = { readonly records: Array<SyncRecord.SyncRecord>; readonly quarantine: Array<Staging.QuarantineEntry> }
    type ChildOutcome = ChildResult | "incomplete" | "gone"

    /**
     * One child endpoint of one MR. A 403/404 means "this project does not offer the endpoint" (CE
     * approvals, repository disabled: skipped with one warning) only while the endpoint has never
     * answered for this project. Once it has, a 403/404 concerns this MR alone: if the MR itself is
     * gone it is skipped with a warning, otherwise the MR is incomplete (not staged this run, the
     * cursor stays, the next run fetches it again).
     */
    const fetchChild = <A>(
      state: ProjectState,
      kind: ChildKind,
      iid: number,
      fetch: Effect.Effect<Entity.Decoded<A>, GitlabClient.GitlabError>,
      toRecords: (items: ReadonlyArray<A>) => ReadonlyArray<SyncRecord.SyncRecord>,
      mrGone: Effect.Effect<boolean, Fatal>
    ): Effect.Effect<ChildOutcome, Fatal> => {
      const notOffered = (e: GitlabClient.EntityUnavailable): ChildOutcome => {
        if (!state.unavailable.has(kind)) {
          state.unavailable.add(kind)
          state.warnings.push(`${kind}: skipped for this project, endpoint not available (${e.status} on ${e.url}${e.detail ? `: ${e.detail}` : ""})`)
        }
        return { records: [], quarantine: [] }
      }
      const attempt = fetch.pipe(
        Effect.tap(() => Effect.sync(() => state.available.add(kind))),
        Effect.map((d): ChildResult => ({ records: [...toRecords(d.items)], quarantine: [...d.quarantine] })),
        Effect.catch((e): Effect.Effect<ChildOutcome, Fatal> => {
          if (isFatal(e)) return Effect.fail(e)
          if (e._tag === "EntityUnavailable") {
            const answeredBefore = state.available.has(kind)
            // A 404 may only mean that this MR was deleted since it was listed: ask for the MR.
            const gone = e.status === 404 ? mrGone : Effect.succeed(false)
            return Effect.map(gone, (isGone): ChildOutcome => {
              if (isGone) return "gone"
              if (!answeredBefore) return notOffered(e)
              state.errors.push(`${kind} of MR !${iid}: ${e.message}, although it answered for other MRs; the MR will be fetched again next run`)
              return "incomplete"
            })
          }
          if (e._tag === "MalformedResponse") {
            state.warnings.push(`${kind} of MR !${iid}: ${e.message}; quarantined, the MR will be fetched again next run`)
            return staging.quarantine([Entity.quarantinePayload(state.scope, kind, `GET ${e.url}`, e.raw, e.message)]).pipe(
              Effect.catch((se) => Effect.sync(() => state.errors.push(se.message))),
              Effect.as("incomplete" as const)
            )
          }
          state.errors.push(`${kind} of MR !${iid}: ${e.message}; the MR will be fetched again next run`)
          return Effect.succeed("incomplete" as const)
        })
      )
      const run = Effect.suspend(() => state.unavailable.has(kind) ? Effect.succeed({ records: [], quarantine: [] }) : attempt)
      // Until an endpoint has answered once for this project, one request probes it and the others
      // wait for the outcome: a CE instance sees one 404 for approvals, not one per MR in flight.
      return Effect.suspend(() => state.available.has(kind) ? run : probeOf(state, kind).withPermit(run))
    }

    /** Whether an MR no longer exists (404 on the MR itself); warns once when it is gone. */
    const mrGoneCheck = (state: ProjectState, iid: number): Effect.Effect<boolean, Fatal> =>
      client.get(`/projects/${state.scope.projectId}/merge_requests/${iid}`).pipe(
        Effect.as(false),
        Effect.catch((e): Effect.Effect<boolean, Fatal> => {
          if (isFatal(e)) return Effect.fail(e)
          if (e._tag === "EntityUnavailable" && e.status === 404) {
            state.warnings.push(`MR !${iid}: skipped, it no longer exists (404 on ${e.url})`)
            return Effect.succeed(true)
          }
          return Effect.succeed(false)
        })
      )

    const probeOf = (state: ProjectState, kind: ChildKind) => {
      let sem = state.probes.get(kind)
      if (sem === undefined) state.probes.set(kind, sem = Semaphore.makeUnsafe(1))
      return sem
    }

    /**
     * One MR with all its children as one unit; "incomplete" when a child could not be fetched
     * (retried next run), "gone" when the MR was deleted since it was listed.
     */
    const mrUnit = (
      state: ProjectState,
      mr: MergeRequest.MergeRequest,
      batch: Effect.Effect<ReadonlyMap<number, MergeRequestDetails.Detail>, Fatal>
    ): Effect.Effect<CorePipeline.Unit | "incomplete" | "gone", Fatal> =>
      Effect.gen(function*() {
        const s = state.scope
        const at = mr.updated_at
        const gone = yield* Effect.cached(mrGoneCheck(state, mr.iid)) // asked at most once per MR
        // Commits and diff stats from the page's GraphQL batch when it has them, else over REST.
        const commits = Effect.flatMap(batch, (b) => {
          const c = b.get(mr.iid)?.commits
          return c !== undefined ? Effect.succeed(c) : Commit.fetchAll(client, s, mr.iid)
        })
        const stat = Effect.flatMap(batch, (b): Effect.Effect<Entity.Decoded<DiffStat.Stat>, GitlabClient.GitlabError> => {
          const st = b.get(mr.iid)?.stat
          return st !== undefined ? Effect.succeed({ items: [st], quarantine: [] }) : DiffStat.fetchStat(client, s, mr.iid)
        })
        const children = yield* Effect.all([
          fetchChild(state, Note.kind, mr.iid, Note.fetchAll(client, s, mr.iid), (xs) => xs.map((n) => Note.toRecord(s, mr.iid, at, n)), gone),
          fetchChild(state, Approval.kind, mr.iid, Approval.fetch(client, s, mr.iid), (xs) => xs.map((a) => Approval.toRecord(s, mr.iid, at, a)), gone),
          fetchChild(state, Commit.kind, mr.iid, commits, (xs) => xs.map((c) => Commit.toRecord(s, mr.iid, at, config.privacy, c)), gone),
          fetchChild(state, DiffStat.kind, mr.iid, stat, (xs) => xs.map((st) => DiffStat.toRecord(s, mr.iid, at, st)), gone)
        ], { concurrency: "unbounded" })
        if (children.some((c) => c === "gone")) return "gone"
        if (children.some((c) => c === "incomplete")) return "incomplete"
        const complete = children as ReadonlyArray<ChildResult>
        return {
          records: [MergeRequest.toRecord(s, mr), ...complete.flatMap((c) => c.records)],
          quarantine: complete.flatMap((c) => c.quarantine)
        }
      })

    /**
     * Diff stats and commits of `mrs` in one GraphQL request; an empty map (everything over REST)
     * when GraphQL is switched off, unsupported or failed. The first "unsupported" answer switches GraphQL off for the
     * rest of this run, with one warning.
     */
    const detailsBatch = (state: ProjectState, mrs: ReadonlyArray<MergeRequest.MergeRequest>): Effect.Effect<ReadonlyMap<number, MergeRequestDetails.Detail>, Fatal> =>
      Effect.suspend(() => {
        const none: ReadonlyMap<number, MergeRequestDetails.Detail> = new Map()
        if (!config.graphql || graphqlOff !== undefined || (state.unavailable.has(Commit.kind) && state.unavailable.has(DiffStat.kind))) {
          return Effect.succeed(none)
        }
        return MergeRequestDetails.fetch(client, state.scope, mrs.map((m) => m.iid)).pipe(
          Effect.catch((e): Effect.Effect<ReadonlyMap<number, MergeRequestDetails.Detail>, Fatal> => {
            if (isFatal(e)) return Effect.fail(e)
            if (e._tag === "GraphqlUnsupported") {
              if (graphqlOff === undefined) {
                graphqlOff = e.message
                warnings.push(e.message)
                return Effect.as(Effect.logWarning(`GitLab ${instance}: ${e.message}`), none)
              }
              return Effect.succeed(none)
            }
            state.warnings.push(`${e.message}; MRs ${mrs.map((m) => `!${m.iid}`).join(", ")} read over REST instead`)
            return Effect.succeed(none)
          })
        )
      })

    const mergeRequests = (state: ProjectState) =>
      Effect.gen(function*() {
        const since = yield* sinceOf(state, MergeRequest.kind)
        let incomplete = 0
        type Batch = Effect.Effect<ReadonlyMap<number, MergeRequestDetails.Detail>, Fatal>
        type Item =
          | { readonly _tag: "mr"; readonly mr: MergeRequest.MergeRequest; readonly batch: Batch }
          | { readonly _tag: "quarantine"; readonly unit: CorePipeline.Unit }
        const units = MergeRequest.list(client, state.scope.projectId, since).pipe(
          Stream.mapEffect((page) =>
            Effect.gen(function*() {
              const d = Entity.decodeItems(MergeRequest.MergeRequest, page.items, { scope: state.scope, kind: MergeRequest.kind, origin: page.origin })
              const changed = yield* changedOf(state, MergeRequest.kind, d.items, MergeRequest.key, (m) => m.updated_at)
              const items: Array<Item> = d.quarantine.length > 0 ? [{ _tag: "quarantine", unit: { records: [], quarantine: d.quarantine } }] : []
              for (let i = 0; i < changed.length; i += config.graphqlBatchSize) {
                const chunk = changed.slice(i, i + config.graphqlBatchSize)
                // Sent when the chunk's first MR needs it, shared by all of the chunk's MRs.
                const batch = yield* Effect.cached(detailsBatch(state, chunk))
                for (const mr of chunk) items.push({ _tag: "mr", mr, batch })
              }
              return items as ReadonlyArray<Item>
            })
          ),
          // The next list page is fetched while this one's MRs are, and MRs flow across page
          // boundaries, so the request slots never drain at the end of a page.
          Stream.buffer({ capacity: 1 }),
          Stream.flatMap((items) => Stream.fromIterable(items)),
          Stream.mapEffect((item) => item._tag === "quarantine" ? Effect.succeed(item.unit) : mrUnit(state, item.mr, item.batch), {
            concurrency: config.concurrency * 2,
            // MR units finish in any order (the cursor unit follows them all): a slow MR (many note
            // pages) must not hold back the others and leave request slots idle.
            unordered: true
          }),
          Stream.flatMap((u) => {
            if (u === "incomplete") incomplete++
            return Stream.fromIterable(typeof u === "string" ? [] : [u])
          }),
          Stream.concat(Stream.suspend(() => incomplete === 0 ? Stream.make(cursorUnit(state, MergeRequest.kind)) : Stream.empty))
        )
        yield* entity(state, MergeRequest.kind, units)
      })

    // --- unfinished pipelines / deployments ------------------------------------------------------
    type Polled = { readonly records: ReadonlyArray<SyncRecord.SyncRecord>; readonly quarantine: ReadonlyArray<Staging.QuarantineEntry> }
    const repollChunk = Math.max(1, options.repoll?.chunkSize ?? defaultRepoll.chunkSize)
    const repollMax = Math.max(0, options.repoll?.maxPerRun ?? defaultRepoll.maxPerRun)
    const backfillFromMs = Date.parse(backfillFrom)

    /**
     * Staged items of `kind` still unfinished (manual/scheduled pipelines, blocked deployments can
     * stay so for ever) and not listed in this run, polled one GET each. Only items created within
     * the backfill window are polled, newest first and at most `maxPerRun` per run; older ones stay
     * as last seen (a change still brings them back through the `updated_after` list). One unit per
     * `chunkSize` items.
     */
    const repollUnfinished = (
      state: ProjectState,
      kind: string,
      statuses: ReadonlyArray<string>,
      seen: ReadonlySet<string>,
      poll: (key: string, stagedUpdatedAt: string) => Effect.Effect<Polled, Fatal>
    ): Stream.Stream<Polled, Fatal | Staging.StagingError> =>
      Stream.unwrap(Effect.gen(function*() {
        const open = yield* staging.records({ instance, kind, projectId: state.scope.projectId, where: { field: "status", in: statuses } })
        // keep only what polling needs, so the staged rows can be dropped
        const todo: Array<{ readonly key: string; readonly updatedAt: string; readonly createdAt: number }> = []
        let old = 0
        for (const r of open) {
          if (seen.has(r.key)) continue
          const createdAt = Date.parse(String((r.data as { readonly created_at?: unknown } | null)?.created_at ?? r.updatedAt))
          if (!(createdAt >= backfillFromMs)) old++
          else todo.push({ key: r.key, updatedAt: r.updatedAt, createdAt })
        }
        const where = `GitLab ${instance} ${state.scope.projectPath}`
        if (old > 0) {
          yield* Effect.logInfo(`${where}: ${old} unfinished ${kind}(s) created before the backfill window (${backfillFrom}) are no longer polled; they stay as last seen`)
        }
        todo.sort((a, b) => b.createdAt - a.createdAt || (a.key < b.key ? 1 : -1))
        if (todo.length > repollMax) {
          yield* Effect.logInfo(`${where}: ${todo.length} unfinished ${kind}(s) to poll; polling the ${repollMax} newest this run`)
          todo.length = repollMax
        }
        const chunks: Array<ReadonlyArray<{ readonly key: string; readonly updatedAt: string }>> = []
        for (let i = 0; i < todo.length; i += repollChunk) chunks.push(todo.slice(i, i + repollChunk))
        return Stream.fromIterable(chunks).pipe(
          Stream.mapEffect((chunk) =>
            Effect.map(
              Effect.forEach(chunk, (x) => poll(x.key, x.updatedAt), { concurrency: config.concurrency }),
              (polled): Polled => ({ records: polled.flatMap((x) => x.records), quarantine: polled.flatMap((x) => x.quarantine) })
            ))
        )
      }))

    // --- pipelines ------------------------------------------------------------------------------
    const pipelines = (state: ProjectState) =>
      Effect.gen(function*() {
        const s = state.scope
        const since = yield* sinceOf(state, Pipeline.kind)
        const seen = new Set<string>()
        let incomplete = 0
        const detail = (id: number) =>
          Pipeline.fetch(client, s, id).pipe(
            Effect.map((d) => ({ records: d.items.map((p) => Pipeline.toRecord(s, p)), quarantine: d.quarantine })),
            Effect.catch((e): Effect.Effect<{ records: Array<SyncRecord.SyncRecord>; quarantine: ReadonlyArray<Staging.QuarantineEntry> }, Fatal> => {
              if (isFatal(e)) return Effect.fail(e)
              if (e._tag === "EntityUnavailable") {
                // Deleted (or no longer visible) since it was listed/staged: nothing left to poll.
                state.warnings.push(`pipeline ${id}: ${e.message}`)
                return Effect.succeed({ records: [], quarantine: [] })
              }
              incomplete++
              state.errors.push(`pipeline ${id}: ${e.message}`)
              return Effect.succeed({ records: [], quarantine: [] })
            })
          )
        const listed = Pipeline.list(client, s.projectId, since).pipe(
          Stream.mapEffect((page) =>
            Effect.gen(function*() {
              const d = Entity.decodeItems(Pipeline.Pipeline, page.items, { scope: s, kind: Pipeline.kind, origin: page.origin })
              for (const p of d.items) seen.add(String(p.id))
              const changed = yield* changedOf(state, Pipeline.kind, d.items, (p) => String(p.id), (p) => p.updated_at)
              const details = yield* Effect.forEach(changed, (p) => detail(p.id), { concurrency: config.concurrency })
              return { records: details.flatMap((x) => x.records), quarantine: [...d.quarantine, ...details.flatMap((x) => x.quarantine)] }
            })
          )
        )
        const repoll = repollUnfinished(state, Pipeline.kind, Pipeline.unfinishedStatuses, seen, (key, stagedAt) =>
          detail(Number(key)).pipe(Effect.map((x) => ({ ...x, records: x.records.filter((n) => !Entity.sameInstant(n.updatedAt, stagedAt)) }))))
        const units = Stream.concat(listed, repoll).pipe(
          Stream.filter((u) => u.records.length > 0 || u.quarantine.length > 0),
          Stream.concat(Stream.suspend(() => incomplete === 0 ? Stream.make(cursorUnit(state, Pipeline.kind)) : Stream.empty))
        )
        yield* entity(state, Pipeline.kind, units)
      })

    // --- deployments ----------------------------------------------------------------------------
    const deployments = (state: ProjectState) =>
      Effect.gen(function*() {
        const s = state.scope
        const since = yield* sinceOf(state, Deployment.kind)
        const seen = new Set<string>()
        let incomplete = 0
        const listed = Deployment.list(client, s.projectId, since).pipe(
          Stream.mapEffect((page) =>
            Effect.gen(function*() {
              const d = Entity.decodeItems(Deployment.Deployment, page.items, { scope: s, kind: Deployment.kind, origin: page.origin })
              for (const x of d.items) seen.add(String(x.id))
              const changed = yield* changedOf(state, Deployment.kind, d.items, (x) => String(x.id), (x) => x.updated_at)
              return { records: changed.map((x) => Deployment.toRecord(s, x)), quarantine: d.quarantine }
            })
          )
        )
        const repoll = repollUnfinished(state, Deployment.kind, Deployment.unfinishedStatuses, seen, (key, stagedAt) =>
          Deployment.fetch(client, s, Number(key)).pipe(
            Effect.map((d) => ({ records: d.items.map((x) => Deployment.toRecord(s, x)).filter((n) => !Entity.sameInstant(n.updatedAt, stagedAt)), quarantine: d.quarantine })),
            Effect.catch((e): Effect.Effect<Polled, Fatal> => {
              if (isFatal(e)) return Effect.fail(e)
              if (e._tag === "EntityUnavailable") {
                state.warnings.push(`deployment ${key}: ${e.message}`)
                return Effect.succeed({ records: [], quarantine: [] })
              }
              incomplete++
              state.errors.push(`deployment ${key}: ${e.message}`)
              return Effect.succeed({ records: [], quarantine: [] })
            })
          ))
        const units = Stream.concat(listed, repoll).pipe(
          Stream.filter((u) => u.records.length > 0 || u.quarantine.length > 0),
          Stream.concat(Stream.suspend(() => incomplete === 0 ? Stream.make(cursorUnit(state, Deployment.kind)) : Stream.empty))
        )
        yield* entity(state, Deployment.kind, units)
      })

    // --- one project ------------------------------------------------------------------------------
    let fatal: Fatal | undefined
    const syncProject = (project: Project.Project): Effect.Effect<void, Fatal> =>
      Effect.gen(function*() {
        const started = now()
        const where = `GitLab ${instance} ${project.path_with_namespace}`
        const state: ProjectState = {
          scope: Project.scopeOf(instance, project),
          counter: GitlabClient.newCounter(),
          counts: {},
          warnings: [],
          errors: [],
          staged: CorePipeline.emptyTotals,
          records: 0,
          unavailable: new Set(),
          available: new Set(),
          probes: new Map()
        }

        /** Set once the run-log row is finished and the report pushed (normally or on interruption). */
        let recorded = false
        const record = (runId: Option.Option<number>, status: Status) =>
          Effect.suspend(() => {
            recorded = true
            reports.push({
              projectId: project.id,
              projectPath: project.path_with_namespace,
              status,
              counts: state.counts,
              staged: state.staged,
              warnings: state.warnings,
              errors: state.errors,
              requests: state.counter.requests,
              pages: state.counter.pages,
              durationMs: now() - started
            })
            if (Option.isNone(runId)) return Effect.void
            const counts = { ...state.counts, requests: state.counter.requests }
            return staging.finishRun(runId.value, { status, counts, warnings: state.warnings, errors: state.errors }).pipe(
              Effect.catch((e) => Effect.logError(`run log for ${project.path_with_namespace}: ${e.message}`))
            )
          })

        const work = (runId: Option.Option<number>) =>
          Effect.gen(function*() {
            const progress = Effect.suspend(() => {
              const minutes = Math.max(1e-9, (now() - started) / 60_000)
              return Effect.logInfo(
                `${where}: ${state.counter.pages} pages, ${state.records} records, ` +
                  `${state.counter.requests} requests (${Math.round(state.counter.requests / minutes)}/min)`
              )
            }).pipe(Effect.delay(progressEvery), Effect.repeat(Schedule.spaced(progressEvery)))
            const progressFiber = yield* Effect.forkChild(progress)

            const body = Effect.gen(function*() {
              yield* entity(state, Project.kind, Stream.make({ records: [Project.toRecord(instance, project)] }))
              const guard = (name: string, eff: Effect.Effect<void, Fatal | Staging.StagingError>) =>
                Effect.catchTag(eff, "StagingError", (e) => handleEntityError(state, name, e))
              yield* guard(MergeRequest.kind, mergeRequests(state))
              yield* guard(Pipeline.kind, pipelines(state))
              yield* guard(Deployment.kind, deployments(state))
            }).pipe(Effect.provideService(GitlabClient.RequestCounter, state.counter))

            const exit = yield* Effect.exit(body)
            yield* Fiber.interrupt(progressFiber)
            const failedWith = exit._tag === "Failure"
              ? (fatal?.message ?? "stopped: the instance sync was interrupted")
              : undefined
            if (failedWith !== undefined) state.errors.push(failedWith)
            const status: Status = failedWith !== undefined ? "failed" : state.errors.length > 0 ? "partial" : "ok"
            yield* Effect.uninterruptible(record(runId, status))
            yield* Effect.logInfo(
              `${where}: ${status}; ${state.records} records ` +
                `(${state.staged.inserted} new, ${state.staged.updated} changed), ${state.counter.requests} requests, ` +
                `${state.warnings.length} warning(s), ${state.errors.length} error(s)`
            )
            for (const w of state.warnings) yield* Effect.logWarning(`${where}: ${w}`)
            for (const e of state.errors) yield* Effect.logError(`${where}: ${e}`)
            if (exit._tag === "Failure") yield* Effect.failCause(exit.cause)
          })

        const startRun = staging.startRun({ cycleId, instance, projectId: project.id, projectPath: project.path_with_namespace }).pipe(
          Effect.map(Option.some),
          Effect.catch((e) => Effect.sync(() => {
            state.errors.push(e.message)
            return Option.none<number>()
          }))
        )
        // The run-log row is finished whatever happens once it exists: when this fiber itself is
        // interrupted (SIGTERM, a sibling project's 401 stopping the instance) `Effect.exit(body)`
        // never returns, so the row is finished here (uninterruptibly) as failed/"interrupted".
        return yield* Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(startRun, (runId) =>
            restore(work(runId)).pipe(Effect.onExit((exit) => {
              if (recorded) return Effect.void
              const interrupted = Exit.hasInterrupts(exit)
              state.errors.push(interrupted ? "interrupted" : "stopped by an unexpected error")
              return record(runId, "failed").pipe(
                Effect.andThen(interrupted
                  ? Effect.logWarning(`${where}: interrupted; run recorded as failed`)
                  : Effect.logError(`${where}: stopped by an unexpected error; run recorded as failed: ${exit._tag === "Failure" ? Cause.pretty(exit.cause) : ""}`))
              )
            }))))
      }).pipe(Effect.tapError((e) => Effect.sync(() => {
        fatal ??= e
      })))

    const all = yield* Effect.exit(Effect.forEach(projects, (p) =>
      syncProject(p).pipe(Effect.onInterrupt(() => Effect.void)), {
      concurrency: options.projectConcurrency ?? config.concurrency,
      discard: true
    }))
    const requests = yield* client.requests
    if (all._tag === "Failure") {
      const reason = fatal?.message ?? "instance sync failed"
      errors.push(reason)
      yield* Effect.logError(`GitLab ${instance}: stopped: ${reason}`)
      return finish("failed", requests)
    }
    const status: Status = errors.length > 0 || reports.some((r) => r.status !== "ok") ? "partial" : "ok"
    return finish(status, requests)
  }).pipe(GitlabClient.withRedaction))

/** Several instances, each with its own token and politeness budget, side by side. */
export const runAll = (configs: ReadonlyArray<InstanceConfig.InstanceConfig>, options: Options = {}) =>
  Effect.forEach(configs, (c) => run(c, options), { concurrency: "unbounded" })
