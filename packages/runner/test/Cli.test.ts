/**
 * The built CLI, spawned as a user would run it, against the simulated GitLab and the reference
 * receiver on 127.0.0.1 and an embedded database in a temporary directory.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Database } from "@mhq-sync/core"
import { ReferenceReceiver, SimGitlab } from "@mhq-sync/testkit"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const repo = path.resolve(import.meta.dirname, "../../..")
const bin = path.join(repo, "dist", "mhq-sync.mjs")

interface Result {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const cli = (args: ReadonlyArray<string>, options: { readonly cwd: string; readonly env?: Record<string, string>; readonly timeoutMs?: number }) =>
  new Promise<Result>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: options.cwd,
      env: { PATH: process.env.PATH ?? "", HOME: options.cwd, ...options.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`mhq-sync ${args.join(" ")} timed out\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, options.timeoutMs ?? 90_000)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })

// World-traversable: as root, the embedded PostgreSQL runs as the `postgres` user and must reach data/.
const tempDir = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mhq-cli-"))
  fs.chmodSync(dir, 0o755)
  return dir
}

let gitlab: SimGitlab.Handle
let receiver: ReferenceReceiver.Handle
const dirs: Array<string> = []

beforeAll(async () => {
  // The tests exercise the bundle users run; build it when missing or older than the sources.
  const newest = (dir: string): number =>
    fs.readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
      const p = path.join(dir, e.name)
      return Math.max(m, e.isDirectory() ? (e.name === "node_modules" ? 0 : newest(p)) : fs.statSync(p).mtimeMs)
    }, 0)
  const sources = Math.max(newest(path.join(repo, "packages")), newest(path.join(repo, "test/support/src")))
  if (!fs.existsSync(bin) || fs.statSync(bin).mtimeMs < sources) {
    const build = spawnSync(process.execPath, [path.join(repo, "scripts/build.mjs")], { cwd: repo, encoding: "utf8" })
    if (build.status !== 0) throw new Error(`build failed: ${build.stderr}`)
  }
  gitlab = await SimGitlab.start({ projects: 3, mrsPerProject: 12, pipelinesPerProject: 6, deploymentsPerProject: 3, bigNotesMr: false, archivedEvery: 0 })
  receiver = await ReferenceReceiver.start()
}, 120_000)

afterAll(async () => {
  await gitlab?.stop()
  await receiver?.close()
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

/** A working directory holding the older agent's .env + config.json for the simulated GitLab. */
const legacySetup = (overrides: Record<string, string> = {}, repositories?: ReadonlyArray<string>) => {
  const cwd = tempDir()
  dirs.push(cwd)
  const env: Record<string, string> = {
    GITLAB_DOMAIN_URL: gitlab.url,
    GITLAB_ACCESS_TOKEN: gitlab.token,
    MHQ_CLIENT_ID: "acme",
    MHQ_CLIENT_SECRET: receiver.secret,
    MHQ_WEBHOOK_URL: receiver.url,
    MHQ_PUBLIC_KEY: receiver.publicKey,
    ...overrides
  }
  fs.writeFileSync(path.join(cwd, ".env"), Object.entries(env).map(([k, v]) => `${k}='${v}'`).join("\n") + "\n")
  const repos = repositories ?? gitlab.projects().map((p) => `${gitlab.url}/${p.pathWithNamespace}`)
  fs.writeFileSync(path.join(cwd, "config.json"), JSON.stringify({ integrations: { gitlab: { repositories: repos } } }))
  // The simulated GitLab is local: lift the default 300 requests/minute politeness budget.
  return { cwd, env: { MHQ_DATA_DIR: path.join(cwd, "data"), MHQ_HTTP_LISTEN: "off", MHQ_LOG_FORMAT: "json", GITLAB_REQUESTS_PER_MINUTE: "20000" } }
}

describe("mhq-sync CLI", () => {
  it("demo completes and its receiver got every record", async () => {
    const cwd = tempDir()
    dirs.push(cwd)
    const r = await cli(["demo", "--projects", "2", "--mrs", "8"], { cwd })
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/result: every staged record arrived exactly once ✓/)
    expect(r.stdout).toMatch(/^merge_request\s+16\s+16\s+16\s+16$/m)
  }, 120_000)

  it("run with nothing configured runs one demo cycle and exits 0", async () => {
    const cwd = tempDir()
    dirs.push(cwd)
    const r = await cli(["run"], { cwd })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/No GitLab is configured .* running one demo cycle/)
    expect(r.stdout).toMatch(/result: every staged record arrived exactly once ✓/)
  }, 120_000)

  it("the older agent's .env + config.json load unchanged; config shows sources and masks secrets", async () => {
    const { cwd, env } = legacySetup()
    const r = await cli(["config", "--json"], { cwd, env })
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { config: { gitlab: Array<{ url: string; token: string; projects: Array<string> }> }; sources: Record<string, string> }
    expect(out.config.gitlab[0]!.url).toBe(gitlab.url)
    expect(out.config.gitlab[0]!.token).toBe("<redacted>")
    expect(out.config.gitlab[0]!.projects).toHaveLength(3)
    expect(out.sources["gitlab[0].token"]).toBe(".env GITLAB_ACCESS_TOKEN")
    expect(out.sources["gitlab[0].projects"]).toBe("config.json (older agent's format)")
    expect(r.stdout).not.toContain(gitlab.token)
    expect(r.stdout).not.toContain(receiver.secret)
  }, 60_000)

  it("config errors list every problem with its path and exit 2", async () => {
    const cwd = tempDir()
    dirs.push(cwd)
    fs.writeFileSync(path.join(cwd, "mhq-sync.json"), JSON.stringify({ gitlab: [{ url: "not a url" }], sync: { fetchInterval: "soon" } }))
    const r = await cli(["sync"], { cwd, env: { MHQ_WEBHOOK_URL: "http://example.com/hook" } })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/invalid configuration \(8 problems\)/)
    expect(r.stderr).toMatch(/mhq\.publicKey: missing — set MHQ_PUBLIC_KEY/)
    for (const line of [
      /gitlab\[0\]\.url: "not a url" is not a valid URL/,
      /gitlab\[0\]\.token: missing — set GITLAB_ACCESS_TOKEN or gitlab\[0\]\.tokenFile/,
      /gitlab\[0\]\.projects: no projects or groups/,
      /sync\.fetchInterval: "soon" is not a duration/,
      /mhq\.webhookUrl: must be https:\/\//
    ]) expect(r.stderr).toMatch(line)
  }, 60_000)

  it("check: all ✓ against the simulated GitLab and receiver", async () => {
    const { cwd, env } = legacySetup()
    const r = await cli(["check"], { cwd, env })
    expect(r.stdout).not.toMatch(/✗/)
    expect(r.stdout).toMatch(/! GitLab http:\/\/127\.0\.0\.1:\d+ is plain http\n\s+→ .*use the https:\/\/ URL/)
    expect(r.stdout).toMatch(/✓ GitLab reachable at .* \(version 17\.5\.1-ee\)/)
    expect(r.stdout).toMatch(/✓ token valid with the read_api scope/)
    expect(r.stdout).toMatch(/✓ webhook reachable and accepts signed requests/)
    expect(r.stdout).toMatch(/✓ database writable \(embedded/)
    expect(r.stdout).toMatch(/✓ 3 project\(s\) accessible/)
    expect(r.stdout).toMatch(/✓ GraphQL answers the diff stats and commits query \(one request per 50 changed MRs\)/)
    expect(r.code).toBe(0)

    // An older GitLab whose schema lacks the fields: a warning (the sync falls back), not a failure.
    gitlab.setGraphql("legacy")
    try {
      const old = await cli(["check"], { cwd, env })
      expect(old.stdout).toMatch(/! GraphQL answers the diff stats and commits query\n\s+→ .*Field 'commits' doesn't exist on type 'MergeRequest'.*per MR over REST/)
      expect(old.code).toBe(0)
    } finally {
      gitlab.setGraphql("enabled")
    }
  }, 120_000)

  it("check: ✗ with the right fix for a revoked token, an unknown project, a bad key and an unreachable webhook", async () => {
    const badKey = legacySetup({ MHQ_PUBLIC_KEY: "not-base64!" })
    const r1 = await cli(["check"], badKey)
    expect(r1.code).toBe(3)
    expect(r1.stdout).toMatch(/✗ MHQ public key well-formed\n\s+→ .*MHQ_PUBLIC_KEY/)

    const unknown = legacySetup({}, [`${gitlab.url}/no-such-group/no-such-project`, `${gitlab.url}/${gitlab.projects()[0]!.pathWithNamespace}`])
    const r2 = await cli(["check"], unknown)
    expect(r2.code).toBe(3)
    expect(r2.stdout).toMatch(/✗ project or group accessible\n\s+→ .*no-such-group\/no-such-project.*member/)

    const unreachable = legacySetup({ MHQ_WEBHOOK_URL: "http://127.0.0.1:9/hook" })
    const r3 = await cli(["check"], unreachable)
    expect(r3.code).toBe(3)
    expect(r3.stdout).toMatch(/✗ webhook reachable and accepts signed requests\n\s+→ .*MHQ_WEBHOOK_URL/)

    const revoked = legacySetup({ GITLAB_ACCESS_TOKEN: "glpat-revoked-or-wrong" })
    const r4 = await cli(["check"], revoked)
    expect(r4.code).toBe(3)
    expect(r4.stdout).toMatch(/token is invalid, expired or revoked/)
    expect(r4.stdout + r4.stderr).not.toContain("glpat-revoked-or-wrong")
  }, 180_000)

  it("sync then status --json", async () => {
    const { cwd, env } = legacySetup()
    receiver.reset()
    const r = await cli(["sync"], { cwd, env })
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/sent: \d+ batches packed, \d+ delivered/)
    const s = await cli(["status", "--json"], { cwd, env })
    expect(s.code).toBe(0)
    const status = JSON.parse(s.stdout) as {
      batches: { pending: number; failed: number; delivered: number }
      undelivered: number
      projects: Array<{ projectPath: string; lastRun: { status: string } | null; records: Record<string, number>; cursors: Record<string, string> }>
    }
    expect(status.batches.failed).toBe(0)
    expect(status.batches.pending).toBe(0)
    expect(status.undelivered).toBe(0)
    expect(status.projects.map((p) => p.projectPath).sort()).toEqual(gitlab.projects().map((p) => p.pathWithNamespace).sort())
    for (const p of status.projects) {
      expect(p.lastRun?.status).toBe("ok")
      expect(p.records.merge_request).toBe(12)
      expect(Object.keys(p.cursors).length).toBeGreaterThan(0)
    }
    const mrs = receiver.records.filter((x) => x.kind === "merge_request")
    expect(mrs).toHaveLength(36)

    // Operators replay: one batch by id (same id, same records, marked as a replay) …
    const first = receiver.batches[0]!
    const replay = await cli(["replay", "--batch", first.id], { cwd, env })
    expect(replay.code, replay.stderr).toBe(0)
    expect(replay.stdout).toMatch(/1 delivered/)
    expect(receiver.batches.find((b) => b.id === first.id)!.replays).toBe(1)
    expect(receiver.requests.filter((q) => q.id === first.id && q.replay)).toHaveLength(1)
    // … and everything of one kind staged since a time, as new batches.
    const before = receiver.batches.length
    const since = await cli(["replay", "--since", "2000-01-01T00:00:00Z", "--kind", "project"], { cwd, env })
    expect(since.code, since.stderr).toBe(0)
    const added = receiver.batches.slice(before)
    expect(added.length).toBe(1)
    expect(added[0]!.records.map((x) => x.kind)).toEqual(["project", "project", "project"])
    const unknown = await cli(["replay", "--batch", "01890a5d-ac96-774b-bcce-b302099a8057"], { cwd, env })
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/no batch with id 01890a5d-ac96-774b-bcce-b302099a8057/)
    const bad = await cli(["replay", "--batch", "nope"], { cwd, env })
    expect(bad.code).toBe(2)
  }, 120_000)

  it("SIGTERM mid-cycle exits 0 within 10 s, with nothing half-written and a stopping heartbeat", async () => {
    const slow = await SimGitlab.start({ projects: 3, mrsPerProject: 40, bigNotesMr: false, archivedEvery: 0, faults: { latencyMs: 60 } })
    try {
      const { cwd, env } = legacySetup({ GITLAB_DOMAIN_URL: slow.url, GITLAB_ACCESS_TOKEN: slow.token }, slow.projects().map((p) => `${slow.url}/${p.pathWithNamespace}`))
      receiver.reset()
      const child = spawn(process.execPath, [bin, "run"], { cwd, env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] })
      let output = ""
      child.stdout.on("data", (d: Buffer) => (output += d.toString()))
      child.stderr.on("data", (d: Buffer) => (output += d.toString()))
      // Wait until the fetch is well under way (some MR children fetched), then stop.
      const deadline = Date.now() + 60_000
      while ((slow.stats().byRoute["GET /projects/:id/merge_requests/:iid/notes"] ?? 0) < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      const stoppedAt = Date.now()
      child.kill("SIGTERM")
      const code = await new Promise<number | null>((resolve) => child.once("exit", resolve))
      expect(code, output).toBe(0)
      expect(Date.now() - stoppedAt).toBeLessThan(10_000)
      expect(receiver.heartbeats.some((h) => h.envelope.status === "stopping")).toBe(true)

      // Nothing half-written: every staged MR has all its notes (an MR is staged with its children
      // in one transaction), and no notes exist for an MR that is not staged.
      const staged = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const mrs = yield* sql<{ p: number; key: string }>`SELECT project_id::int AS p, key FROM records WHERE kind = 'merge_request'`
        const notes = yield* sql<{ p: number; iid: string; n: number }>`SELECT project_id::int AS p, split_part(key, ':', 1) AS iid,
          count(*)::int AS n FROM records WHERE kind = 'note' GROUP BY 1, 2`
        return { mrs, notes }
      }).pipe(Effect.provide(Database.layer({ dataDir: env.MHQ_DATA_DIR })))))
      expect(staged.mrs.length).toBeGreaterThan(0)
      const notesOf = new Map(staged.notes.map((n) => [`${n.p}:${n.iid}`, n.n]))
      for (const mr of staged.mrs) expect(notesOf.get(`${mr.p}:${mr.key}`) ?? 0, `MR ${mr.p}!${mr.key}`).toBe(slow.notes(mr.p, Number(mr.key)).length)
      const stagedKeys = new Set(staged.mrs.map((m) => `${m.p}:${m.key}`))
      for (const key of notesOf.keys()) expect(stagedKeys.has(key), `notes without their MR ${key}`).toBe(true)
    } finally {
      await slow.stop()
    }
  }, 120_000)

  it("run serves /healthz, /readyz and /metrics on loopback while it works", async () => {
    const { cwd, env } = legacySetup()
    receiver.reset()
    const child = spawn(process.execPath, [bin, "run"], {
      cwd,
      env: { PATH: process.env.PATH ?? "", ...env, MHQ_HTTP_LISTEN: "127.0.0.1:0", MHQ_HEARTBEAT_INTERVAL: "1s" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stderr.on("data", (d: Buffer) => (output += d.toString()))
    try {
      const deadline = Date.now() + 60_000
      let url: string | undefined
      while (Date.now() < deadline && (url === undefined || receiver.batches.length === 0)) {
        url ??= /health and metrics on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1]
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(url, output).toBeDefined()
      await receiver.waitFor((h) => h.records.length >= 3 * 12, 30_000)
      expect((await fetch(`${url}/healthz`)).status).toBe(200)
      expect((await fetch(`${url}/readyz`)).status).toBe(200)
      let metrics = ""
      for (let i = 0; i < 50 && !metrics.includes("mhq_last_successful_send_timestamp_seconds "); i++) {
        metrics = await (await fetch(`${url}/metrics`)).text()
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(metrics).toMatch(/mhq_gitlab_requests_total\{instance="http:\/\/127\.0\.0\.1:\d+",endpoint="\/projects\/:id\/merge_requests",status="200"\} 3/)
      expect(metrics).toMatch(/mhq_records_staged_total\{kind="merge_request"\} 36/)
      expect(metrics).toMatch(/mhq_batches_total\{outcome="delivered"\} \d+/)
      expect(metrics).toMatch(/mhq_last_successful_fetch_timestamp_seconds \d+/)

      // MHQ asks for a resync of one project in a heartbeat answer (repeated in three answers):
      // it runs once, its outcome is reported once, and a fetch starts now, not in 6 hours.
      const project = gitlab.projects()[0]!
      const listsBefore = gitlab.stats().byRoute["GET /projects/:id/merge_requests"] ?? 0
      receiver.queueCommands([{ id: "cmd-1", command: "resync_project", parameters: { project_id: project.id } }], { times: 3 })
      await receiver.waitFor((h) => h.heartbeats.some((b) => b.details.command_results.some((c) => c.id === "cmd-1")), 30_000)
      const results = receiver.heartbeats.flatMap((b) => b.details.command_results.filter((c) => c.id === "cmd-1"))
      expect(results).toHaveLength(1)
      expect(results[0]!.status).toBe("done")
      expect((results[0]!.outcome as { cursors_reset: number }).cursors_reset).toBeGreaterThan(0)
      const deadline2 = Date.now() + 30_000
      while ((gitlab.stats().byRoute["GET /projects/:id/merge_requests"] ?? 0) === listsBefore && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 100))
      expect(gitlab.stats().byRoute["GET /projects/:id/merge_requests"] ?? 0).toBeGreaterThan(listsBefore)
    } finally {
      child.kill("SIGTERM")
      await new Promise((r) => child.once("exit", r))
    }
  }, 120_000)

  it("keygen prints a usable key pair; unknown commands are usage errors", async () => {
    const cwd = tempDir()
    dirs.push(cwd)
    const r = await cli(["keygen", "--json"], { cwd })
    expect(r.code).toBe(0)
    const pair = JSON.parse(r.stdout) as { public_key: string; private_key: string }
    expect(Buffer.from(pair.public_key, "base64")).toHaveLength(32)
    expect(Buffer.from(pair.private_key, "base64")).toHaveLength(32)
    const bad = await cli(["frobnicate"], { cwd })
    expect(bad.code).not.toBe(0)
  }, 60_000)
})
