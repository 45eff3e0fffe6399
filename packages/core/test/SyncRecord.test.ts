import { assert, describe, it } from "@effect/vitest"
import { Backoff, Pipeline, SyncRecord, Uuid } from "@mhq-sync/core"
import { Duration } from "effect"

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

describe("Pipeline", () => {
  it("transforms compose and drop", () => {
    const dropSystem: Pipeline.Transform = (r) => ((r.data as { system?: boolean }).system ? undefined : r)
    const stripBody: Pipeline.Transform = (r) => ({ ...r, data: { ...(r.data as object), body: null } })
    const t = Pipeline.compose(dropSystem, stripBody)
    assert.isUndefined(t({ ...base, data: { system: true, body: "x" } }))
    assert.deepStrictEqual(t({ ...base, data: { system: false, body: "x" } })?.data, { system: false, body: null })
  })
})

describe("Backoff and Uuid", () => {
  it("backoff grows exponentially, is jittered within [d/2, d] and capped", () => {
    const opts = { base: "100 millis", cap: "1 second" } as const
    assert.strictEqual(Duration.toMillis(Backoff.delay(0, opts, 0.999999)), 100)
    assert.strictEqual(Duration.toMillis(Backoff.delay(3, opts, 0)), 400)
    assert.strictEqual(Duration.toMillis(Backoff.delay(10, opts, 0.999999)), 1000)
  })

  it("UUIDv7 ids are valid, unique and time-ordered", () => {
    const ids = Array.from({ length: 2000 }, () => Uuid.v7())
    assert.isTrue(ids.every((id) => /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id)))
    assert.strictEqual(new Set(ids).size, ids.length)
    assert.deepStrictEqual([...ids].sort(), ids)
  })
})
