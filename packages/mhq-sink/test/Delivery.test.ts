import { assert, describe, it } from "@effect/vitest"
import { Staging } from "@mhq-sync/core"
import { ReferenceReceiver } from "@mhq-sync/testkit"
import { Effect, Layer } from "effect"
import * as Delivery from "../src/Delivery.ts"
import * as SinkConfig from "../src/SinkConfig.ts"
import * as WireProtocol from "../src/WireProtocol.ts"
import { captureLogs, deliveryLayer, everyKind, manyRecords, plaintextMarker } from "./fixtures.ts"

/** Runs `body` with a fresh receiver, a fresh database and the delivery service. */
const withSink = <A, E>(
  body: (rx: ReferenceReceiver.Handle) => Effect.Effect<A, E, Delivery.Delivery | Staging.Staging>,
  overrides: Partial<SinkConfig.Options> = {},
  receiverOptions: ReferenceReceiver.Options = {}
) =>
  Effect.gen(function*() {
    const rx = yield* ReferenceReceiver.make(receiverOptions)
    return yield* body(rx).pipe(Effect.provide(deliveryLayer(rx, overrides)))
  })

const stage = (records: Parameters<Staging.Service["stage"]>[0]["records"]) =>
  Effect.flatMap(Staging.Staging, (s) => s.stage({ records }))

describe("Delivery", () => {
  it.live("delivers a record of every kind: envelope, headers and records exactly as staged", () =>
    withSink((rx) =>
      Effect.gen(function*() {
        yield* stage(everyKind)
        const delivery = yield* Delivery.Delivery
        const report = yield* delivery.sendPending()
        assert.strictEqual(report.packed, everyKind.length) // one batch per kind
        assert.strictEqual(report.delivered, everyKind.length)
        assert.strictEqual(report.records, everyKind.length)
        assert.strictEqual(report.retried + report.failed + report.split, 0)
        assert.isAbove(report.bytes, 0)
        assert.deepStrictEqual(
          [...rx.records].sort((a, b) => a.kind.localeCompare(b.kind)),
          everyKind.map(WireProtocol.toWireRecord).sort((a, b) => a.kind.localeCompare(b.kind))
        )
        const batch = rx.batches[0]!
        assert.strictEqual(batch.envelope.type, "batch")
        assert.strictEqual(batch.envelope.version, 1)
        assert.strictEqual(batch.envelope.client_id, "client-acme")
        assert.strictEqual(batch.envelope.agent_version, "0.1.0-test")
        assert.strictEqual(batch.envelope.instance, "https://gitlab.example.test")
        assert.strictEqual(batch.envelope.encryption, "x25519-xsalsa20poly1305-sealedbox")
        assert.strictEqual(batch.envelope.compression, "gzip")
        assert.strictEqual(batch.envelope.record_count, 1)
        assert.match(batch.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
        const request = rx.requests[0]!
        assert.strictEqual(request.headers["user-agent"], "mhq-sync/0.1.0-test")
        assert.strictEqual(request.headers["content-type"], "application/json")
        assert.strictEqual(request.headers["webhook-id"], request.id)
        assert.isUndefined(request.headers["mhq-replay"])
        const staging = yield* Staging.Staging
        assert.strictEqual((yield* staging.summary).batches.delivered, everyKind.length)
        // nothing new: nothing sent
        assert.strictEqual((yield* delivery.sendPending()).delivered, 0)
        assert.strictEqual(rx.requests.length, everyKind.length)
      })))

  it.live("receiver down for a while: batches are retried and all delivered once it is back", () =>
    withSink((rx) =>
      Effect.gen(function*() {
        yield* stage(manyRecords(30))
        rx.scriptReply({ status: 503 }, { times: 3 })
        rx.scriptReply("drop", { times: 3 })
        rx.scriptReply({ status: 502 }, { times: 3 })
        const delivery = yield* Delivery.Delivery
        const report = yield* delivery.drain({ timeout: "30 seconds" })
        assert.strictEqual(report.packed, 3)
        assert.strictEqual(report.delivered, 3)
        assert.isAtLeast(report.retried, 9)
        assert.strictEqual(report.failed, 0)
        assert.strictEqual(rx.batches.length, 3)
        assert.strictEqual(rx.records.length, 30)
        assert.strictEqual(new Set(rx.records.map((r) => r.key)).size, 30)
        const batches = yield* (yield* Staging.Staging).batches()
        assert.isTrue(batches.every((b) => b.status === "delivered"))
        assert.isTrue(batches.some((b) => b.attempts > 1))
      }), { limits: { maxRecords: 10, maxBytes: 4 * 1024 * 1024 }, concurrency: 2 }))

  it.live("a receiver that is down gets one request per sender per pass, not one per batch", () =>
    withSink((rx) =>
      Effect.gen(function*() {
        rx.setReply({ status: 503 })
        yield* stage(everyKind)
        const delivery = yield* Delivery.Delivery
        const report = yield* delivery.sendPending()
        assert.strictEqual(report.packed, everyKind.length)
        // Two senders (the default concurrency) each learn it once; the rest keep their schedule.
        assert.strictEqual(report.retried, 2)
        assert.strictEqual(report.delivered, 0)
        assert.strictEqual(rx.requests.length, 2)
        const staging = yield* Staging.Staging
        const pending = yield* staging.batches({ status: "pending" })
        assert.strictEqual(pending.length, everyKind.length)
        assert.strictEqual(pending.filter((b) => b.attempts === 0).length, everyKind.length - 2)
      })))

  it.live("429 with Retry-After is honoured", () =>
    withSink((rx) =>
      Effect.gen(function*() {
        yield* stage(manyRecords(1))
        rx.scriptReply({ status: 429, retryAfter: 1 })
        const delivery = yield* Delivery.Delivery
        const first = yield* delivery.sendPending()
        assert.strictEqual(first.retried, 1)
        const [batch] = yield* (yield* Staging.Staging).batches({ status: "pending" })
        const waitMs = batch!.nextAttemptAt.getTime() - batch!.updatedAt.getTime()
        assert.isAtLeast(waitMs, 950) // not the 20 ms backoff
        assert.strictEqual(batch!.lastError, "HTTP 429")
        const report = yield* delivery.drain({ timeout: "10 seconds" })
        assert.strictEqual(report.delivered, 1)
        const gap = rx.requests[1]!.at.getTime() - rx.requests[0]!.at.getTime()
        assert.isAtLeast(gap, 900)
      })))

  it.live("409 means delivered; an id delivered twice (lost answer) is counted once", () =>
    withSink((rx) =>
      Effect.gen(function*() {
        yield* stage(manyRecords(4))
        const delivery = yield* Delivery.Delivery
        rx.scriptReply({ status: 409 })
        const r1 = yield* delivery.sendPending()
        assert.strictEqual(r1.delivered, 1)
        assert.strictEqual(r1.retried, 0)
        assert.strictEqual(rx.batches.length, 0) // the scripted 409 stored nothing
        assert.strictEqual(rx.requests.length, 1)

        // The receiver stores the batch but the answer never arrives: the agent retries the same id.
        yield* stage(manyRecords(3, { projectId: 99 }))
        rx.scriptReply("store-then-hang")
        const r2 = yield* delivery.drain({ timeout: "20 seconds" })
        assert.strictEqual(r2.delivered, 1)
        assert.strictEqual(r2.retried, 1)
        assert.strictEqual(rx.batches.length, 1)
        assert.strictEqual(rx.duplicates, 1)
        assert.strictEqual(rx.records.length, 3)
        assert.deepStrictEqual(rx.requests.slice(1).map((r) => r.status), ["hang", 409])
        assert.strictEqual(rx.requests[1]!.id, rx.requests[2]!.id)
      }), { requestTimeout: "500 millis" }))

  it.live("413 splits the batch in two and sends both halves", () =>
    withSink((rx) =>
      Effect.gen(function*() {
        yield* stage(manyRecords(8, { size: 2000, incompressible: true }))
        const delivery = yield* Delivery.Delivery
        // one batch of 8 is too big; halves of 4 are still too big; quarters of 2 fit
        rx.setMaxBodyBytes(6000)
        const report = yield* delivery.sendPending()
        assert.strictEqual(report.packed, 1)
        assert.strictEqual(report.split, 3)
        assert.strictEqual(report.delivered, 4)
        assert.strictEqual(report.records, 8)
        assert.strictEqual(rx.records.length, 8)
        assert.deepStrictEqual(rx.records.map((r) => r.key).sort(), ["1", "2", "3", "4", "5", "6", "7", "8"])
        const summary = yield* (yield* Staging.Staging).summary
        assert.strictEqual(summary.batches.split, 3)
        assert.strictEqual(summary.batches.delivered, 4)
      })))

  it.live("400 marks the batch failed at once with status and body; only a replay sends it again", () =>
    withSink((rx) =>
      Effect.gen(function*() {
        yield* stage(manyRecords(2))
        const delivery = yield* Delivery.Delivery
        const staging = yield* Staging.Staging
        rx.scriptReply({ status: 400, body: `schema mismatch: ${"y".repeat(1000)}` })
        const report = yield* delivery.sendPending()
        assert.strictEqual(report.failed, 1)
        assert.strictEqual(report.retried, 0)
        const [failed] = yield* staging.batches({ status: "failed" })
        assert.isTrue(failed!.lastError!.startsWith("HTTP 400: schema mismatch: yyy"))
        assert.strictEqual(Buffer.byteLength(failed!.lastError!), "HTTP 400: ".length + 500)
        assert.strictEqual(failed!.attempts, 1)
        // not retried by later passes
        yield* delivery.drain({ timeout: "1 second" })
        assert.strictEqual(rx.requests.length, 1)
        // replay: same id, same records, mhq-replay: 1
        const replay = yield* delivery.replayBatch(failed!.id)
        assert.strictEqual(replay.delivered, 1)
        assert.strictEqual(rx.requests.length, 2)
        assert.strictEqual(rx.requests[1]!.id, failed!.id)
        assert.strictEqual(rx.requests[1]!.headers["mhq-replay"], "1")
        assert.strictEqual(rx.batches[0]!.id, failed!.id)
        assert.deepStrictEqual(rx.records.map((r) => r.key), ["1", "2"])
        // replaying a delivered batch again: accepted by id, counted once
        yield* delivery.replayBatch(failed!.id)
        assert.strictEqual(rx.batches.length, 1)
        assert.strictEqual(rx.batches[0]!.deliveries, 2)
        assert.strictEqual(rx.records.length, 2)
      })))

  it.live("re-batches records staged since a time, optionally of one kind", () =>
    withSink((rx) =>
      Effect.gen(function*() {
        yield* stage(everyKind)
        const delivery = yield* Delivery.Delivery
        yield* delivery.sendPending()
        const before = rx.batches.length
        const report = yield* delivery.replaySince(new Date(Date.now() - 60_000), { kind: "note" })
        assert.strictEqual(report.packed, 1)
        assert.strictEqual(report.delivered, 1)
        const last = rx.batches.at(-1)!
        assert.strictEqual(rx.batches.length, before + 1)
        assert.strictEqual(last.envelope.kind, "note")
        assert.strictEqual(rx.requests.at(-1)!.headers["mhq-replay"], "1")
        const all = yield* delivery.replaySince(new Date(Date.now() - 60_000))
        assert.strictEqual(all.delivered, everyKind.length)
      })))

  it.live("retries stop after the max age: the batch is failed and stays staged", () =>
    withSink((rx) =>
      Effect.gen(function*() {
        yield* stage(manyRecords(1))
        rx.setReply({ status: 503 })
        const delivery = yield* Delivery.Delivery
        const report = yield* delivery.drain({ timeout: "10 seconds" })
        assert.strictEqual(report.delivered, 0)
        assert.strictEqual(report.failed, 1)
        assert.isAtLeast(report.retried, 1)
        const [failed] = yield* (yield* Staging.Staging).batches({ status: "failed" })
        assert.include(failed!.lastError!, "gave up after")
        assert.include(failed!.lastError!, "HTTP 503")
        const records = yield* (yield* Staging.Staging).batchRecords(failed!.id)
        assert.strictEqual(records.length, 1)
      }), { maxAge: "300 millis" }))

  it.live("a record too big for any batch is quarantined, the rest delivered", () =>
    withSink((rx) =>
      Effect.gen(function*() {
        yield* stage([...manyRecords(3, { size: 100 }), ...manyRecords(1, { size: 20_000, projectId: 5 })])
        const report = yield* (yield* Delivery.Delivery).sendPending()
        assert.strictEqual(report.quarantined, 1)
        assert.strictEqual(report.records, 3)
        assert.strictEqual(rx.records.length, 3)
        const [q] = yield* (yield* Staging.Staging).quarantined()
        assert.include(q!.error, "exceeds the batch limit")
      }), { limits: { maxRecords: 500, maxBytes: 10_000 } }))

  it.live("no plaintext record, secret or key in any log line", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const rx = yield* ReferenceReceiver.make()
      yield* Effect.gen(function*() {
        yield* stage([...everyKind, ...manyRecords(20)])
        rx.scriptReply({ status: 503 }, { times: 2 })
        rx.scriptReply("drop")
        rx.scriptReply({ status: 400, body: "bad" })
        rx.scriptReply({ status: 413 })
        const delivery = yield* Delivery.Delivery
        yield* delivery.drain({ timeout: "20 seconds" })
        const [failed] = yield* (yield* Staging.Staging).batches({ status: "failed" })
        yield* delivery.replayBatch(failed!.id)
      }).pipe(Effect.provide(Layer.merge(deliveryLayer(rx, { limits: { maxRecords: 5, maxBytes: 4 << 20 } }), logs.layer)))
      assert.isAbove(logs.lines.length, 10)
      const text = logs.lines.join("\n")
      assert.include(text, "batch delivered")
      assert.include(text, "batch will be retried")
      for (const secret of [plaintextMarker, rx.secret, rx.privateKey, "acme/widgets", "LGTM", "production"]) {
        assert.notInclude(text, secret, `log lines contain ${secret}`)
      }
    }))
})
