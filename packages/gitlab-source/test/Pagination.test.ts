/**
 * Lists ordered by `updated_at` are walked by time window: items updated during the walk move to
 * the end of the list, and with plain `page=N` the item at the next page boundary would be lost.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Staging } from "@mhq-sync/core"
import { SimGitlab, TestDatabase } from "@mhq-sync/testkit"
import { Effect, Stream } from "effect"
import { GitlabClient, Sync } from "../src/index.ts"
import { configOf, fast, routeCount } from "./helpers.ts"

const pid = SimGitlab.projectIdOf(0)
const mrList = "GET /projects/:id/merge_requests"

/** MRs of the sim's project, oldest change first (the list order). */
const byUpdated = (sim: SimGitlab.Handle) =>
  [...sim.mergeRequests(pid)].sort((a, b) => Date.parse(a.updated_at) - Date.parse(b.updated_at) || a.id - b.id)

/**
 * Runs `f` when the `n`-th MR list request arrives, before the sim computes its answer. The sim
 * has no request hook; its `hang` matcher is called on arrival, so it is used as one (never hangs).
 */
const onListRequest = (sim: SimGitlab.Handle, n: number, f: () => void) => {
  let seen = 0
  sim.setFaults({
    hang: (_path, route) => {
      if (route === mrList && ++seen === n) f()
      return false
    }
  })
}

const ids = (pages: ReadonlyArray<GitlabClient.Page>) => pages.flatMap((p) => p.items.map((x) => (x as { id: number }).id))

describe("GitlabClient.paginate by updated_at window", () => {
  it.live("an item updated mid-walk does not push its successor past a page boundary unseen", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 60, bigNotesMr: false })
      const client = yield* GitlabClient.make(configOf(sim), { ...fast, perPage: 10 })
      const oldest = byUpdated(sim)[0]!
      sim.advanceNow(60_000)
      // after page 1 (10 items) was read, the oldest MR moves to the end of the list
      onListRequest(sim, 2, () => sim.touchMergeRequest(pid, oldest.iid))
      const pages = yield* Stream.runCollect(client.paginate(`/projects/${pid}/merge_requests`, {
        state: "all", order_by: "updated_at", sort: "asc", updated_after: new Date(sim.now() - 60 * SimGitlab.day).toISOString()
      }))
      const got = ids(pages)
      assert.strictEqual(new Set(got).size, got.length, "each item emitted once")
      assert.deepStrictEqual([...got].sort((a, b) => a - b), sim.mergeRequests(pid).map((m) => m.id).sort((a, b) => a - b))
      // the follow-up requests moved the window rather than the offset
      const log = sim.stats().log.filter((e) => e.route === mrList)
      assert.isTrue(log.slice(1).every((e) => e.path.includes("page=1") && e.path.includes("updated_after=")))
    }))

  it.live("more than a page of items within one second: falls back to offset pages of the same window", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 40, bigNotesMr: false })
      sim.advanceNow(60_000)
      for (let iid = 1; iid <= 25; iid++) sim.touchMergeRequest(pid, iid) // 25 MRs with the same updated_at
      const client = yield* GitlabClient.make(configOf(sim), { ...fast, perPage: 10 })
      const pages = yield* Stream.runCollect(client.paginate(`/projects/${pid}/merge_requests`, {
        state: "all", order_by: "updated_at", sort: "asc", updated_after: new Date(sim.now() - 60 * SimGitlab.day).toISOString()
      }))
      const got = ids(pages)
      assert.strictEqual(new Set(got).size, got.length)
      assert.strictEqual(got.length, 40)
      const log = sim.stats().log.filter((e) => e.route === mrList)
      assert.isTrue(log.some((e) => /[?&]page=[23]\b/.test(e.path)), "offset pages inside the dense window")
      assert.isBelow(log.length, 12) // 4 pages of items, plus window overlap; never a loop
    }))

  it.live("a short page ends the walk: one request for a list that fits one page", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 7, bigNotesMr: false })
      const client = yield* GitlabClient.make(configOf(sim), { ...fast, perPage: 10 })
      const pages = yield* Stream.runCollect(client.paginate(`/projects/${pid}/merge_requests`, { order_by: "updated_at", sort: "asc" }))
      assert.strictEqual(ids(pages).length, 7)
      assert.strictEqual(sim.stats().total, 1)
    }))
})

layer(TestDatabase.staging("server"), { timeout: "120 seconds", excludeTestServices: true })("Sync with updates during the walk", (it) => {
  it.effect("the oldest MR touched after the first list page: all 250 MRs staged in the same run", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({
        projects: 1, mrsPerProject: 250, bigNotesMr: false, pipelinesPerProject: 0, deploymentsPerProject: 0
      })
      const config = configOf(sim, { projects: [pid] })
      const oldest = byUpdated(sim)[0]!
      sim.advanceNow(60_000)
      onListRequest(sim, 2, () => sim.touchMergeRequest(pid, oldest.iid, { note: "moved to the end" }))
      const report = yield* Sync.run(config, { client: fast })
      assert.strictEqual(report.status, "ok")
      assert.isAtLeast(routeCount(sim, "/projects/:id/merge_requests"), 3)
      const staging = yield* Staging.Staging
      const mrs = yield* staging.records({ instance: config.url, kind: "merge_request", projectId: pid })
      assert.strictEqual(mrs.length, 250)
      // each MR's children were fetched once, even though the touched MR was listed twice
      assert.strictEqual(routeCount(sim, "/projects/:id/merge_requests/:iid/notes"), 250)

      // the touched MR's new version comes with the next run (its change is newer than the cursor)
      sim.setFaults({ hang: undefined })
      yield* Sync.run(config, { client: fast })
      const touched = (yield* staging.records({ instance: config.url, kind: "merge_request", projectId: pid })).find((r) => r.key === String(oldest.iid))!
      assert.strictEqual(touched.updatedAt, sim.mergeRequests(pid).find((m) => m.iid === oldest.iid)!.updated_at)
    }))
})
