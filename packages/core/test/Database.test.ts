import { assert, describe, it } from "@effect/vitest"
import { Database } from "@mhq-sync/core"
import { TestDatabase } from "@mhq-sync/testkit"
import { Effect, Layer, Redacted } from "effect"

describe("Database", () => {
  const connectError = (url: string) =>
    Effect.flip(Effect.scoped(Layer.build(Database.layer({ url: Redacted.make(url), dataDir: "", connectTimeout: "5 seconds" }))))

  it.live("an unreachable server: one line naming host and database, never the password", () =>
    Effect.gen(function*() {
      const error = yield* connectError("postgres://mhq:s3cr3t-pw@127.0.0.1:1/staging")
      assert.strictEqual(error._tag, "DatabaseError")
      assert.match(error.message, /^cannot connect to PostgreSQL at 127\.0\.0\.1:1, database "staging" \(DATABASE_URL\): /)
      assert.notInclude(error.message, "s3cr3t-pw")
      assert.notInclude(error.message, "\n")
    }), 30_000)

  it.live("a misspelt database on a reachable server names it", () =>
    Effect.gen(function*() {
      const url = new URL(TestDatabase.serverUrl)
      url.pathname = "/no_such_database_mhq"
      url.password = "pw-should-not-leak"
      const error = yield* connectError(url.toString())
      assert.include(error.message, `database "no_such_database_mhq"`)
      assert.notInclude(error.message, "pw-should-not-leak")
    }), 30_000)

  it.live("a URL that is not a PostgreSQL URL", () =>
    Effect.gen(function*() {
      const error = yield* connectError("mysql://root@localhost/db")
      assert.match(error.message, /DATABASE_URL is not a valid PostgreSQL URL \(scheme must be postgres:\/\/ or postgresql:\/\//)
    }))
})
