import { assert, describe, it } from "@effect/vitest"
import { DiffStat } from "../src/index.ts"

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
})
