import { assert, describe, it } from "@effect/vitest"
import { SyncRecord } from "@mhq-sync/core"

const base: SyncRecord.SyncRecord = {
  instance: "https://gl", kind: "note", projectId: 1, projectPath: "g/p", key: "1:2",
  updatedAt: "2026-11-01T00:00:00.000Z", data: { a: 1, b: { c: [1, 2], d: null } }
}

describe("SyncRecord", () => {
  it("hash is stable across key order and changes with any delivered field", () => {
    const h = SyncRecord.hash(base)
    assert.match(h, /^[0-9a-f]{64}$/)
    assert.strictEqual(SyncRecord.hash({ ...base, data: { b: { d: null, c: [1, 2] }, a: 1 } }), h)
    for (const changed of [
      { ...base, key: "1:3" }, { ...base, projectPath: "g/q" }, { ...base, updatedAt: "2026-11-01T00:00:01.000Z" },
      { ...base, data: { a: 2, b: { c: [1, 2], d: null } } }, { ...base, data: { a: 1, b: { c: [2, 1], d: null } } }
    ]) assert.notStrictEqual(SyncRecord.hash(changed), h)
  })

  it("data JSON cannot represent is refused with the field named", () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    for (const [data, message] of [
      [{ n: 1n }, /bigint at data\.n is not JSON/],
      [{ x: [Number.NaN] }, /non-finite number at data\.x\[0\]/],
      [cyclic, /circular reference at data\.self/],
      [{ d: new Date() }, /non-plain object at data\.d/]
    ] as const) {
      assert.throws(() => SyncRecord.hash({ ...base, data: data as never }), message)
    }
  })
})
