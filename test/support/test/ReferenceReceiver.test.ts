import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Keys, Sealing, Signature, WireProtocol } from "@mhq-sync/mhq-sink"
import { ReferenceReceiver } from "@mhq-sync/testkit"

const record: WireProtocol.WireRecord = {
  kind: "note",
  instance: "https://gitlab.example.test",
  project_id: 1,
  project_path: "g/p",
  key: "1:2",
  updated_at: "2026-01-01T00:00:00.000Z",
  data: { body: "hello" }
}

const batchBody = async (publicKey: string, id: string, records: ReadonlyArray<WireProtocol.WireRecord> = [record]) => {
  const sealed = await Sealing.seal(records, publicKey)
  return JSON.stringify({
    type: "batch", version: 1, id, client_id: "c", agent_version: "t", instance: record.instance, kind: "note",
    record_count: records.length, created_at: "2026-01-01T00:00:00.000Z",
    encryption: WireProtocol.encryption, compression: WireProtocol.compression, ciphertext: sealed.ciphertext
  })
}

const post = async (url: string, body: string, headers: Record<string, string>) => {
  const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json", ...headers } })
  return { status: res.status, text: await res.text(), retryAfter: res.headers.get("retry-after") }
}

const id1 = "01900000-0000-7000-8000-000000000001"

describe("ReferenceReceiver", () => {
  it.live("verifies, opens, de-duplicates and answers scripted statuses", () =>
    Effect.gen(function*() {
      const rx = yield* ReferenceReceiver.make()
      yield* Effect.promise(async () => {
        const body = await batchBody(rx.publicKey, id1)
        const headers = { ...Signature.sign({ secret: rx.secret, id: id1, body }) }
        assert.strictEqual((await post(rx.url, body, headers)).status, 200)
        assert.deepStrictEqual(rx.batches.map((b) => b.id), [id1])
        assert.deepStrictEqual(rx.records, [record])
        // same id again: 409, counted once
        assert.strictEqual((await post(rx.url, body, headers)).status, 409)
        assert.strictEqual(rx.duplicates, 1)
        // replay of the same id: accepted, still one batch
        assert.strictEqual((await post(rx.url, body, { ...headers, "mhq-replay": "1" })).status, 200)
        assert.strictEqual(rx.batches.length, 1)
        assert.strictEqual(rx.batches[0]!.deliveries, 2)
        assert.strictEqual(rx.records.length, 1)
        assert.strictEqual(rx.requests.at(-1)!.replay, true)

        // bad signature, old timestamp, flipped ciphertext (re-signed) -> 401, 401, 400
        const id2 = "01900000-0000-7000-8000-000000000002"
        const body2 = await batchBody(rx.publicKey, id2)
        const bad = { ...Signature.sign({ secret: "wrong", id: id2, body: body2 }) }
        assert.strictEqual((await post(rx.url, body2, bad)).status, 401)
        const old = { ...Signature.sign({ secret: rx.secret, id: id2, body: body2, timestamp: Math.floor(Date.now() / 1000) - 301 }) }
        assert.strictEqual((await post(rx.url, body2, old)).status, 401)
        const parsed = JSON.parse(body2) as { ciphertext: string }
        const bytes = Buffer.from(parsed.ciphertext, "base64")
        bytes[bytes.length - 5] = bytes[bytes.length - 5]! ^ 1
        const tampered = JSON.stringify({ ...parsed, ciphertext: bytes.toString("base64") })
        const r = await post(rx.url, tampered, { ...Signature.sign({ secret: rx.secret, id: id2, body: tampered }) })
        assert.strictEqual(r.status, 400)
        const otherKey = await batchBody(Keys.generateKeyPair().publicKey, id2)
        assert.strictEqual((await post(rx.url, otherKey, { ...Signature.sign({ secret: rx.secret, id: id2, body: otherKey }) })).status, 400)
        assert.strictEqual(rx.batches.length, 1)

        rx.scriptReply({ status: 429, retryAfter: 7 })
        const limited = await post(rx.url, body2, { ...Signature.sign({ secret: rx.secret, id: id2, body: body2 }) })
        assert.strictEqual(limited.status, 429)
        assert.strictEqual(limited.retryAfter, "7")
        rx.scriptReply({ status: 503 }, { times: 2 })
        assert.strictEqual((await post(rx.url, body2, { ...Signature.sign({ secret: rx.secret, id: id2, body: body2 }) })).status, 503)
        assert.strictEqual((await post(rx.url, body2, { ...Signature.sign({ secret: rx.secret, id: id2, body: body2 }) })).status, 503)
        rx.setMaxBodyBytes(10)
        assert.strictEqual((await post(rx.url, body2, { ...Signature.sign({ secret: rx.secret, id: id2, body: body2 }) })).status, 413)
        rx.setMaxBodyBytes(undefined)
        assert.strictEqual((await post(rx.url, body2, { ...Signature.sign({ secret: rx.secret, id: id2, body: body2 }) })).status, 200)
        assert.strictEqual(rx.batches.length, 2)
      })
    }))

  it.live("hangs and drops on request, and hands out queued commands with heartbeats", () =>
    Effect.gen(function*() {
      const rx = yield* ReferenceReceiver.make()
      yield* Effect.promise(async () => {
        rx.scriptReply("hang")
        const hung = await fetch(rx.url, { method: "POST", body: "{}", signal: AbortSignal.timeout(200) }).then(() => "answered", () => "timeout")
        assert.strictEqual(hung, "timeout")
        rx.scriptReply("drop")
        const dropped = await fetch(rx.url, { method: "POST", body: "{}" }).then(() => "answered", () => "network error")
        assert.strictEqual(dropped, "network error")

        rx.queueCommands([{ id: "cmd-1", command: "reset_cursor", parameters: { project_id: 1 } }], { times: 2 })
        const beat = async () => {
          const id = `0190000${Math.floor(Math.random() * 9)}-0000-7000-8000-00000000000${Math.floor(Math.random() * 9)}`
          const details = await Sealing.sealJson({ uptime_seconds: 1 }, rx.publicKey)
          const body = JSON.stringify({ type: "heartbeat", version: 1, id, client_id: "c", agent_version: "t", status: "ok", sent_at: new Date().toISOString(), details })
          return JSON.parse((await post(rx.url, body, { ...Signature.sign({ secret: rx.secret, id, body }) })).text) as { commands?: Array<{ id: string }> }
        }
        assert.deepStrictEqual((await beat()).commands?.map((c) => c.id), ["cmd-1"])
        assert.deepStrictEqual((await beat()).commands?.map((c) => c.id), ["cmd-1"])
        assert.strictEqual((await beat()).commands, undefined)
        assert.strictEqual(rx.heartbeats.length, 3)
        assert.deepStrictEqual(rx.heartbeats[0]!.details, { uptime_seconds: 1 } as never)
      })
    }))
})
