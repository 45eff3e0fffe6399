import { assert, describe, it } from "@effect/vitest"
import { SimGitlab } from "@mhq-sync/testkit"
import { Effect } from "effect"
import { DiffStat, GitlabClient } from "../src/index.ts"
import { configOf, fast } from "./helpers.ts"

describe("DiffStat", () => {
  it("counts added and deleted lines from hunks, files changed, withheld diffs", () => {
    const stat = DiffStat.count([
      { diff: "@@ -1,3 +1,4 @@\n context\n-old\n+new\n+newer\n\\ No newline at end of file\n" },
      { diff: "@@ -0,0 +1,2 @@\n+a\n+b\n", new_path: "x" },
      { diff: "", too_large: true },
      { diff: "" }
    ])
    assert.deepStrictEqual(stat, { additions: 4, deletions: 1, files_changed: 4, files_without_diff: 1 })
  })

  it("add folds batches into the same totals as counting them at once", () => {
    const acc = DiffStat.emptyCounter()
    DiffStat.add(acc, [{ diff: "@@ -1 +1 @@\n-a\n+b\n" }])
    DiffStat.add(acc, [{ diff: "", collapsed: true }, { diff: "@@ -0,0 +1 @@\n+c\n" }])
    assert.deepStrictEqual({ ...acc }, DiffStat.count([{ diff: "@@ -1 +1 @@\n-a\n+b\n" }, { diff: "", collapsed: true }, { diff: "@@ -0,0 +1 @@\n+c\n" }]))
  })

  it.live("fetchStat folds every diff page into the counts (several pages)", () =>
    Effect.gen(function*() {
      const pid = SimGitlab.projectIdOf(0)
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 10, bigNotesMr: false })
      const iid = [...Array(10).keys()].map((i) => i + 1).reduce((a, b) => (sim.diffs(pid, b).length > sim.diffs(pid, a).length ? b : a))
      const diffs = sim.diffs(pid, iid)
      assert.isAtLeast(diffs.length, 3)
      const client = yield* GitlabClient.make(configOf(sim), { ...fast, perPage: 1 })
      const scope = { instance: client.instance, projectId: pid, projectPath: sim.projects()[0]!.pathWithNamespace }
      const result = yield* DiffStat.fetchStat(client, scope, iid)
      assert.strictEqual(sim.stats().total, diffs.length) // one page per file
      const want = diffs.map((d) => SimGitlab.diffLineCounts(d.diff)).reduce((a, b) => ({
        additions: a.additions + b.additions,
        deletions: a.deletions + b.deletions
      }), { additions: 0, deletions: 0 })
      assert.deepStrictEqual(result.items, [{ ...want, files_changed: diffs.length, files_without_diff: 0 }])
      assert.deepStrictEqual(result.quarantine, [])
    }))
})
