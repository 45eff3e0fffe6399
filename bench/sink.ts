/**
 * MHQ sink benchmark.
 *   1. seal+gzip throughput: JSON Lines of realistic records -> gzip -> crypto_box_seal -> base64
 *      (MB/s of JSON), in batches of 500 like the outbox.
 *   2. end to end: 100k records staged in a fresh PostgreSQL database, packed, claimed, sealed,
 *      signed and POSTed over loopback to the reference receiver (which verifies, opens and
 *      validates every record in the same process): records/s, batches/s.
 *   Peak RSS over the whole run.
 *
 * Run: npx tsx bench/sink.ts [records=100000]   (MHQ_TEST_DATABASE_URL selects the server)
 */
import { randomBytes } from "node:crypto"
import type { SyncRecord } from "@mhq-sync/core"
import { Staging } from "@mhq-sync/core"
import { Delivery, Sealing, SinkConfig, Sodium, Webhook } from "@mhq-sync/mhq-sink"
import { ReferenceReceiver, TestDatabase } from "@mhq-sync/testkit"
import { Effect, Layer, References } from "effect"
import { isMain } from "./util.ts"

const mb = (n: number) => (n / 1024 / 1024).toFixed(1)

const words = ["fix", "add", "refactor", "pipeline", "cache", "deploy", "api", "schema", "retry", "docs", "test", "merge"]
const pick = (i: number, k: number) => words[(i * 7 + k * 13) % words.length]!
export const record = (i: number): SyncRecord.SyncRecord => ({
  instance: "https://gitlab.example.test",
  kind: i % 5 === 0 ? "pipeline" : "merge_request",
  projectId: 1 + (i % 50),
  projectPath: `group-${i % 7}/project-${i % 50}`,
  key: String(i),
  updatedAt: new Date(Date.UTC(2026, 0, 1) + i * 60_000).toISOString(),
  data: {
    iid: i,
    title: `${pick(i, 1)} ${pick(i, 2)} ${pick(i, 3)} #${i}`,
    state: i % 3 === 0 ? "merged" : "opened",
    author_id: 1000 + (i % 300),
    labels: [pick(i, 4), pick(i, 5)],
    created_at: new Date(Date.UTC(2025, 6, 1) + i * 30_000).toISOString(),
    sha: randomBytes(20).toString("hex"),
    additions: i % 400,
    deletions: i % 90,
    description: `${pick(i, 6)} ${pick(i, 7)} ${pick(i, 8)} `.repeat(8)
  }
})

export interface SealResult {
  readonly records: number
  readonly jsonBytes: number
  readonly compressedBytes: number
  readonly sealMs: number
  readonly openMs: number
  /** MB of JSON per second through JSON Lines -> gzip -> crypto_box_seal -> base64. */
  readonly sealMBps: number
  readonly openMBps: number
}

/** Seal+gzip throughput over `records` in batches of 500 (like the outbox), and the receiver's open. */
export const measureSeal = async (records: ReadonlyArray<SyncRecord.SyncRecord>): Promise<SealResult> => {
  await Sodium.ready()
  const { publicKey, privateKey } = (await import("@mhq-sync/mhq-sink")).Keys.generateKeyPair()
  let json = 0, compressed = 0
  const start = performance.now()
  const sealed: Array<string> = []
  for (let i = 0; i < records.length; i += 500) {
    const s = Sealing.sealSync(records.slice(i, i + 500), publicKey)
    json += s.plaintextBytes
    compressed += s.compressedBytes
    sealed.push(s.ciphertext)
  }
  const sealMs = performance.now() - start
  const openStart = performance.now()
  let opened = 0
  for (const c of sealed) opened += Sealing.openSync(c, privateKey).length
  const openMs = performance.now() - openStart
  if (opened !== records.length) throw new Error(`opened ${opened} of ${records.length} records`)
  return {
    records: records.length,
    jsonBytes: json,
    compressedBytes: compressed,
    sealMs,
    openMs,
    sealMBps: json / 1024 / 1024 / (sealMs / 1000),
    openMBps: json / 1024 / 1024 / (openMs / 1000)
  }
}

const sealBench = async (records: ReadonlyArray<SyncRecord.SyncRecord>) => {
  const { compressedBytes: compressed, jsonBytes: json, openMs, sealMs } = await measureSeal(records)
  console.log(`seal+gzip: ${records.length} records, ${mb(json)} MB JSON -> ${mb(compressed)} MB gzip (${(json / compressed).toFixed(1)}x) in ${sealMs.toFixed(0)} ms = ${(json / 1024 / 1024 / (sealMs / 1000)).toFixed(1)} MB/s of JSON`)
  console.log(`open+gunzip+validate: ${records.length} records in ${openMs.toFixed(0)} ms = ${(json / 1024 / 1024 / (openMs / 1000)).toFixed(1)} MB/s of JSON`)
}

const endToEnd = (records: ReadonlyArray<SyncRecord.SyncRecord>) => Effect.gen(function*() {
  const rx = yield* ReferenceReceiver.make()
  const layer = Delivery.layer().pipe(
    Layer.provideMerge(Webhook.layerLive),
    Layer.provideMerge(SinkConfig.layer({
      webhookUrl: rx.url,
      clientId: "bench",
      clientSecret: rx.secret,
      publicKey: rx.publicKey,
      agentVersion: "bench"
    })),
    Layer.provideMerge(TestDatabase.staging("server", { maxConnections: 6 })),
    Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn"))
  )
  yield* Effect.gen(function*() {
    const staging = yield* Staging.Staging
    const stageStart = performance.now()
    for (let i = 0; i < records.length; i += 5000) yield* staging.stage({ records: records.slice(i, i + 5000) })
    const stageMs = performance.now() - stageStart
    console.log(`staging (setup, not the sink): ${records.length} records in ${stageMs.toFixed(0)} ms`)
    console.log(`  rss after staging: ${mb(process.memoryUsage().rss)} MB`)
    const delivery = yield* Delivery.Delivery
    const start = performance.now()
    const packed = yield* staging.pack()
    const packMs = performance.now() - start
    const sent = yield* delivery.sendPending({ pack: false })
    const report = { ...sent, packed: packed.batches }
    const ms = performance.now() - start
    console.log(`  pack: ${packed.batches} batches in ${packMs.toFixed(0)} ms; send: ${(ms - packMs).toFixed(0)} ms`)
    if (rx.records.length !== records.length || report.failed + report.retried > 0) {
      throw new Error(`delivery incomplete: ${JSON.stringify(report)} receiver=${rx.records.length}`)
    }
    console.log(`end to end (pack + claim + seal + sign + POST loopback, concurrency 2, receiver verifies+opens in-process):`)
    console.log(`  ${report.records} records in ${report.delivered} batches (packed ${report.packed}), ${mb(report.bytes)} MB of request bodies, ${ms.toFixed(0)} ms`)
    console.log(`  = ${(report.records / (ms / 1000)).toFixed(0)} records/s, ${(report.delivered / (ms / 1000)).toFixed(1)} batches/s`)
  }).pipe(Effect.provide(layer))
})

if (isMain("sink")) {
  const total = Number(process.argv[2] ?? 100_000)
  let peakRss = 0
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss)
  }, 25)
  const records = Array.from({ length: total }, (_, i) => record(i))
  await sealBench(records)
  console.log(`rss after seal bench: ${mb(process.memoryUsage().rss)} MB`)
  await Effect.runPromise(Effect.scoped(endToEnd(records)))
  clearInterval(sampler)
  console.log(`peak RSS: ${mb(Math.max(peakRss, process.resourceUsage().maxRSS * 1024))} MB (node ${process.version})`)
}
