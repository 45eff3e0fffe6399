import { assert, describe, it } from "@effect/vitest"
import { Pipeline, Staging, type SyncRecord } from "@mhq-sync/core"
import { Effect, Stream } from "effect"

const base: SyncRecord.SyncRecord = {
  instance: "https://gl", kind: "note", projectId: 1, projectPath: "g/p", key: "1:2",
  updatedAt: "2026-11-01T00:00:00.000Z", data: { a: 1, b: { c: [1, 2], d: null } }
}

describe("Pipeline", () => {
  it("transforms compose and drop", () => {
    const dropSystem: Pipeline.Transform = (r) => ((r.data as { system?: boolean }).system ? undefined : r)
    const stripBody: Pipeline.Transform = (r) => ({ ...r, data: { ...(r.data as object), body: null } })
    const t = Pipeline.compose(dropSystem, stripBody)
    assert.isUndefined(t({ ...base, data: { system: true, body: "x" } }))
    assert.deepStrictEqual(t({ ...base, data: { system: false, body: "x" } })?.data, { system: false, body: null })
  })
})

describe("Pipeline.stage", () => {
  it.effect("units arriving together share a transaction, each unit whole and in order", () =>
    Effect.gen(function*() {
      const calls: Array<Staging.StageInput> = []
      const fake = Staging.Staging.of({
        stage: (input: Staging.StageInput) => {
          calls.push(input)
          return Effect.succeed({ inserted: input.records.length, updated: 0, unchanged: 0, quarantined: input.quarantine?.length ?? 0 })
        }
      } as unknown as Staging.Service)
      const unit = (i: number): Pipeline.Unit => ({
        records: [{ ...base, key: `${i}:a` }, { ...base, key: `${i}:b` }],
        cursors: i === 99 ? [{ instance: "https://gl", projectId: 1, kind: "note", value: "c" }] : []
      })
      const totals = yield* Pipeline.stage(Stream.fromIterable(Array.from({ length: 100 }, (_, i) => unit(i)))).pipe(
        Effect.provideService(Staging.Staging, fake)
      )
      assert.strictEqual(totals.units, 100)
      assert.strictEqual(totals.inserted, 200)
      assert.isBelow(calls.length, 100)
      const keys = calls.flatMap((c) => c.records.map((r) => r.key))
      assert.deepStrictEqual(keys, Array.from({ length: 100 }, (_, i) => [`${i}:a`, `${i}:b`]).flat())
      for (const c of calls) assert.strictEqual(c.records.length % 2, 0) // no unit split across transactions
      assert.deepStrictEqual(calls.at(-1)!.cursors, [{ instance: "https://gl", projectId: 1, kind: "note", value: "c" }])
    }))
})
