/**
 * `mhq-sync demo`: no account needed. Starts the simulated GitLab and the reference MHQ receiver
 * on 127.0.0.1 (ephemeral ports) and an embedded PostgreSQL in a temporary directory, runs one
 * full fetch + send cycle through the real agent code, and shows what was fetched, dropped,
 * staged, sent and received (decrypted by the receiver with its private key).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Staging } from "@mhq-sync/core"
import { Heartbeat } from "@mhq-sync/mhq-sink"
import { ReferenceReceiver, SimGitlab } from "@mhq-sync/testkit"
import { Console, Duration, Effect, Layer, Redacted } from "effect"
import * as Agent from "./Agent.ts"
import type * as AppConfig from "./AppConfig.ts"

export interface Options {
  readonly projects: number
  readonly mrsPerProject: number
  /** Keep the data directory (printed) instead of deleting it. */
  readonly keep: boolean
}

export interface Result {
  readonly rows: ReadonlyArray<{ readonly kind: string; readonly fetched: number; readonly staged: number; readonly sent: number; readonly received: number }>
  readonly gitlabRequests: number
  readonly gitlabJsonBytes: number
  readonly stagedBytes: number
  readonly batchesDelivered: number
  readonly heartbeats: number
  readonly complete: boolean
}

const demoConfig = (gitlab: SimGitlab.Handle, receiver: ReferenceReceiver.Handle, dataDir: string, topGroups: ReadonlyArray<string>): AppConfig.AppConfig => ({
  gitlab: [{
    url: gitlab.url,
    token: Redacted.make(gitlab.token),
    authKind: "private-token",
    projects: [],
    groups: topGroups,
    includeArchived: false,
    caFile: undefined,
    insecureSkipVerify: false,
    proxy: undefined,
    concurrency: 4,
    requestsPerMinute: 6000,
    graphql: true,
    graphqlBatchSize: 50
  }],
  mhq: {
    webhookUrl: new URL(receiver.url),
    clientId: "demo-client",
    clientSecret: Redacted.make(receiver.secret),
    publicKey: Redacted.make(receiver.publicKey),
    heartbeatInterval: Duration.minutes(5),
    commands: true
  },
  sync: {
    backfillDays: 31,
    cursorOverlap: Duration.minutes(10),
    fetchInterval: Duration.hours(6),
    sendInterval: Duration.hours(6),
    privacy: { emails: "hash", names: "keep" }
  },
  batch: { maxRecords: 500, maxBytes: 4 * 1024 * 1024, maxAge: Duration.hours(72), concurrency: 2 },
  database: { url: undefined, dataDir },
  http: { listen: undefined },
  log: { level: "warn", format: "pretty" }
})

/** Bytes of every GitLab object the agent reads, as GitLab serves it (the "before" of minimisation). */
const gitlabBytes = (gitlab: SimGitlab.Handle) => {
  let bytes = 0
  const add = (v: unknown) => (bytes += Buffer.byteLength(JSON.stringify(v)))
  for (const p of gitlab.projects()) {
    if (p.flags.archived) continue
    add(gitlab.project(p.id))
    for (const mr of gitlab.mergeRequests(p.id)) {
      add(mr)
      add(gitlab.notes(p.id, mr.iid))
      add(gitlab.approvals(p.id, mr.iid))
      add(gitlab.commits(p.id, mr.iid))
      add(gitlab.diffs(p.id, mr.iid))
    }
    add(gitlab.pipelines(p.id))
    add(gitlab.deployments(p.id))
  }
  return bytes
}

export const run = (options: Options) =>
  Effect.scoped(Effect.gen(function*() {
    const gitlab = yield* SimGitlab.make({ projects: options.projects, mrsPerProject: options.mrsPerProject, pipelinesPerProject: 10, deploymentsPerProject: 5, bigNotesMr: { projectId: SimGitlab.projectIdOf(0), iid: 1, notes: 150 } })
    const receiver = yield* ReferenceReceiver.make()
    const dataDir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "mhq-sync-demo-"))),
      (dir) => options.keep ? Effect.void : Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
    const topGroups = gitlab.groups().filter((g) => g.parentId === null).map((g) => g.fullPath)
    const config = demoConfig(gitlab, receiver, dataDir, topGroups)
    yield* Console.log(`mhq-sync demo
  simulated GitLab   ${gitlab.url} (${gitlab.projects().length} projects in ${gitlab.groups().length} groups and subgroups)
  MHQ receiver       ${receiver.url} (reference receiver: verifies signatures, opens sealed batches)
  staging database   embedded PostgreSQL in ${dataDir}
`)
    const targets = yield* Agent.instances(config)

    return yield* Effect.gen(function*() {
      const staging = yield* Staging.Staging
      const started = Date.now()
      const reports = yield* Agent.fetchCycle(targets, { wait: "1 minute" })
      const fetchedMs = Date.now() - started
      const sent = yield* Agent.sendCycle({ drain: "2 minutes" })
      const summary = yield* staging.summary
      const delivered = yield* staging.batches({ status: "delivered", limit: 100_000 })

      const fetched: Record<string, number> = {}
      for (const r of reports) for (const p of r.projects) for (const [k, n] of Object.entries(p.counts)) if (k !== "quarantined") fetched[k] = (fetched[k] ?? 0) + n
      const sentByKind: Record<string, number> = {}
      for (const b of delivered) sentByKind[b.kind] = (sentByKind[b.kind] ?? 0) + b.recordCount
      const received: Record<string, number> = {}
      let stagedBytes = 0
      for (const rec of receiver.records) {
        received[rec.kind] = (received[rec.kind] ?? 0) + 1
        stagedBytes += Buffer.byteLength(JSON.stringify(rec.data))
      }
      const kinds = [...new Set([...Object.keys(fetched), ...Object.keys(summary.recordsByKind), ...Object.keys(received)])].sort()
      const rows = kinds.map((kind) => ({
        kind,
        fetched: fetched[kind] ?? 0,
        staged: summary.recordsByKind[kind] ?? 0,
        sent: sentByKind[kind] ?? 0,
        received: received[kind] ?? 0
      }))
      yield* (yield* Heartbeat.Heartbeat).beat()
      const beat = receiver.heartbeats.length
      const result: Result = {
        rows,
        gitlabRequests: reports.reduce((n, r) => n + r.requests, 0),
        gitlabJsonBytes: gitlabBytes(gitlab),
        stagedBytes,
        batchesDelivered: sent.delivered,
        heartbeats: beat,
        complete: rows.every((r) => r.staged === r.received && r.sent === r.received)
      }
      yield* Console.log(render(result, fetchedMs))
      return result
    }).pipe(Effect.provide(
      Heartbeat.layerService().pipe(
        Layer.provideMerge(Layer.mergeAll(Agent.sinkLayer(config), Agent.AgentState.layer)),
        Layer.provideMerge(Agent.stagingLayer(config))
      )
    ))
  }))

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(2)} MB`

export const render = (r: Result, fetchMs: number): string => {
  const header = ["kind", "fetched", "staged", "sent", "received (decrypted)"]
  const rows = r.rows.map((x) => [x.kind, String(x.fetched), String(x.staged), String(x.sent), String(x.received)])
  const total = ["total", ...[1, 2, 3, 4].map((i) => String(rows.reduce((n, row) => n + Number(row[i]), 0)))]
  const all = [header, ...rows, total]
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i]!.length)))
  const line = (row: ReadonlyArray<string>) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("   ")
  const dropped = r.gitlabJsonBytes > 0 ? Math.round((1 - r.stagedBytes / r.gitlabJsonBytes) * 100) : 0
  return [
    line(header),
    widths.map((w) => "-".repeat(w)).join("   "),
    ...rows.map(line),
    widths.map((w) => "-".repeat(w)).join("   "),
    line(total),
    "",
    `GitLab requests: ${r.gitlabRequests} in ${(fetchMs / 1000).toFixed(1)} s`,
    `dropped: GitLab served ${mb(r.gitlabJsonBytes)} of JSON for these entities; MHQ received ${mb(r.stagedBytes)} (${dropped}% dropped: descriptions, comment bodies, commit messages, diff text, avatars, links; emails hashed)`,
    `sent: ${r.batchesDelivered} sealed batches, every one verified and opened by the receiver; heartbeats received: ${r.heartbeats}`,
    r.complete ? "result: every staged record arrived exactly once ✓" : "result: MISMATCH between staged and received records ✗"
  ].join("\n")
}
