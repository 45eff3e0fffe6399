import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Queue, Ref, Schedule } from "effect"
import { TestClock } from "effect/testing"
import * as Agent from "../src/Agent.ts"

describe("Agent.schedule", () => {
  it.effect("18 simulated hours: 4 fetch cycles (start + 3), sends after each, a heartbeat every 5 minutes", () =>
    Effect.gen(function*() {
      const events = yield* Ref.make<Array<string>>([])
      const beats = yield* Ref.make(0)
      const planned = yield* Ref.make<{ fetchAt?: Date; sendAt?: Date }>({})
      const at = (label: string) =>
        Effect.clockWith((clock) => Ref.update(events, (xs) => [...xs, `${label}@${clock.currentTimeMillisUnsafe() / 3_600_000}h`]))
      // The heartbeat fiber runs beside the cycles exactly like the sink's layer does.
      const heartbeat = yield* Ref.update(beats, (n) => n + 1).pipe(Effect.repeat(Schedule.spaced("5 minutes")), Effect.forkChild)
      const fiber = yield* Agent.schedule(at("fetch"), at("send"), { fetchInterval: "6 hours", sendInterval: "6 hours" }, (next) =>
        Ref.update(planned, (p) => ({ ...p, ...next }))).pipe(Effect.forkChild)
      yield* Effect.yieldNow
      yield* TestClock.adjust("18 hours")
      const log = yield* Ref.get(events)
      assert.deepStrictEqual(log.filter((e) => e.startsWith("fetch")), ["fetch@0h", "fetch@6h", "fetch@12h", "fetch@18h"])
      assert.deepStrictEqual(log.slice(0, 2), ["fetch@0h", "send@0h"]) // a fetch then a send at start
      assert.deepStrictEqual(log.filter((e) => e.startsWith("send")), ["send@0h", "send@6h", "send@12h", "send@18h"])
      assert.strictEqual(yield* Ref.get(beats), 18 * 12 + 1)
      const next = yield* Ref.get(planned)
      assert.strictEqual(next.fetchAt?.getTime(), 24 * 3_600_000)
      yield* Fiber.interrupt(fiber)
      yield* Fiber.interrupt(heartbeat)
    }))

  it.effect("a failing cycle is logged and the schedule goes on", () =>
    Effect.gen(function*() {
      const fetches = yield* Ref.make(0)
      const fetch = Ref.updateAndGet(fetches, (n) => n + 1).pipe(
        Effect.flatMap((n) => (n === 2 ? Effect.fail("GitLab down") : n === 3 ? Effect.die("bug") : Effect.void))
      )
      const fiber = yield* Agent.schedule(fetch, Effect.void, { fetchInterval: "1 hour", sendInterval: "1 hour" }).pipe(Effect.forkChild)
      yield* Effect.yieldNow
      yield* TestClock.adjust("4 hours")
      assert.strictEqual(yield* Ref.get(fetches), 5)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a trigger (MHQ's resync_project) starts a fetch now; the interval restarts from it", () =>
    Effect.gen(function*() {
      const fetches = yield* Ref.make<Array<number>>([])
      const trigger = yield* Queue.sliding<void>(1)
      const fetch = Effect.clockWith((c) => Ref.update(fetches, (xs) => [...xs, c.currentTimeMillisUnsafe() / 3_600_000]))
      const fiber = yield* Agent.schedule(fetch, Effect.void, { fetchInterval: "6 hours", sendInterval: "6 hours" }, undefined, trigger).pipe(Effect.forkChild)
      yield* Effect.yieldNow
      yield* TestClock.adjust("1 hour")
      yield* Queue.offer(trigger, undefined)
      yield* Queue.offer(trigger, undefined) // collapses with the first
      yield* Effect.yieldNow
      yield* TestClock.adjust("7 hours")
      assert.deepStrictEqual(yield* Ref.get(fetches), [0, 1, 7])
      yield* Fiber.interrupt(fiber)
    }))
})
