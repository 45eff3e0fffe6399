import { assert, describe, it } from "@effect/vitest"
import type { ReferenceReceiver } from "@mhq-sync/testkit"
import { Effect } from "effect"
import * as SinkConfig from "../src/SinkConfig.ts"
import { sinkOptions } from "./fixtures.ts"

describe("SinkConfig", () => {
  const rx = { url: "http://127.0.0.1:1/x", secret: "s", publicKey: Buffer.alloc(32, 1).toString("base64") } as ReferenceReceiver.Handle
  const error = (overrides: Partial<SinkConfig.Options>) =>
    Effect.runSync(Effect.flip(SinkConfig.make(sinkOptions(rx, overrides))))

  it("requires https except for loopback hosts", () => {
    for (const url of ["https://mhq.example.com/hook", "http://127.0.0.1:8080/h", "http://127.9.9.9/h", "http://[::1]:9/h", "http://localhost/h"]) {
      assert.strictEqual(Effect.runSync(SinkConfig.make(sinkOptions(rx, { webhookUrl: url }))).webhookUrl.toString(), new URL(url).toString())
    }
    const e = error({ webhookUrl: "http://mhq.example.com/hook" })
    assert.strictEqual(e.setting, "MHQ_WEBHOOK_URL")
    assert.include(e.message, "https")
    assert.include(error({ webhookUrl: "http://10.0.0.1/hook" }).message, "loopback")
    assert.include(error({ webhookUrl: "ftp://x/y" }).message, "https")
    assert.include(error({ webhookUrl: "https://u:p@mhq.example.com/" }).message, "credentials")
    assert.include(error({ webhookUrl: "not a url" }).message, "not a valid URL")
  })

  it("names the bad key and keeps the secret out of the effective config", () => {
    const e = error({ publicKey: "abc" })
    assert.strictEqual(e.setting, "MHQ_PUBLIC_KEY")
    assert.include(e.message, "32 bytes")
    const s = Effect.runSync(SinkConfig.make(sinkOptions(rx, { clientSecret: "top-secret-value" })))
    assert.notInclude(JSON.stringify(SinkConfig.effective(s)), "top-secret-value")
    assert.notInclude(String(s.clientSecret), "top-secret-value")
  })
})
