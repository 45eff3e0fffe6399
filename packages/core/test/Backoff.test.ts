import { assert, describe, it } from "@effect/vitest"
import { Backoff, Uuid } from "@mhq-sync/core"
import { Duration } from "effect"

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
