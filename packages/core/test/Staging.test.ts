/**
 * The staging store's contract, run against both backends: a fresh database on the local
 * PostgreSQL server and an embedded cluster in a temporary directory.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Database, Migrations, Staging, type SyncRecord } from "@mhq-sync/core"
import { TestDatabase } from "@mhq-sync/testkit"
import { Context, Effect, Exit, Layer, Option, Redacted, Scope } from "effect"
import { SqlClient } from "effect/sql"

const instance = "https://gitlab.example.com"

const mr = (i: number, extra: Record<string, unknown> = {}, projectId = 1): SyncRecord.SyncRecord => ({
  instance,
  kind: "merge_request",
  projectId,
  projectPath: `group/p${projectId}`,
  key: String(i),
  updatedAt: `2026-11-0${1 + (i % 9)}T10:00:00.000Z`,
  data: { id: 1000 + i, iid: i, title: `MR ${i}`, state: "opened", ...extra }
})
const many = (n: number, kind = "merge_request", extra: Record<string, unknown> = {}) =>
  Array.from({ length: n }, (_, i) => ({ ...mr(i, extra), kind }))

for (const backend of TestDatabase.backends) {
  layer(TestDatabase.staging(backend), { timeout: "180 seconds", excludeTestServices: true, buildPerTest: true })(
    `Staging contract (${backend})`,
    (it) => {
      it.effect("migrations on an existing database are a no-op; a newer schema is refused", () =>
        Effect.gen(function*() {
          assert.deepStrictEqual(yield* Migrations.run, [])
          const sql = yield* SqlClient.SqlClient
          yield* sql`INSERT INTO mhq_migrations (migration_id, name) VALUES (9999, 'from_the_future')`
          const error = yield* Effect.flip(Migrations.run)
          assert.strictEqual(error._tag, "SchemaTooNew")
          assert.match(error.message, /version 9999, newer than this mhq-sync knows \(1\)/)
        }))

      it.effect("upsert is idempotent and unchanged records are neither rewritten nor re-sent", () =>
        Effect.gen(function*() {
          const staging = yield* Staging.Staging
          const sql = yield* SqlClient.SqlClient
          const records = many(50)
          assert.deepStrictEqual(yield* staging.stage({ records }), { inserted: 50, updated: 0, unchanged: 0, quarantined: 0 })
          const before = yield* sql<{ staged_at: Date }>`SELECT max(staged_at) AS staged_at FROM records`
          // Same content with keys in another order: same canonical hash.
          const reordered = records.map((r) => ({ ...r, data: Object.fromEntries(Object.entries(r.data as object).reverse()) }))
          assert.deepStrictEqual(yield* staging.stage({ records: reordered }), { inserted: 0, updated: 0, unchanged: 50, quarantined: 0 })
          const after = yield* sql<{ staged_at: Date }>`SELECT max(staged_at) AS staged_at FROM records`
          assert.strictEqual(after[0]!.staged_at.getTime(), before[0]!.staged_at.getTime())

          assert.deepStrictEqual(yield* staging.pack(), { batches: 1, records: 50, quarantined: 0 })
          // Nothing changed since packing: nothing to send.
          yield* staging.stage({ records })
          assert.deepStrictEqual(yield* staging.pack(), { batches: 0, records: 0, quarantined: 0 })
          // One record changes: only it is packed again.
          const changed = { ...records[7]!, data: { ...(records[7]!.data as object), state: "merged" } }
          assert.deepStrictEqual(yield* staging.stage({ records: [changed] }), { inserted: 0, updated: 1, unchanged: 0, quarantined: 0 })
          assert.deepStrictEqual(yield* staging.pack(), { batches: 1, records: 1, quarantined: 0 })
          const [latest] = yield* staging.batches({ limit: 1 })
          assert.deepStrictEqual(yield* staging.batchRecords(latest!.id), [changed])
        }))

      it.effect("cursors land in the same transaction as their records: a mid-transaction failure lands neither", () =>
        Effect.gen(function*() {
          const staging = yield* Staging.Staging
          const key = { instance, projectId: 1, kind: "merge_request" }
          // The cursor row violates NOT NULL after the records were written in the same transaction.
          const exit = yield* Effect.exit(staging.stage({
            records: many(20),
            cursors: [{ ...key, value: null as unknown as string }]
          }))
          assert.isTrue(Exit.isFailure(exit))
          assert.deepStrictEqual((yield* staging.summary).recordsByKind, {})
          assert.isTrue(Option.isNone(yield* staging.cursor(key)))

          // And when a caller's surrounding transaction fails after staging, both roll back too.
          const sql = yield* SqlClient.SqlClient
          const outer = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
            yield* staging.stage({ records: many(20), cursors: [{ ...key, value: "2026-11-01T00:00:00Z" }] })
            return yield* Effect.fail("crash after staging")
          })))
          assert.isTrue(Exit.isFailure(outer))
          assert.deepStrictEqual((yield* staging.summary).recordsByKind, {})
          assert.isTrue(Option.isNone(yield* staging.cursor(key)))

          yield* staging.stage({ records: many(20), cursors: [{ ...key, value: "2026-11-01T00:00:00Z" }] })
          assert.deepStrictEqual((yield* staging.summary).recordsByKind, { merge_request: 20 })
          assert.strictEqual(Option.getOrThrow(yield* staging.cursor(key)).value, "2026-11-01T00:00:00Z")
        }))

      it.effect("batch limits: at most N records and M bytes per batch, per kind; oversized records quarantined", () =>
        Effect.gen(function*() {
          const staging = yield* Staging.Staging
          yield* staging.stage({ records: [...many(1234), ...many(10, "pipeline")] })
          assert.deepStrictEqual(yield* staging.pack(), { batches: 4, records: 1244, quarantined: 0 })
          const batches = yield* staging.batches()
          assert.deepStrictEqual(
            batches.map((b) => [b.kind, b.recordCount]).sort(),
            [["merge_request", 234], ["merge_request", 500], ["merge_request", 500], ["pipeline", 10]].sort()
          )

          // Byte limit: ~10 KB records, 64 KB batches.
          const big = Array.from({ length: 30 }, (_, i) => ({ ...mr(i), kind: "commit", data: { pad: "x".repeat(10_000), i } }))
          const huge = { ...mr(99), kind: "commit", data: { pad: "y".repeat(100_000) } }
          yield* staging.stage({ records: [...big, huge] })
          const limits = { maxRecords: 500, maxBytes: 64 * 1024 }
          const packed = yield* staging.pack(limits)
          assert.strictEqual(packed.records, 30)
          assert.strictEqual(packed.quarantined, 1)
          const commitBatches = yield* staging.batches({ kind: "commit" })
          assert.strictEqual(commitBatches.reduce((n, b) => n + b.recordCount, 0), 30)
          for (const b of commitBatches) assert.isAtMost(b.byteSize, limits.maxBytes)
          assert.isAtLeast(commitBatches.length, 5)
          const [q] = yield* staging.quarantined()
          assert.strictEqual(q!.kind, "commit")
          assert.match(q!.error, /exceeds the batch limit of 65536 bytes/)
          // The oversized record is not retried forever.
          assert.deepStrictEqual(yield* staging.pack(limits), { batches: 0, records: 0, quarantined: 0 })
        }))

      it.effect("a record whose data cannot be serialised is quarantined and the rest staged", () =>
        Effect.gen(function*() {
          const staging = yield* Staging.Staging
          const bad = { ...mr(3), data: { id: 3, big: 10n } as unknown as SyncRecord.SyncRecord["data"] }
          const noTime = { ...mr(4), updatedAt: "yesterday" }
          const result = yield* staging.stage({ records: [mr(1), bad, mr(2), noTime] })
          assert.deepStrictEqual(result, { inserted: 2, updated: 0, unchanged: 0, quarantined: 2 })
          const q = yield* staging.quarantined()
          assert.deepStrictEqual(q.map((e) => e.error.slice(0, 40)).sort(), [
            "data of merge_request 3 cannot be serial",
            "updatedAt \"yesterday\" is not an ISO time"
          ])
          assert.include(q.find((e) => e.origin.includes(" 3"))!.raw, "10n")
        }))

      it.effect("replay returns the identical records, even after they changed", () =>
        Effect.gen(function*() {
          const staging = yield* Staging.Staging
          const records = many(30)
          yield* staging.stage({ records })
          yield* staging.pack({ maxRecords: 10, maxBytes: 1 << 20 })
          const claimed = yield* staging.claim({ owner: "w1", limit: 10 })
          assert.strictEqual(claimed.length, 3)
          const first = claimed[0]!
          const original = yield* staging.batchRecords(first.id)
          assert.strictEqual(original.length, 10)
          const keys = new Set(original.map((r) => r.key))
          assert.deepStrictEqual(original, records.filter((r) => keys.has(r.key)).sort((x, y) => x.key.localeCompare(y.key)))
          yield* staging.markDelivered(first.id)

          yield* staging.stage({ records: records.map((r) => ({ ...r, data: { changed: true } })) })
          const replayed = yield* staging.replayBatch(first.id)
          assert.strictEqual(replayed.id, first.id)
          assert.strictEqual(replayed.status, "pending")
          assert.isTrue(replayed.replay)
          assert.strictEqual(replayed.attempts, 0)
          assert.isNull(replayed.firstAttemptAt)
          assert.deepStrictEqual(yield* staging.batchRecords(first.id), original)

          // Re-batching since a time takes the current content and leaves the normal outbox alone.
          const since = new Date(Date.now() - 60_000)
          const rebatched = yield* staging.rebatchSince(since, { kind: "merge_request", limits: { maxRecords: 7, maxBytes: 1 << 20 } })
          assert.deepStrictEqual(rebatched, { batches: 5, records: 30, quarantined: 0 })
          const replays = (yield* staging.batches()).filter((b) => b.replay && b.id !== first.id)
          assert.strictEqual(replays.length, 5)
          const content = yield* Effect.forEach(replays, (b) => staging.batchRecords(b.id))
          assert.isTrue(content.flat().every((r) => (r.data as { changed?: boolean }).changed === true))
          assert.strictEqual((yield* staging.pack()).records, 30) // the changes still go out normally
          const missing = yield* Effect.flip(staging.batchRecords("01890a5d-ac96-774b-bcce-b302099a8057"))
          assert.strictEqual(missing._tag, "BatchNotFound")
        }))

      it.effect("claim, retry, fail, deliver, split", () =>
        Effect.gen(function*() {
          const staging = yield* Staging.Staging
          yield* staging.stage({ records: many(9) })
          yield* staging.pack({ maxRecords: 3, maxBytes: 1 << 20 })
          const [a, b, c] = yield* staging.claim({ owner: "w", limit: 10 })
          assert.deepStrictEqual(yield* staging.claim({ owner: "other", limit: 10 }), []) // all leased
          yield* staging.markRetry(a!.id, "503 Service Unavailable", 60_000)
          yield* staging.markFailed(b!.id, "400 Bad Request: nope")
          const halves = yield* staging.split(c!.id)
          assert.deepStrictEqual(halves.map((h) => [h.recordCount, h.parentId, h.status]), [[2, c!.id, "pending"], [1, c!.id, "pending"]])
          assert.strictEqual((yield* staging.batch(c!.id)).status, "split")
          assert.deepStrictEqual(
            [...(yield* staging.batchRecords(halves[0]!.id)), ...(yield* staging.batchRecords(halves[1]!.id))],
            yield* staging.batchRecords(c!.id)
          )
          // a is not due for a minute; the halves are (but not for a pass that started before they existed).
          assert.deepStrictEqual(yield* staging.claim({ owner: "w", limit: 10, dueBefore: new Date(Date.now() - 60_000) }), [])
          const next = yield* staging.claim({ owner: "w", limit: 10, dueBefore: new Date(Date.now() + 1000) })
          assert.deepStrictEqual(next.map((x) => x.id).sort(), halves.map((h) => h.id).sort())
          const retried = yield* staging.batch(a!.id)
          assert.strictEqual(retried.attempts, 1)
          assert.strictEqual(retried.lastError, "503 Service Unavailable")
          assert.isAbove(retried.nextAttemptAt.getTime(), Date.now() + 50_000)
          assert.strictEqual((yield* staging.batch(b!.id)).status, "failed")
          const summary = yield* staging.summary
          assert.deepStrictEqual(summary.batches, { pending: 3, delivered: 0, failed: 1, split: 1 })
        }))

      it.effect("run log and record lookups", () =>
        Effect.gen(function*() {
          const staging = yield* Staging.Staging
          const id = yield* staging.startRun({ cycleId: "c1", instance, projectId: 1, projectPath: "group/p1" })
          yield* staging.finishRun(id, { status: "partial", counts: { merge_request: 3 }, warnings: ["approvals unavailable (404)"], errors: [] })
          const [run] = yield* staging.runs({ projectId: 1 })
          assert.strictEqual(run!.status, "partial")
          assert.deepStrictEqual(run!.counts, { merge_request: 3 })
          assert.deepStrictEqual(run!.warnings, ["approvals unavailable (404)"])
          assert.isNotNull(run!.finishedAt)

          yield* staging.stage({ records: [mr(1, { status: "running" }), mr(2, { status: "success" }), mr(3, { status: "pending" })] })
          const unfinished = yield* staging.records({ instance, kind: "merge_request", where: { field: "status", in: ["running", "pending"] } })
          assert.deepStrictEqual(unfinished.map((r) => r.key), ["1", "3"])
          const versions = yield* staging.versions({ instance, kind: "merge_request", projectId: 1, keys: ["2", "3", "404"] })
          assert.deepStrictEqual([...versions.entries()], [["2", mr(2).updatedAt], ["3", mr(3).updatedAt]])
          assert.strictEqual(yield* staging.resetCursors({ instance, projectId: 1 }), 0)
          yield* staging.stage({ records: [mr(1, {}, 2)], quarantine: [{ instance, kind: "note", projectId: 2, projectPath: "group/p2", origin: "GET x", raw: "{", error: "truncated" }] })
          const scopes = yield* staging.scopes
          assert.deepStrictEqual(scopes.map((x) => [x.projectId, x.projectPath, x.recordsByKind, x.unbatched, x.quarantined]), [
            [1, "group/p1", { merge_request: 3 }, 3, 0],
            [2, "group/p2", { merge_request: 1 }, 1, 1]
          ])
        }))

      it.effect("stages 30k records in one call (chunked; no bind-parameter ceiling); pack and replay span many rounds", () =>
        Effect.gen(function*() {
          const staging = yield* Staging.Staging
          const records = Array.from({ length: 30_000 }, (_, i) => mr(i, { body: "z".repeat(200) }))
          assert.deepStrictEqual(yield* staging.stage({ records }), { inserted: 30_000, updated: 0, unchanged: 0, quarantined: 0 })
          const limits = { maxRecords: 700, maxBytes: 1 << 20 } // 700 does not divide a 5,000-row round
          assert.deepStrictEqual(yield* staging.pack(limits), { batches: 43, records: 30_000, quarantined: 0 })
          // A replay of everything covers every record exactly once, across rounds.
          const replay = yield* staging.rebatchSince(new Date(0), { limits })
          assert.deepStrictEqual(replay, { batches: 43, records: 30_000, quarantined: 0 })
          const replays = (yield* staging.batches({ limit: 10_000 })).filter((b) => b.replay)
          const keys = (yield* Effect.forEach(replays, (b) => staging.batchRecords(b.id))).flat().map((r) => r.key)
          assert.strictEqual(new Set(keys).size, 30_000)
        }))
    }
  )
}

describe("Staging on the server backend", () => {
  it.live("two concurrent claimers never share a batch", () =>
    Effect.scoped(Effect.gen(function*() {
      const { url } = yield* TestDatabase.freshServerDatabase
      // Two independent pools, like two agent processes on one database.
      const pool = () => Staging.layer.pipe(Layer.provideMerge(Database.layer({ url: Redacted.make(url), dataDir: "" })))
      const one = yield* Layer.build(pool())
      const two = yield* Layer.build(pool())
      const s1 = Context.get(one, Staging.Staging)
      const s2 = Context.get(two, Staging.Staging)
      yield* s1.stage({ records: many(400) })
      yield* s1.pack({ maxRecords: 2, maxBytes: 1 << 20 })
      const claimLoop = (s: Staging.Service, owner: string) =>
        Effect.gen(function*() {
          const got: Array<string> = []
          for (;;) {
            const batch = yield* s.claim({ owner, limit: 3 })
            if (batch.length === 0) return got
            got.push(...batch.map((b) => b.id))
          }
        })
      const results = yield* Effect.all([
        claimLoop(s1, "a"), claimLoop(s2, "b"), claimLoop(s1, "c"), claimLoop(s2, "d")
      ], { concurrency: "unbounded" })
      const all = results.flat()
      assert.strictEqual(all.length, 200)
      assert.strictEqual(new Set(all).size, 200)
      assert.isAbove(results.filter((r) => r.length > 0).length, 1) // they really ran side by side
    })), 120_000)

  it.live("a registered owner's claims end with its session, not after the lease", () =>
    Effect.scoped(Effect.gen(function*() {
      const { url } = yield* TestDatabase.freshServerDatabase
      const pool = () => Staging.layer.pipe(Layer.provideMerge(Database.layer({ url: Redacted.make(url), dataDir: "" })))
      const s2 = Context.get(yield* Layer.build(pool()), Staging.Staging)
      yield* s2.stage({ records: many(6) })
      yield* s2.pack({ maxRecords: 2, maxBytes: 1 << 20 })

      // Agent A (its own pool) registers and claims two batches with a long lease, then "dies".
      const agentA = yield* Scope.make()
      const s1 = Context.get(yield* Layer.buildWithScope(pool(), agentA), Staging.Staging)
      yield* s1.registerOwner("agent-a").pipe(Scope.provide(agentA))
      const held = yield* s1.claim({ owner: "agent-a", limit: 2, leaseSeconds: 3600 })
      assert.strictEqual(held.length, 2)
      // While A lives, B only gets what A did not claim.
      const first = yield* s2.claim({ owner: "agent-b", limit: 10, leaseSeconds: 3600 })
      assert.deepStrictEqual(first.map((b) => b.id).filter((id) => held.some((h) => h.id === id)), [])
      assert.strictEqual(first.length, 1)
      // An unregistered claim (agent-b) keeps its lease: nobody else takes it.
      assert.deepStrictEqual(yield* s1.claim({ owner: "agent-a", limit: 10 }), [])
      yield* Scope.close(agentA, Exit.void)
      const taken = yield* s2.claim({ owner: "agent-b2", limit: 10 })
      assert.deepStrictEqual(taken.map((b) => b.id).sort(), held.map((b) => b.id).sort())
    })), 60_000)
})
