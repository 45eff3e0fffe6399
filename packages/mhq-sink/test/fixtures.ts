/** Shared test fixtures: records of every kind, a log capture, and the sink wired to a receiver. */
import { randomBytes } from "node:crypto"
import type { SyncRecord } from "@mhq-sync/core"
import { type ReferenceReceiver, TestDatabase } from "@mhq-sync/testkit"
import { Layer, Logger, References } from "effect"
import * as Delivery from "../src/Delivery.ts"
import * as SinkConfig from "../src/SinkConfig.ts"
import * as Webhook from "../src/Webhook.ts"

export const instance = "https://gitlab.example.test"
/** A marker that must never show up in a log line (it only exists inside record data). */
export const plaintextMarker = "PLAINTEXT-MARKER-7f3a"

const base = (kind: string, key: string, data: SyncRecord.SyncRecord["data"], projectId = 12): SyncRecord.SyncRecord => ({
  instance,
  kind,
  projectId,
  projectPath: "acme/widgets",
  key,
  updatedAt: "2026-11-30T10:15:00.000Z",
  data
})

/** One record of every kind the GitLab source produces. */
export const everyKind: ReadonlyArray<SyncRecord.SyncRecord> = [
  base("project", "12", { id: 12, path_with_namespace: "acme/widgets", default_branch: "main", archived: false }),
  base("merge_request", "7", { iid: 7, title: `Fix ${plaintextMarker} — ünïcødé ✓`, state: "merged", labels: ["bug"], merged_at: "2026-11-29T09:00:00Z" }),
  base("approval", "7:3", { merge_request_iid: 7, user_id: 3, approved_at: null }),
  base("diff_stat", "7", { additions: 120, deletions: 4, files: 3 }),
  base("note", "7:991", { id: 991, body: "LGTM\nwith a newline and \"quotes\"", system: false }),
  base("pipeline", "5501", { id: 5501, status: "success", duration: 312.5, ref: "main" }),
  base("commit", "a1b2c3d4", { sha: "a1b2c3d4", parent_ids: [], authored_date: "2026-11-28T08:00:00Z" }),
  base("deployment", "88", { id: 88, environment: "production", status: "success", nested: { deep: { list: [1, 2, { x: true }] } } })
]

/** `n` merge requests with ~`size` bytes of data each. */
export const manyRecords = (
  n: number,
  options: { readonly kind?: string; readonly size?: number; readonly projectId?: number; readonly incompressible?: boolean } = {}
) =>
  Array.from({ length: n }, (_, i) =>
    base(options.kind ?? "merge_request", String(i + 1), {
      iid: i + 1,
      title: `${plaintextMarker} change ${i + 1}`,
      description: options.incompressible
        ? randomBytes(Math.ceil((options.size ?? 100) * 0.75)).toString("base64").slice(0, options.size ?? 100)
        : "x".repeat(options.size ?? 100)
    }, options.projectId ?? 12))

/** Collects every log line (JSON, with annotations and causes) at Debug and above. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make((options) => {
    lines.push(Logger.formatJson.log(options))
  })
  const layer = Layer.mergeAll(Logger.layer([logger]), Layer.succeed(References.MinimumLogLevel, "Debug"))
  return { lines, layer }
}

export const fastBackoff = { base: "20 millis", cap: "200 millis", factor: 2 } as const

export const sinkOptions = (
  receiver: ReferenceReceiver.Handle,
  overrides: Partial<SinkConfig.Options> = {}
): SinkConfig.Options => ({
  webhookUrl: receiver.url,
  clientId: "client-acme",
  clientSecret: receiver.secret,
  publicKey: receiver.publicKey,
  agentVersion: "0.1.0-test",
  backoff: fastBackoff,
  requestTimeout: "2 seconds",
  ...overrides
})

/** Delivery + Webhook + SinkConfig over a fresh staging database. */
export const deliveryLayer = (receiver: ReferenceReceiver.Handle, overrides: Partial<SinkConfig.Options> = {}) =>
  Delivery.layer().pipe(
    Layer.provideMerge(Webhook.layerLive),
    Layer.provideMerge(SinkConfig.layer(sinkOptions(receiver, overrides))),
    Layer.provideMerge(TestDatabase.staging("server"))
  )
