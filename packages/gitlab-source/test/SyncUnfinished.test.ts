/**
 * Unfinished pipelines/deployments that are not listed again are re-polled one GET each: only
 * those created within the backfill window, newest first, a bounded number per run, in chunks.
 */
import { assert, layer } from "@effect/vitest"
import { Staging, type SyncRecord } from "@mhq-sync/core"
import { SimGitlab, TestDatabase } from "@mhq-sync/testkit"
import { Effect } from "effect"
import { Sync } from "../src/index.ts"
import { captureLogs, configOf, fast } from "./helpers.ts"

const pid = SimGitlab.projectIdOf(0)
const detailRoute = "GET /projects/:id/pipelines/:pipeline_id"

layer(TestDatabase.staging("server"), { timeout: "120 seconds", excludeTestServices: true })("Sync: unfinished pipelines", (it) => {
  it.effect("only items created within the backfill window are re-polled, at most maxPerRun per run, chunkSize per unit", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1, bigNotesMr: false, pipelinesPerProject: 0, deploymentsPerProject: 0 })
      const realNow = Date.now()
      sim.setNow(realNow - 40 * SimGitlab.day)
      const old = sim.addPipelines(pid, 3, "created") // stuck for 40 days
      sim.setNow(realNow - 2 * 3_600_000)
      const recent = sim.addPipelines(pid, 7, "created")
      const staging = yield* Staging.Staging
      const pipelines = (config: { readonly url: string }) => staging.records({ instance: config.url, kind: "pipeline", projectId: pid })

      // first run backfills 60 days: all 10 staged as "created"
      const wide = configOf(sim, { projects: [pid], backfillDays: 60 })
      yield* Sync.run(wide, { client: fast })
      assert.deepStrictEqual((yield* pipelines(wide)).map((r) => (r.data as { status: string }).status), Array(10).fill("created"))

      // all of them finish 2 h ago: older than the next run's cursor, so only polling can see it
      sim.finishRunning()
      sim.resetStats()
      const config = configOf(sim, { projects: [pid], backfillDays: 31 })
      const units: Array<ReadonlyArray<SyncRecord.SyncRecord>> = []
      const spy = Staging.Staging.of({
        ...staging,
        stage: (u) => {
          if (u.records.some((r) => r.kind === "pipeline")) units.push(u.records)
          return staging.stage(u)
        }
      })
      const logs = captureLogs()
      const report = yield* Sync.run(config, { client: fast, repoll: { chunkSize: 3, maxPerRun: 5 } }).pipe(
        Effect.provideService(Staging.Staging, spy),
        Effect.provide(logs.layer)
      )
      assert.strictEqual(report.status, "ok")
      const polled = sim.stats().log.filter((e) => e.route === detailRoute).map((e) => Number(e.path.split("?")[0]!.split("/").pop()))
      assert.strictEqual(polled.length, 5, "bounded per run")
      for (const p of old) assert.notInclude(polled, p.id, "created before the backfill window: not polled")
      // One unit per chunk; units arriving within the staging window may share a transaction whole.
      assert.oneOf(JSON.stringify(units.map((u) => u.length)), ["[3,2]", "[5]"], "whole chunks per transaction")
      assert.strictEqual(report.projects[0]!.counts["pipeline"], 5)
      assert.isTrue(logs.lines.some((l) => l.includes("3 unfinished pipeline(s) created before the backfill window")), logs.lines.join("\n"))
      assert.isTrue(logs.lines.some((l) => l.includes("7 unfinished pipeline(s) to poll; polling the 5 newest")))

      // the next run polls the rest of the recent ones; the old ones stay as last seen
      sim.resetStats()
      yield* Sync.run(config, { client: fast, repoll: { chunkSize: 3, maxPerRun: 5 } })
      assert.strictEqual(sim.stats().byRoute[detailRoute] ?? 0, 2)
      const byId = new Map((yield* pipelines(config)).map((r) => [Number(r.key), (r.data as { status: string }).status]))
      for (const p of recent) assert.strictEqual(byId.get(p.id), "success")
      for (const p of old) assert.strictEqual(byId.get(p.id), "created")

      // nothing left to poll in the window: no GETs at all
      sim.resetStats()
      yield* Sync.run(config, { client: fast })
      assert.strictEqual(sim.stats().byRoute[detailRoute] ?? 0, 0)
    }))
})
