import { assert, describe, it, layer } from "@effect/vitest"
import { SimGitlab, TestDatabase } from "@mhq-sync/testkit"
import { Staging } from "@mhq-sync/core"
import { Effect } from "effect"
import { InstanceConfig, Sync } from "../src/index.ts"

layer(TestDatabase.staging("server"), { timeout: "60 seconds", excludeTestServices: true })("smoke", (it) => {
  it.effect("syncs", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 3, mrsPerProject: 5, groups: 1, subgroupsPerGroup: 1 })
      const config = InstanceConfig.make({ url: sim.url, token: sim.token, groups: ["1", ...sim.groups().filter(g => g.parentId === null).map(g => g.fullPath)], requestsPerMinute: 100000 })
      const t0 = Date.now()
      const report = yield* Sync.run(config)
      console.log(JSON.stringify(report, null, 1).slice(0, 4000), Date.now() - t0)
      console.log(sim.stats().byRoute)
      sim.resetStats()
      const report2 = yield* Sync.run(config)
      console.log(JSON.stringify(report2.projects.map(p => [p.staged, p.counts, p.requests])))
      console.log(sim.stats().byRoute)
      const st = yield* Staging.Staging
      console.log(yield* st.summary)
    }))
})
