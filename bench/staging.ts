/**
 * bench/staging: records/s for staging 100k records (then re-staging them unchanged, and packing
 * them into batches), with peak RSS, on both backends.
 *
 *   npx tsx bench/staging.ts [--records 100000] [--backend server|embedded|both]
 *
 * The server backend uses a fresh database on MHQ_TEST_DATABASE_URL (default: local trust server).
 */
import { Staging, type SyncRecord } from "@mhq-sync/core"
import { TestDatabase } from "@mhq-sync/testkit"
import { Effect } from "effect"
import { parseArgs } from "node:util"
import { isMain, PeakRss, printTable } from "./util.ts"

const chunk = 5_000 // what a source hands to staging per unit, roughly

// A realistic minimised merge request (~600 bytes of JSON).
const record = (i: number, rev: number): SyncRecord.SyncRecord => ({
  instance: "https://gitlab.example.com",
  kind: "merge_request",
  projectId: 1 + (i % 20),
  projectPath: `group/sub/project-${1 + (i % 20)}`,
  key: String(i),
  updatedAt: new Date(Date.UTC(2026, 10, 1) + i * 1000 + rev).toISOString(),
  data: {
    id: 100000 + i, iid: i, title: `Improve the widget pipeline ${i}`, state: i % 3 === 0 ? "merged" : "opened",
    draft: false, author: `user${i % 97}`, source_branch: `feature/${i}`, target_branch: "main",
    created_at: "2026-10-01T10:00:00.000Z", updated_at: "2026-11-01T10:00:00.000Z", merged_at: null, closed_at: null,
    merge_commit_sha: null, squash_commit_sha: null, sha: "3f786850e387550fdab836ed7e6dc881de23001b",
    reviewers: [`user${(i + 1) % 97}`, `user${(i + 2) % 97}`], merge_user: null,
    web_url: `https://gitlab.example.com/group/sub/project-${1 + (i % 20)}/-/merge_requests/${i}`, rev
  }
})

export interface StagingRow {
  readonly backend: TestDatabase.Backend
  readonly phase: string
  readonly records: number
  readonly seconds: number
  readonly perSecond: number
}

/** Stages `total` records (insert), again unchanged, then packs them, on a fresh database of `backend`. */
export const measure = (backend: TestDatabase.Backend, total: number): Effect.Effect<ReadonlyArray<StagingRow>> =>
  Effect.scoped(Effect.gen(function*() {
    const staging = yield* Staging.Staging
    const run = (rev: number) =>
      Effect.gen(function*() {
        const start = performance.now()
        for (let i = 0; i < total; i += chunk) {
          const records = Array.from({ length: Math.min(chunk, total - i) }, (_, j) => record(i + j, rev))
          yield* staging.stage({ records })
        }
        return performance.now() - start
      })
    const insertMs = yield* run(0)
    const unchangedMs = yield* run(0)
    const packStart = performance.now()
    const packed = yield* staging.pack()
    const packMs = performance.now() - packStart
    return [
      { backend, phase: "stage (insert)", records: total, seconds: insertMs / 1000, perSecond: total / (insertMs / 1000) },
      { backend, phase: "stage (unchanged)", records: total, seconds: unchangedMs / 1000, perSecond: total / (unchangedMs / 1000) },
      { backend, phase: `pack (${packed.batches} batches)`, records: packed.records, seconds: packMs / 1000, perSecond: packed.records / (packMs / 1000) }
    ]
  }).pipe(Effect.provide(TestDatabase.staging(backend)), Effect.orDie))

const main = (total: number, backend: string) => Effect.gen(function*() {
  const backends: ReadonlyArray<TestDatabase.Backend> = backend === "both" ? ["server", "embedded"] : [backend as TestDatabase.Backend]
  const rss = new PeakRss()
  const rows = []
  for (const b of backends) rows.push(...(yield* measure(b, total)))
  rss.stop()
  printTable(`bench/staging: ${total} records (node ${process.version})`, rows.map((r) => ({
    backend: r.backend,
    phase: r.phase,
    records: r.records,
    "seconds": r.seconds.toFixed(2),
    "records/s": Math.round(r.perSecond).toLocaleString("en-US")
  })))
  console.log(`peak RSS of the agent process: ${rss.peakMb().toFixed(0)} MB (embedded postgres runs in its own processes)`)
})

if (isMain("staging")) {
  const { values } = parseArgs({
    options: { records: { type: "string", default: "100000" }, backend: { type: "string", default: "both" } }
  })
  Effect.runPromise(main(Number(values.records), values.backend)).catch((e) => {
    console.error(e)
    process.exit(1)
  })
}
