/** Run-log rows never stay `running`: an interrupted project sync is recorded as failed, "interrupted". */
import { assert, layer } from "@effect/vitest"
import { Staging } from "@mhq-sync/core"
import { SimGitlab, TestDatabase } from "@mhq-sync/testkit"
import { Effect, Fiber } from "effect"
import { Sync } from "../src/index.ts"
import { configOf, fast } from "./helpers.ts"

const p0 = SimGitlab.projectIdOf(0)
const p1 = SimGitlab.projectIdOf(1)

const runsOf = (instance: string) => Effect.flatMap(Staging.Staging, (s) => s.runs({ instance }))

const waitUntil = (cond: () => boolean) =>
  Effect.suspend(function loop(): Effect.Effect<void> {
    return cond() ? Effect.void : Effect.sleep("5 millis").pipe(Effect.andThen(Effect.suspend(loop)))
  }).pipe(Effect.timeout("20 seconds"), Effect.orDie)

layer(TestDatabase.staging("server"), { timeout: "120 seconds", excludeTestServices: true })("Sync: interruption", (it) => {
  it.effect("the sync fiber interrupted mid-run (e.g. SIGTERM): every run-log row ends failed with \"interrupted\"", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 2, mrsPerProject: 30, bigNotesMr: false, faults: { latencyMs: 20 } })
      const config = configOf(sim, { projects: [p0, p1], concurrency: 2 })
      const fiber = yield* Effect.forkChild(Sync.run(config, { client: fast }))
      // both projects are past resolution and busy with their MRs
      const busy = (pid: number) => sim.stats().log.some((e) => e.route.endsWith("/notes") && e.path.startsWith(`/projects/${pid}/`))
      yield* waitUntil(() => busy(p0) && busy(p1))
      assert.strictEqual((yield* runsOf(config.url)).length, 2)
      yield* Fiber.interrupt(fiber)
      const runs = yield* runsOf(config.url)
      assert.strictEqual(runs.length, 2)
      for (const r of runs) {
        assert.strictEqual(r.status, "failed")
        assert.include(r.errors ?? [], "interrupted")
      }
    }))

  it.effect("a sibling project's 401 stops the instance: the project interrupted mid-request is recorded as failed too", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 2, mrsPerProject: 30, bigNotesMr: false, faults: { latencyMs: 10 } })
      // p1's MR list never answers; the moment it is asked for, the token is revoked, so p0's next
      // request gets a 401 and the instance stops while p1 is waiting for its list
      sim.setFaults({
        hang: (path, route) => {
          if (route === "GET /projects/:id/merge_requests" && path.startsWith(`/projects/${p1}/`)) {
            sim.revokeToken()
            return true
          }
          return false
        }
      })
      const config = configOf(sim, { projects: [p0, p1], requestTimeout: 30_000 })
      const report = yield* Sync.run(config, { client: fast, projectConcurrency: 2 })
      assert.strictEqual(report.status, "failed")
      assert.isTrue(report.errors.some((e) => e.includes("token invalid, expired or revoked")))
      const runs = yield* runsOf(config.url)
      assert.strictEqual(runs.length, 2)
      assert.isTrue(runs.every((r) => r.status === "failed"), JSON.stringify(runs.map((r) => r.status)))
      const interrupted = runs.find((r) => r.projectId === p1)!
      assert.include(interrupted.errors ?? [], "interrupted")
      assert.strictEqual(report.projects.find((p) => p.projectId === p1)!.status, "failed")
    }))
})
