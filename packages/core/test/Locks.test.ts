import { assert, describe, it } from "@effect/vitest"
import { Database, Locks } from "@mhq-sync/core"
import { TestDatabase } from "@mhq-sync/testkit"
import { Context, Deferred, Effect, Fiber, Layer, Option, Redacted } from "effect"
import { SqlClient } from "effect/sql"

describe("Locks", () => {
  it.live("a named lock is held by one pool at a time and released afterwards", () =>
    Effect.scoped(Effect.gen(function*() {
      const { url } = yield* TestDatabase.freshServerDatabase
      const pool = () => Layer.build(Database.layer({ url: Redacted.make(url), dataDir: "" }))
      const a = Context.get(yield* pool(), SqlClient.SqlClient)
      const b = Context.get(yield* pool(), SqlClient.SqlClient)
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holder = yield* Locks.withLock("cycle")(Effect.gen(function*() {
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(release)
        return "a done"
      })).pipe(Effect.provideService(SqlClient.SqlClient, a), Effect.forkChild)
      yield* Deferred.await(holding)

      const refused = yield* Effect.flip(Locks.withLock("cycle")(Effect.succeed("b")).pipe(Effect.provideService(SqlClient.SqlClient, b)))
      assert.strictEqual(refused._tag, "LockTimeout")
      // Another lock name is independent.
      assert.strictEqual(yield* Locks.withLock("other")(Effect.succeed("ok")).pipe(Effect.provideService(SqlClient.SqlClient, b)), "ok")

      // A waiter gets the lock once the holder finishes.
      const waiter = yield* Locks.withLock("cycle", { wait: Option.some("10 seconds"), poll: "50 millis" })(Effect.succeed("b done")).pipe(
        Effect.provideService(SqlClient.SqlClient, b), Effect.forkChild)
      yield* Effect.sleep("200 millis")
      yield* Deferred.succeed(release, undefined)
      assert.strictEqual(yield* Fiber.join(holder), "a done")
      assert.strictEqual(yield* Fiber.join(waiter), "b done")
    })), 60_000)
})
