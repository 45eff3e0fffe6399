import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Redacted } from "effect"
import { InstanceConfig } from "../src/index.ts"

describe("InstanceConfig", () => {
  it.effect("applies defaults and normalises the URL (port, relative root, trailing slash)", () =>
    Effect.gen(function*() {
      const c = yield* InstanceConfig.decode({ url: "https://GitLab.Example.com:8443/gitlab/", token: "glpat-secret" })
      assert.strictEqual(c.url, "https://gitlab.example.com:8443/gitlab")
      assert.strictEqual(c.authKind, "private-token")
      assert.strictEqual(c.concurrency, 4)
      assert.strictEqual(c.requestsPerMinute, 300)
      assert.strictEqual(c.backfillDays, 31)
      assert.strictEqual(Duration.toMillis(c.cursorOverlap), 10 * 60_000)
      assert.deepStrictEqual(c.privacy, { emails: "keep", names: "keep" })
      assert.strictEqual(c.includeArchived, false)
      assert.strictEqual(c.insecureSkipVerify, false)
      assert.strictEqual(Redacted.value(c.token), "glpat-secret")
      assert.notInclude(String(c.token), "glpat-secret")
      assert.notInclude(JSON.stringify(c), "glpat-secret")
    }))

  it.effect("accepts http, durations as text or millis, privacy modes", () =>
    Effect.gen(function*() {
      const c = yield* InstanceConfig.decode({
        url: "http://127.0.0.1:8080",
        token: "t",
        authKind: "oauth",
        cursorOverlap: "5 minutes",
        requestTimeout: 1500,
        privacy: { emails: "hash", names: "drop" },
        projects: ["https://127.0.0.1:8080/a/b", 42]
      })
      assert.strictEqual(c.url, "http://127.0.0.1:8080")
      assert.strictEqual(Duration.toMillis(c.cursorOverlap), 300_000)
      assert.strictEqual(Duration.toMillis(c.requestTimeout), 1500)
      assert.deepStrictEqual(c.privacy, { emails: "hash", names: "drop" })
    }))

  it.effect("errors name the offending field", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(InstanceConfig.decode({ url: "ftp://host", token: "t" }, { fieldPrefix: "gitlab[0]" }))
      assert.strictEqual(e._tag, "InvalidInstanceConfig")
      assert.strictEqual(e.field, "gitlab[0].url")
      assert.include(e.message, "http:// or https://")
      const e2 = yield* Effect.flip(InstanceConfig.decode({ url: "https://h", token: "t", concurrency: 0 }))
      assert.strictEqual(e2.field, "concurrency")
      const e3 = yield* Effect.flip(InstanceConfig.decode({ url: "https://h", token: "t", privacy: { emails: "sometimes" } }))
      assert.strictEqual(e3.field, "privacy.emails")
      const e4 = yield* Effect.flip(InstanceConfig.decode({ url: "https://h" }))
      assert.strictEqual(e4.field, "token")
      const e5 = yield* Effect.flip(InstanceConfig.decode({ url: "https://h", token: "t", caFile: "/x.pem", insecureSkipVerify: true }))
      assert.strictEqual(e5.field, "insecureSkipVerify")
    }))
})
