/**
 * The staging store: the durable heart of the pipeline. Records, the cursors that cover them, the
 * outbox of batches, the run log and the quarantine all live in one Postgres database, so a crash
 * can never advance a cursor past unstaged data, and nothing is sent twice or lost.
 */
import { Context, Data, Effect, Layer, Option, type Scope } from "effect"
import { SqlClient, type SqlError, type Statement } from "effect/sql"
import * as Migrations from "./Migrations.ts"
import * as SyncRecord from "./SyncRecord.ts"
import * as Uuid from "./Uuid.ts"

// ---------------------------------------------------------------------------------------------
// Models

export interface CursorKey {
  readonly instance: string
  readonly projectId: number
  readonly kind: string
}
export interface CursorUpdate extends CursorKey {
  readonly value: string
}
export interface Cursor extends CursorUpdate {
  readonly updatedAt: Date
}

export interface QuarantineEntry {
  readonly instance: string
  readonly kind: string
  readonly projectId?: number | undefined
  readonly projectPath?: string | undefined
  /** Where it came from, e.g. "GET /projects/12/merge_requests?page=3". */
  readonly origin: string
  /** The raw payload as received (never parsed again; kept for inspection). */
  readonly raw: string
  readonly error: string
}
export interface Quarantined extends QuarantineEntry {
  readonly id: number
  readonly createdAt: Date
}

/** What one source step hands to staging: records, plus the cursors they complete, atomically. */
export interface StageInput {
  readonly records: ReadonlyArray<SyncRecord.SyncRecord>
  readonly cursors?: ReadonlyArray<CursorUpdate> | undefined
  readonly quarantine?: ReadonlyArray<QuarantineEntry> | undefined
}
export interface StageResult {
  readonly inserted: number
  readonly updated: number
  readonly unchanged: number
  readonly quarantined: number
}

export interface BatchLimits {
  readonly maxRecords: number
  readonly maxBytes: number
}
export const defaultLimits: BatchLimits = { maxRecords: 500, maxBytes: 4 * 1024 * 1024 }
/** Bytes a record adds beyond its data (envelope fields in the JSON line); keeps batches under M. */
export const recordOverheadBytes = 256

/** `split`: replaced by two halves after the receiver said it was too large (413). */
export type BatchStatus = "pending" | "delivered" | "failed" | "split"

export interface Batch {
  readonly id: string
  readonly instance: string
  readonly kind: string
  readonly status: BatchStatus
  readonly recordCount: number
  readonly byteSize: number
  readonly attempts: number
  readonly lastError: string | null
  readonly replay: boolean
  readonly parentId: string | null
  readonly createdAt: Date
  readonly updatedAt: Date
  readonly firstAttemptAt: Date | null
  readonly nextAttemptAt: Date
  readonly deliveredAt: Date | null
  readonly claimedBy: string | null
}

export interface ClaimOptions {
  readonly owner: string
  readonly limit: number
  readonly leaseSeconds?: number | undefined
  /** Only batches due at or before this time (a pass ignores retries it scheduled itself). */
  readonly dueBefore?: Date | undefined
}

export interface PackResult {
  readonly batches: number
  readonly records: number
  readonly quarantined: number
}

export type RunStatus = "running" | "ok" | "partial" | "failed"
export interface RunStart {
  readonly cycleId: string
  readonly instance: string
  readonly projectId?: number | undefined
  readonly projectPath?: string | undefined
}
export interface RunEnd {
  readonly status: Exclude<RunStatus, "running">
  readonly counts: { readonly [kind: string]: number }
  readonly warnings: ReadonlyArray<string>
  readonly errors: ReadonlyArray<string>
}
export interface Run extends RunStart, Partial<Omit<RunEnd, "status">> {
  readonly id: number
  readonly status: RunStatus
  readonly startedAt: Date
  readonly finishedAt: Date | null
}

/** Selects staged records of one instance and kind (current content). */
export interface RecordFilter {
  readonly instance: string
  readonly kind: string
  readonly projectId?: number | undefined
  readonly keys?: ReadonlyArray<string> | undefined
  /** Keep records whose top-level data field `field` (as text) is one of `in`. */
  readonly where?: { readonly field: string; readonly in: ReadonlyArray<string> } | undefined
  readonly limit?: number | undefined
}

/** Per-scope view for `status`: what is staged, not yet batched and quarantined per project. */
export interface ScopeStats {
  readonly instance: string
  readonly projectId: number
  readonly projectPath: string
  readonly recordsByKind: { readonly [kind: string]: number }
  readonly unbatched: number
  readonly quarantined: number
  readonly lastStagedAt: Date | null
}

export interface Summary {
  readonly recordsByKind: { readonly [kind: string]: number }
  readonly batches: { readonly [status in BatchStatus]: number }
  readonly undelivered: number
  readonly quarantined: number
}

// ---------------------------------------------------------------------------------------------
// Errors

export class StagingError extends Data.TaggedError("StagingError")<{
  readonly operation: string
  readonly cause: SqlError.SqlError
}> {
  override get message() {
    return `staging ${this.operation} failed: ${this.cause.message}`
  }
}
export class BatchNotFound extends Data.TaggedError("BatchNotFound")<{ readonly id: string }> {
  override get message() {
    return `no batch with id ${this.id}`
  }
}

// ---------------------------------------------------------------------------------------------
// Service

export interface Service {
  /** Upserts records (unchanged ones untouched), cursors and quarantine entries in one transaction. */
  readonly stage: (input: StageInput) => Effect.Effect<StageResult, StagingError>
  /** Current staged content of matching records (e.g. unfinished pipelines to poll again). */
  readonly records: (filter: RecordFilter) => Effect.Effect<ReadonlyArray<SyncRecord.SyncRecord>, StagingError>
  /** key -> staged updatedAt (ISO) for the given keys: lets a source skip unchanged parents' children. */
  readonly versions: (filter: Omit<RecordFilter, "where" | "limit">) => Effect.Effect<ReadonlyMap<string, string>, StagingError>
  readonly cursor: (key: CursorKey) => Effect.Effect<Option.Option<Cursor>, StagingError>
  readonly cursors: (filter?: { readonly instance?: string; readonly projectId?: number }) => Effect.Effect<ReadonlyArray<Cursor>, StagingError>
  /** Deletes cursors so the next fetch starts from the backfill window; returns how many. */
  readonly resetCursors: (filter: { readonly instance?: string; readonly projectId?: number; readonly kind?: string }) => Effect.Effect<number, StagingError>
  /** Packs records changed since they were last batched into pending batches (per instance and kind). */
  readonly pack: (limits?: BatchLimits) => Effect.Effect<PackResult, StagingError>
  /** Claims due pending batches for `owner` for `leaseSeconds` (SKIP LOCKED: never shared). */
  readonly claim: (options: ClaimOptions) => Effect.Effect<ReadonlyArray<Batch>, StagingError>
  /**
   * Holds a session lock for `owner` on a dedicated connection until the scope closes. While it is
   * held the owner's claims stand; once its process dies the server drops the session and every
   * claim of that owner is free at once, instead of after its lease.
   */
  readonly registerOwner: (owner: string) => Effect.Effect<void, StagingError, Scope.Scope>
  readonly batch: (id: string) => Effect.Effect<Batch, StagingError | BatchNotFound>
  readonly batches: (filter?: { readonly status?: BatchStatus; readonly kind?: string; readonly limit?: number }) => Effect.Effect<ReadonlyArray<Batch>, StagingError>
  /** The records of a batch exactly as they were when it was packed, in batch order. */
  readonly batchRecords: (id: string) => Effect.Effect<ReadonlyArray<SyncRecord.SyncRecord>, StagingError | BatchNotFound>
  readonly markDelivered: (id: string) => Effect.Effect<void, StagingError | BatchNotFound>
  readonly markFailed: (id: string, error: string) => Effect.Effect<void, StagingError | BatchNotFound>
  /** Releases the claim and schedules another attempt after `delayMs`. */
  readonly markRetry: (id: string, error: string, delayMs: number) => Effect.Effect<void, StagingError | BatchNotFound>
  /** Replaces a batch by two halves (for a receiver that said 413); returns the halves. */
  readonly split: (id: string) => Effect.Effect<ReadonlyArray<Batch>, StagingError | BatchNotFound>
  /** Makes a batch pending again with the same id and records, flagged as a replay. */
  readonly replayBatch: (id: string) => Effect.Effect<Batch, StagingError | BatchNotFound>
  /** New replay batches of the current content of every record staged since `since`. */
  readonly rebatchSince: (since: Date, options?: { readonly kind?: string | undefined; readonly limits?: BatchLimits | undefined }) => Effect.Effect<PackResult, StagingError>
  readonly startRun: (run: RunStart) => Effect.Effect<number, StagingError>
  readonly finishRun: (id: number, end: RunEnd) => Effect.Effect<void, StagingError>
  readonly runs: (filter?: { readonly instance?: string; readonly projectId?: number; readonly limit?: number }) => Effect.Effect<ReadonlyArray<Run>, StagingError>
  readonly quarantine: (entries: ReadonlyArray<QuarantineEntry>) => Effect.Effect<number, StagingError>
  readonly quarantined: (filter?: { readonly limit?: number }) => Effect.Effect<ReadonlyArray<Quarantined>, StagingError>
  readonly summary: Effect.Effect<Summary, StagingError>
  readonly scopes: Effect.Effect<ReadonlyArray<ScopeStats>, StagingError>
}

export class Staging extends Context.Service<Staging, Service>()("@mhq-sync/core/Staging") {}

// Rows per upsert statement. Rows travel as one jsonb parameter (jsonb_to_recordset), so the
// driver's 65,535 bind-parameter ceiling never applies; the byte cap keeps a statement's
// message well under the protocol's 16 MiB default.
const upsertChunkRows = 1000
const upsertChunkBytes = 8 * 1024 * 1024
// Rows the outbox reads per packing round (one transaction per round).
const packRoundRows = 5000
// Transaction-scoped advisory lock so two packers never put the same record in two batches.
const packLockKey = 0x6d6871 // "mhq"
// First key of the (int4, int4) session locks that mark live batch owners (second: hashtext(owner)).
const ownerLockSpace = 0x6d6872

type BatchRow = {
  readonly id: string
  readonly instance: string
  readonly kind: string
  readonly status: BatchStatus
  readonly record_count: number
  readonly byte_size: number
  readonly attempts: number
  readonly last_error: string | null
  readonly replay: boolean
  readonly parent_id: string | null
  readonly created_at: Date
  readonly updated_at: Date
  readonly first_attempt_at: Date | null
  readonly next_attempt_at: Date
  readonly delivered_at: Date | null
  readonly claimed_by: string | null
}
const toBatch = (r: BatchRow): Batch => ({
  id: r.id,
  instance: r.instance,
  kind: r.kind,
  status: r.status,
  recordCount: r.record_count,
  byteSize: r.byte_size,
  attempts: r.attempts,
  lastError: r.last_error,
  replay: r.replay,
  parentId: r.parent_id,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  firstAttemptAt: r.first_attempt_at,
  nextAttemptAt: r.next_attempt_at,
  deliveredAt: r.delivered_at,
  claimedBy: r.claimed_by
})

type ItemRow = {
  readonly instance: string
  readonly kind: string
  readonly project_id: number
  readonly project_path: string
  readonly key: string
  readonly updated_at: Date
  readonly data: SyncRecord.SyncRecord["data"]
}
const toRecord = (r: ItemRow): SyncRecord.SyncRecord => ({
  instance: r.instance,
  kind: r.kind,
  projectId: r.project_id,
  projectPath: r.project_path,
  key: r.key,
  updatedAt: r.updated_at.toISOString(),
  data: r.data
})

/** A record ready for the database: normalised time, canonical data, size and hash. */
interface Prepared {
  readonly instance: string
  readonly kind: string
  readonly project_id: number
  readonly project_path: string
  readonly key: string
  readonly updated_at: string
  readonly data: string
  readonly size: number
  readonly hash: string
}

const prepare = (
  records: ReadonlyArray<SyncRecord.SyncRecord>
): { readonly rows: ReadonlyArray<Prepared>; readonly rejected: ReadonlyArray<QuarantineEntry> } => {
  const byIdentity = new Map<string, Prepared>()
  const rejected: Array<QuarantineEntry> = []
  for (const record of records) {
    const time = Date.parse(record.updatedAt)
    try {
      if (Number.isNaN(time)) throw new Error(`updatedAt ${JSON.stringify(record.updatedAt)} is not an ISO time`)
      const normalised = { ...record, updatedAt: new Date(time).toISOString() }
      const data = SyncRecord.canonicalJson(normalised)
      // Last write wins inside one call: Postgres refuses to upsert one row twice per statement.
      byIdentity.set(`${record.instance}\u0000${record.kind}\u0000${record.projectId}\u0000${record.key}`, {
        instance: record.instance,
        kind: record.kind,
        project_id: record.projectId,
        project_path: record.projectPath,
        key: record.key,
        updated_at: normalised.updatedAt,
        data,
        size: Buffer.byteLength(data),
        hash: SyncRecord.hashWith(normalised, data)
      })
    } catch (e) {
      rejected.push({
        instance: record.instance,
        kind: record.kind,
        projectId: record.projectId,
        projectPath: record.projectPath,
        origin: `stage ${record.kind} ${record.key}`,
        raw: safeRaw(record),
        error: e instanceof Error ? e.message : String(e)
      })
    }
  }
  return { rows: [...byIdentity.values()], rejected }
}

const safeRaw = (value: unknown): string => {
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(value)
  } catch {
    return String((value as { key?: unknown })?.key ?? value)
  }
}

const chunkRows = <A extends { readonly size: number }>(rows: ReadonlyArray<A>): Array<Array<A>> => {
  const chunks: Array<Array<A>> = []
  let current: Array<A> = []
  let bytes = 0
  for (const row of rows) {
    if (current.length > 0 && (current.length >= upsertChunkRows || bytes + row.size > upsertChunkBytes)) {
      chunks.push(current)
      current = []
      bytes = 0
    }
    current.push(row)
    bytes += row.size
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}

/** Splits (instance, kind)-ordered candidates into batches within the limits. */
interface Candidate {
  readonly instance: string
  readonly kind: string
  /** Full-precision text (microseconds): a paging key must not be rounded to milliseconds. */
  readonly staged_at: string
  readonly project_id: number
  readonly key: string
  readonly size: number
}
const planBatches = (candidates: ReadonlyArray<Candidate>, limits: BatchLimits) => {
  const batches: Array<Array<Candidate>> = []
  const oversized: Array<Candidate> = []
  let current: Array<Candidate> = []
  let bytes = 0
  for (const c of candidates) {
    const cost = c.size + recordOverheadBytes
    if (cost > limits.maxBytes) {
      oversized.push(c)
      continue
    }
    const head = current[0]
    if (
      head && (head.instance !== c.instance || head.kind !== c.kind || current.length >= limits.maxRecords ||
        bytes + cost > limits.maxBytes)
    ) {
      batches.push(current)
      current = []
      bytes = 0
    }
    current.push(c)
    bytes += cost
  }
  if (current.length > 0) batches.push(current)
  return { batches, oversized }
}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const fail = (operation: string) => (cause: SqlError.SqlError) => new StagingError({ operation, cause })
  const wrap = <A, E>(operation: string, effect: Effect.Effect<A, E | SqlError.SqlError>) =>
    Effect.mapError(effect, (e) => (isSqlError(e) ? fail(operation)(e) : e)) as Effect.Effect<A, Exclude<E, SqlError.SqlError> | StagingError>

  const insertQuarantine = (entries: ReadonlyArray<QuarantineEntry>) =>
    entries.length === 0 ? Effect.succeed(0) : Effect.gen(function*() {
      const payload = JSON.stringify(entries.map((e) => ({
        instance: e.instance,
        kind: e.kind,
        project_id: e.projectId ?? null,
        project_path: e.projectPath ?? null,
        origin: e.origin,
        raw: e.raw,
        error: e.error
      })))
      yield* sql`INSERT INTO quarantine (instance, kind, project_id, project_path, origin, raw, error)
        SELECT instance, kind, project_id, project_path, origin, raw, error
        FROM jsonb_to_recordset(${payload}::jsonb) AS x(instance text, kind text, project_id bigint,
          project_path text, origin text, raw text, error text)`
      return entries.length
    })

  const stage = (input: StageInput) => {
    const { rejected, rows } = prepare(input.records)
    const quarantine = [...(input.quarantine ?? []), ...rejected]
    return wrap("stage", sql.withTransaction(Effect.gen(function*() {
      let inserted = 0
      let changed = 0
      for (const chunk of chunkRows(rows)) {
        const payload = `[${chunk.map((r) => `{"instance":${JSON.stringify(r.instance)},"kind":${JSON.stringify(r.kind)},"project_id":${r.project_id},"project_path":${JSON.stringify(r.project_path)},"key":${JSON.stringify(r.key)},"updated_at":"${r.updated_at}","data":${r.data},"size":${r.size},"hash":"${r.hash}"}`).join(",")}]`
        const result = yield* sql<{ inserted: boolean }>`
          INSERT INTO records AS r (instance, kind, project_id, project_path, key, updated_at, data, size, hash)
          SELECT instance, kind, project_id, project_path, key, updated_at, data, size, hash
          FROM json_to_recordset(${payload}::json) AS x(instance text, kind text, project_id bigint,
            project_path text, key text, updated_at timestamptz, data json, size integer, hash text)
          ON CONFLICT (instance, kind, project_id, key) DO UPDATE SET
            project_path = EXCLUDED.project_path, updated_at = EXCLUDED.updated_at, data = EXCLUDED.data,
            size = EXCLUDED.size, hash = EXCLUDED.hash, staged_at = now()
          WHERE r.hash IS DISTINCT FROM EXCLUDED.hash
          RETURNING (xmax = 0) AS inserted`
        changed += result.length
        for (const r of result) if (r.inserted) inserted++
      }
      for (const c of input.cursors ?? []) {
        yield* sql`INSERT INTO cursors (instance, project_id, kind, value, updated_at)
          VALUES (${c.instance}, ${c.projectId}, ${c.kind}, ${c.value}, now())
          ON CONFLICT (instance, project_id, kind) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`
      }
      const quarantined = yield* insertQuarantine(quarantine)
      return { inserted, updated: changed - inserted, unchanged: rows.length - changed, quarantined }
    })))
  }

  const recordFilter = (filter: Omit<RecordFilter, "limit">) =>
    sql.and([
      sql`instance = ${filter.instance}`,
      sql`kind = ${filter.kind}`,
      ...(filter.projectId === undefined ? [] : [sql`project_id = ${filter.projectId}`]),
      ...(filter.keys === undefined ? [] : [sql`key = ANY(ARRAY(SELECT jsonb_array_elements_text(${JSON.stringify(filter.keys)}::jsonb)))`]),
      ...(filter.where === undefined ? [] : [
        sql`data->>${filter.where.field} = ANY(ARRAY(SELECT jsonb_array_elements_text(${JSON.stringify(filter.where.in)}::jsonb)))`
      ])
    ])

  const records = (filter: RecordFilter) =>
    wrap("records", sql<ItemRow>`SELECT instance, kind, project_id::float8 AS project_id, project_path, key, updated_at, data
      FROM records WHERE ${recordFilter(filter)} ORDER BY project_id, key LIMIT ${filter.limit ?? 100_000}`).pipe(
      Effect.map((rows) => rows.map(toRecord))
    )

  const versions = (filter: Omit<RecordFilter, "where" | "limit">) =>
    filter.keys !== undefined && filter.keys.length === 0
      ? Effect.succeed(new Map<string, string>())
      : wrap("versions", sql<{ key: string; updated_at: Date }>`SELECT key, updated_at FROM records
          WHERE ${recordFilter(filter)}`).pipe(
          Effect.map((rows) => new Map(rows.map((r) => [r.key, r.updated_at.toISOString()])))
        )

  type CursorRow = { instance: string; project_id: number; kind: string; value: string; updated_at: Date }
  const toCursor = (r: CursorRow): Cursor => ({
    instance: r.instance,
    projectId: r.project_id,
    kind: r.kind,
    value: r.value,
    updatedAt: r.updated_at
  })
  const cursorColumns = sql`instance, project_id::float8 AS project_id, kind, value, updated_at`

  const cursor = (key: CursorKey) =>
    wrap("cursor", sql<CursorRow>`SELECT ${cursorColumns} FROM cursors
      WHERE instance = ${key.instance} AND project_id = ${key.projectId} AND kind = ${key.kind}`).pipe(
      Effect.map((rows) => Option.map(Option.fromNullishOr(rows[0]), toCursor))
    )

  const scopeFilter = (filter: { readonly instance?: string | undefined; readonly projectId?: number | undefined; readonly kind?: string | undefined }) =>
    sql.and([
      sql`true`,
      ...(filter.instance === undefined ? [] : [sql`instance = ${filter.instance}`]),
      ...(filter.projectId === undefined ? [] : [sql`project_id = ${filter.projectId}`]),
      ...(filter.kind === undefined ? [] : [sql`kind = ${filter.kind}`])
    ])

  const cursors = (filter: { readonly instance?: string; readonly projectId?: number } = {}) =>
    wrap("cursors", sql<CursorRow>`SELECT ${cursorColumns} FROM cursors WHERE ${scopeFilter(filter)}
      ORDER BY instance, project_id, kind`).pipe(Effect.map((rows) => rows.map(toCursor)))

  const resetCursors = (filter: { readonly instance?: string; readonly projectId?: number; readonly kind?: string }) =>
    wrap("resetCursors", sql`DELETE FROM cursors WHERE ${scopeFilter(filter)} RETURNING 1`).pipe(
      Effect.map((rows) => rows.length)
    )

  /** Creates one batch from candidates (all of one instance and kind) inside the caller's transaction. */
  const createBatch = (
    group: ReadonlyArray<Candidate>,
    options: { readonly replay: boolean; readonly parentId?: string | null; readonly fromItemsOf?: string }
  ) =>
    Effect.gen(function*() {
      const id = Uuid.v7()
      const first = group[0]!
      const bytes = group.reduce((n, c) => n + c.size + recordOverheadBytes, 0)
      yield* sql`INSERT INTO batches (id, instance, kind, status, record_count, byte_size, replay, parent_id)
        VALUES (${id}, ${first.instance}, ${first.kind}, 'pending', ${group.length}, ${bytes}, ${options.replay},
          ${options.parentId ?? null})`
      const keys = JSON.stringify(group.map((c, seq) => ({ seq, project_id: c.project_id, key: c.key })))
      if (options.fromItemsOf !== undefined) {
        // Halves of a split batch keep the parent's snapshot, not the records' current content.
        yield* sql`INSERT INTO batch_items (batch_id, seq, instance, kind, project_id, project_path, key, updated_at, data, hash)
          SELECT ${id}, k.seq, i.instance, i.kind, i.project_id, i.project_path, i.key, i.updated_at, i.data, i.hash
          FROM jsonb_to_recordset(${keys}::jsonb) AS k(seq int, project_id bigint, key text)
          JOIN batch_items i ON i.batch_id = ${options.fromItemsOf} AND i.project_id = k.project_id AND i.key = k.key`
      } else {
        yield* sql`INSERT INTO batch_items (batch_id, seq, instance, kind, project_id, project_path, key, updated_at, data, hash)
          SELECT ${id}, k.seq, r.instance, r.kind, r.project_id, r.project_path, r.key, r.updated_at, r.data, r.hash
          FROM jsonb_to_recordset(${keys}::jsonb) AS k(seq int, project_id bigint, key text)
          JOIN records r ON r.instance = ${first.instance} AND r.kind = ${first.kind}
            AND r.project_id = k.project_id AND r.key = k.key`
      }
      if (!options.replay) {
        // Mark exactly the snapshot taken: a record changed meanwhile keeps a different hash and is
        // packed again next time.
        yield* sql`UPDATE records r SET batched_hash = i.hash FROM batch_items i
          WHERE i.batch_id = ${id} AND r.instance = i.instance AND r.kind = i.kind
            AND r.project_id = i.project_id AND r.key = i.key`
      }
      return id
    })

  const quarantineOversized = (oversized: ReadonlyArray<Candidate>, limits: BatchLimits) =>
    Effect.gen(function*() {
      if (oversized.length === 0) return 0
      const keys = JSON.stringify(oversized.map((c) => ({ instance: c.instance, kind: c.kind, project_id: c.project_id, key: c.key })))
      yield* sql`INSERT INTO quarantine (instance, kind, project_id, project_path, origin, raw, error)
        SELECT r.instance, r.kind, r.project_id, r.project_path, 'outbox', r.data::text,
          'record of ' || r.size || ' bytes exceeds the batch limit of ' || ${limits.maxBytes} || ' bytes; it cannot be delivered'
        FROM jsonb_to_recordset(${keys}::jsonb) AS k(instance text, kind text, project_id bigint, key text)
        JOIN records r USING (instance, kind, project_id, key)`
      yield* sql`UPDATE records r SET batched_hash = r.hash
        FROM jsonb_to_recordset(${keys}::jsonb) AS k(instance text, kind text, project_id bigint, key text)
        WHERE r.instance = k.instance AND r.kind = k.kind AND r.project_id = k.project_id AND r.key = k.key`
      return oversized.length
    })

  /** Packs in rounds; `select` reads the next candidates in (instance, kind) order. */
  /**
   * Packs in rounds of one transaction each; `select` reads the next candidates in
   * (instance, kind, staged_at, project_id, key) order, after the last candidate packed so far.
   */
  const packWith = (
    operation: string,
    limits: BatchLimits,
    replay: boolean,
    select: (after: Candidate | undefined) => Effect.Effect<ReadonlyArray<Candidate>, SqlError.SqlError>
  ) =>
    wrap(operation, Effect.gen(function*() {
      // A fetch may have just grown the table many-fold; without fresh statistics the planner
      // picks sequential scans for the key joins below (measured: 50 s instead of 3 s for 100k).
      yield* sql`ANALYZE records`
      let batches = 0
      let records = 0
      let quarantined = 0
      let after: Candidate | undefined
      for (;;) {
        const done = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`SELECT pg_advisory_xact_lock(${packLockKey})`
          const candidates = yield* select(after)
          const plan = planBatches(candidates, limits)
          let groups = plan.batches
          const full = candidates.length >= packRoundRows
          // A full round may have cut the last group short: leave its tail for the next round.
          if (full && groups.length > 1) groups = groups.slice(0, -1)
          for (const group of groups) {
            yield* createBatch(group, { replay })
            batches++
            records += group.length
          }
          // A replay sends what exists; oversized records were quarantined when first packed.
          if (!replay) quarantined += yield* quarantineOversized(plan.oversized, limits)
          after = groups.at(-1)?.at(-1) ?? candidates.at(-1)
          return !full
        }))
        if (done) break
      }
      return { batches, records, quarantined }
    }))

  const candidateColumns = sql`instance, kind, staged_at::text AS staged_at, project_id::float8 AS project_id, key, size`

  const pack = (limits: BatchLimits = defaultLimits) =>
    // Packed rows leave the selection (batched_hash = hash), so every round starts from the top.
    packWith("pack", limits, false, () =>
      sql<Candidate>`SELECT ${candidateColumns} FROM records
        WHERE batched_hash IS DISTINCT FROM hash
        ORDER BY instance, kind, staged_at, project_id, key LIMIT ${packRoundRows}`)

  const rebatchSince = (
    since: Date,
    options: { readonly kind?: string | undefined; readonly limits?: BatchLimits | undefined } = {}
  ) =>
    Effect.gen(function*() {
      // Replays do not touch batched_hash: rounds page by key, up to the moment the replay began
      // (records staged meanwhile go out through the normal outbox anyway).
      const [start] = yield* wrap("rebatchSince", sql<{ now: string }>`SELECT now()::text AS now`)
      const kindFilter = options.kind === undefined ? sql`true` : sql`kind = ${options.kind}`
      return yield* packWith("rebatchSince", options.limits ?? defaultLimits, true, (after) =>
        sql<Candidate>`SELECT ${candidateColumns} FROM records
          WHERE staged_at >= ${since} AND staged_at <= ${start!.now}::timestamptz AND ${kindFilter}
            AND ${after === undefined ? sql`true` : sql`(instance, kind, staged_at, project_id, key) >
              (${after.instance}, ${after.kind}, ${after.staged_at}::timestamptz, ${after.project_id}, ${after.key})`}
          ORDER BY instance, kind, staged_at, project_id, key LIMIT ${packRoundRows}`)
    })

  const batchColumns = sql`id::text AS id, instance, kind, status, record_count, byte_size, attempts, last_error,
    replay, parent_id::text AS parent_id, created_at, updated_at, first_attempt_at, next_attempt_at,
    delivered_at, claimed_by`

  const claim = (options: ClaimOptions) =>
    wrap("claim", sql<BatchRow>`
      UPDATE batches b SET claimed_by = ${options.owner}, claim_locked = ${registered.has(options.owner)},
        claimed_until = now() + ${options.leaseSeconds ?? 300} * interval '1 second',
        attempts = b.attempts + 1, first_attempt_at = coalesce(b.first_attempt_at, now()), updated_at = now()
      FROM (SELECT id FROM batches
            WHERE status = 'pending' AND next_attempt_at <= now()
              AND (${options.dueBefore ?? null}::timestamptz IS NULL OR next_attempt_at <= ${options.dueBefore ?? null}::timestamptz)
              AND (claimed_until IS NULL OR claimed_until < now() OR (claim_locked AND NOT EXISTS (
                -- the claimer's session lock (registerOwner) is gone: its process died
                SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 2
                  AND l.classid = ${ownerLockSpace}::oid AND l.objid = (hashtext(claimed_by)::bigint & 4294967295)::oid)))
            ORDER BY next_attempt_at, id LIMIT ${options.limit}
            FOR UPDATE SKIP LOCKED) c
      WHERE b.id = c.id
      RETURNING ${sql`b.id::text AS id, b.instance, b.kind, b.status, b.record_count, b.byte_size, b.attempts,
        b.last_error, b.replay, b.parent_id::text AS parent_id, b.created_at, b.updated_at, b.first_attempt_at,
        b.next_attempt_at, b.delivered_at, b.claimed_by`}`).pipe(
      Effect.map((rows) => rows.map(toBatch).sort((a, b) => a.id.localeCompare(b.id)))
    )

  const registered = new Set<string>()
  const registerOwner = (owner: string) =>
    Effect.gen(function*() {
      const conn = yield* sql.reserve
      yield* conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", [ownerLockSpace, owner], undefined)
      registered.add(owner)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => registered.delete(owner)).pipe(
          Effect.andThen(conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", [ownerLockSpace, owner], undefined)),
          Effect.ignore
        )
      )
    }).pipe(Effect.mapError((cause) => new StagingError({ operation: "registerOwner", cause })))

  const batch = (id: string) =>
    Uuid.isUuid(id)
      ? wrap("batch", sql<BatchRow>`SELECT ${batchColumns} FROM batches WHERE id = ${id}::uuid`).pipe(
        Effect.flatMap((rows) => rows[0] ? Effect.succeed(toBatch(rows[0])) : Effect.fail(new BatchNotFound({ id })))
      )
      : Effect.fail(new BatchNotFound({ id }))

  const batches = (filter: { readonly status?: BatchStatus; readonly kind?: string; readonly limit?: number } = {}) =>
    wrap("batches", sql<BatchRow>`SELECT ${batchColumns} FROM batches
      WHERE ${sql.and([
      sql`true`,
      ...(filter.status === undefined ? [] : [sql`status = ${filter.status}`]),
      ...(filter.kind === undefined ? [] : [sql`kind = ${filter.kind}`])
    ])}
      ORDER BY id DESC LIMIT ${filter.limit ?? 1000}`).pipe(Effect.map((rows) => rows.map(toBatch)))

  const itemColumns = sql`instance, kind, project_id::float8 AS project_id, project_path, key, updated_at, data`
  const batchRecords = (id: string) =>
    Effect.andThen(batch(id), () =>
      wrap("batchRecords", sql<ItemRow>`SELECT ${itemColumns} FROM batch_items WHERE batch_id = ${id}::uuid ORDER BY seq`)
        .pipe(Effect.map((rows) => rows.map(toRecord))))

  const updateBatch = (operation: string, id: string, set: Statement.Fragment) =>
    Uuid.isUuid(id)
      ? wrap(operation, sql`UPDATE batches SET ${set}, updated_at = now() WHERE id = ${id}::uuid RETURNING 1`).pipe(
        Effect.flatMap((rows) => rows.length === 1 ? Effect.void : Effect.fail(new BatchNotFound({ id })))
      )
      : Effect.fail(new BatchNotFound({ id }))

  const markDelivered = (id: string) =>
    updateBatch("markDelivered", id, sql`status = 'delivered', delivered_at = now(), last_error = NULL,
      claimed_by = NULL, claimed_until = NULL`)
  const markFailed = (id: string, error: string) =>
    updateBatch("markFailed", id, sql`status = 'failed', last_error = ${error}, claimed_by = NULL, claimed_until = NULL`)
  const markRetry = (id: string, error: string, delayMs: number) =>
    updateBatch("markRetry", id, sql`status = 'pending', last_error = ${error}, claimed_by = NULL, claimed_until = NULL,
      next_attempt_at = now() + ${Math.max(0, Math.round(delayMs))} * interval '1 millisecond'`)

  const replayBatch = (id: string) =>
    // A replay is a fresh delivery: its retry age starts now, not at the original first attempt.
    updateBatch("replayBatch", id, sql`status = 'pending', replay = true, next_attempt_at = now(),
      attempts = 0, first_attempt_at = NULL, last_error = NULL, delivered_at = NULL,
      claimed_by = NULL, claimed_until = NULL`).pipe(Effect.andThen(batch(id)))

  const split = (id: string) =>
    Effect.gen(function*() {
      const parent = yield* batch(id)
      const items = yield* wrap("split", sql<Candidate>`SELECT instance, kind, '' AS staged_at, project_id::float8 AS project_id, key,
        octet_length(data::text) AS size FROM batch_items WHERE batch_id = ${id}::uuid ORDER BY seq`)
      if (items.length < 2) {
        yield* markFailed(id, "receiver rejected a single-record batch as too large (413)")
        return []
      }
      const half = Math.ceil(items.length / 2)
      const ids = yield* wrap("split", sql.withTransaction(Effect.gen(function*() {
        const a = yield* createBatch(items.slice(0, half), { replay: parent.replay, parentId: id, fromItemsOf: id })
        const b = yield* createBatch(items.slice(half), { replay: parent.replay, parentId: id, fromItemsOf: id })
        yield* sql`UPDATE batches SET status = 'split', claimed_by = NULL, claimed_until = NULL, updated_at = now(),
          last_error = 'split in two after 413' WHERE id = ${id}::uuid`
        return [a, b]
      })))
      return yield* Effect.forEach(ids, batch)
    })

  const startRun = (run: RunStart) =>
    wrap("startRun", sql<{ id: number }>`INSERT INTO runs (cycle_id, instance, project_id, project_path, status)
      VALUES (${run.cycleId}, ${run.instance}, ${run.projectId ?? null}, ${run.projectPath ?? null}, 'running')
      RETURNING id::float8 AS id`).pipe(Effect.map((rows) => rows[0]!.id))

  const finishRun = (id: number, end: RunEnd) =>
    wrap("finishRun", sql`UPDATE runs SET status = ${end.status}, finished_at = now(),
      counts = ${JSON.stringify(end.counts)}::jsonb, warnings = ${JSON.stringify(end.warnings)}::jsonb,
      errors = ${JSON.stringify(end.errors)}::jsonb WHERE id = ${id}`).pipe(Effect.asVoid)

  type RunRow = {
    id: number
    cycle_id: string
    instance: string
    project_id: number | null
    project_path: string | null
    status: RunStatus
    started_at: Date
    finished_at: Date | null
    counts: { [kind: string]: number }
    warnings: Array<string>
    errors: Array<string>
  }
  const runs = (filter: { readonly instance?: string; readonly projectId?: number; readonly limit?: number } = {}) =>
    wrap("runs", sql<RunRow>`SELECT id::float8 AS id, cycle_id, instance, project_id::float8 AS project_id, project_path,
      status, started_at, finished_at, counts, warnings, errors FROM runs WHERE ${scopeFilter(filter)}
      ORDER BY id DESC LIMIT ${filter.limit ?? 100}`).pipe(
      Effect.map((rows) =>
        rows.map((r): Run => ({
          id: r.id,
          cycleId: r.cycle_id,
          instance: r.instance,
          projectId: r.project_id ?? undefined,
          projectPath: r.project_path ?? undefined,
          status: r.status,
          startedAt: r.started_at,
          finishedAt: r.finished_at,
          counts: r.counts,
          warnings: r.warnings,
          errors: r.errors
        }))
      )
    )

  const quarantine = (entries: ReadonlyArray<QuarantineEntry>) => wrap("quarantine", insertQuarantine(entries))

  type QuarantineRow = {
    id: number
    instance: string
    kind: string
    project_id: number | null
    project_path: string | null
    origin: string
    raw: string
    error: string
    created_at: Date
  }
  const quarantined = (filter: { readonly limit?: number } = {}) =>
    wrap("quarantined", sql<QuarantineRow>`SELECT id::float8 AS id, instance, kind, project_id::float8 AS project_id,
      project_path, origin, raw, error, created_at FROM quarantine ORDER BY id DESC LIMIT ${filter.limit ?? 100}`).pipe(
      Effect.map((rows) =>
        rows.map((r): Quarantined => ({
          id: r.id,
          instance: r.instance,
          kind: r.kind,
          projectId: r.project_id ?? undefined,
          projectPath: r.project_path ?? undefined,
          origin: r.origin,
          raw: r.raw,
          error: r.error,
          createdAt: r.created_at
        }))
      )
    )

  const summary = wrap("summary", Effect.gen(function*() {
    const kinds = yield* sql<{ kind: string; n: number }>`SELECT kind, count(*)::int AS n FROM records GROUP BY kind`
    const statuses = yield* sql<{ status: BatchStatus; n: number }>`SELECT status, count(*)::int AS n FROM batches GROUP BY status`
    const [undelivered] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM records WHERE batched_hash IS DISTINCT FROM hash`
    const [q] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM quarantine`
    const batches = { pending: 0, delivered: 0, failed: 0, split: 0 }
    for (const s of statuses) batches[s.status] = s.n
    return {
      recordsByKind: Object.fromEntries(kinds.map((k) => [k.kind, k.n])),
      batches,
      undelivered: undelivered?.n ?? 0,
      quarantined: q?.n ?? 0
    } satisfies Summary
  }))

  const scopes = wrap("scopes", Effect.gen(function*() {
    const rows = yield* sql<{ instance: string; project_id: number; project_path: string; kind: string; n: number; unbatched: number; last: Date }>`
      SELECT instance, project_id::float8 AS project_id, max(project_path) AS project_path, kind, count(*)::int AS n,
        count(*) FILTER (WHERE batched_hash IS DISTINCT FROM hash)::int AS unbatched, max(staged_at) AS last
      FROM records GROUP BY instance, project_id, kind ORDER BY instance, project_id, kind`
    const q = yield* sql<{ instance: string; project_id: number; n: number }>`
      SELECT instance, project_id::float8 AS project_id, count(*)::int AS n FROM quarantine
      WHERE project_id IS NOT NULL GROUP BY instance, project_id`
    const out = new Map<string, { -readonly [K in keyof ScopeStats]: ScopeStats[K] }>()
    for (const r of rows) {
      const id = `${r.instance} ${r.project_id}`
      const entry = out.get(id) ?? { instance: r.instance, projectId: r.project_id, projectPath: r.project_path, recordsByKind: {}, unbatched: 0, quarantined: 0, lastStagedAt: null }
      entry.recordsByKind = { ...entry.recordsByKind, [r.kind]: r.n }
      entry.unbatched += r.unbatched
      if (r.kind === "project") entry.projectPath = r.project_path
      if (!entry.lastStagedAt || r.last > entry.lastStagedAt) entry.lastStagedAt = r.last
      out.set(id, entry)
    }
    for (const r of q) {
      const entry = out.get(`${r.instance} ${r.project_id}`)
      if (entry) entry.quarantined = r.n
    }
    return [...out.values()] as ReadonlyArray<ScopeStats>
  }))

  return Staging.of({
    registerOwner,
    scopes,
    stage,
    records,
    versions,
    cursor,
    cursors,
    resetCursors,
    pack,
    claim,
    batch,
    batches,
    batchRecords,
    markDelivered,
    markFailed,
    markRetry,
    split,
    replayBatch,
    rebatchSince,
    startRun,
    finishRun,
    runs,
    quarantine,
    quarantined,
    summary
  })
})

const isSqlError = (e: unknown): e is SqlError.SqlError =>
  typeof e === "object" && e !== null && (e as { _tag?: unknown })._tag === "SqlError"

/** Staging over the ambient SqlClient; runs migrations first (and fails on a too-new schema). */
export const layer = Layer.effect(
  Staging,
  Effect.gen(function*() {
    yield* Migrations.run.pipe(Effect.mapError((e) =>
      e._tag === "SqlError" ? new StagingError({ operation: "migrate", cause: e }) : e
    ))
    return yield* make
  })
)
