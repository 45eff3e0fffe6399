/**
 * Helpers shared by the benchmarks: peak RSS of this process and of other processes (from
 * /proc/<pid>/status), the simulated GitLab in its own process, the product binary as a child
 * process, fresh databases on the local PostgreSQL server, and a plain-text table.
 *
 * Everything here talks to 127.0.0.1 only.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

// ---------------------------------------------------------------------------------------------
// This process

export class PeakRss {
  private peak = process.memoryUsage.rss()
  private readonly timer = setInterval(() => this.sample(), 50)
  sample() {
    this.peak = Math.max(this.peak, process.memoryUsage.rss())
  }
  peakMb() {
    this.sample()
    return this.peak / (1024 * 1024)
  }
  stop() {
    this.sample()
    clearInterval(this.timer)
  }
}

/** True when this module's script is the entry point (`node dist/bench/<name>.mjs` or `tsx bench/<name>.ts`), false when bundled into another entry. */
export const isMain = (name: string) => new RegExp(`[\\\\/]${name}\\.(m?js|ts)$`).test(process.argv[1] ?? "")

/** The repository root (holds dist/mhq-sync.mjs), from the bundle in dist/bench or the source in bench/. */
export const repoRoot = (() => {
  if (process.env["MHQ_BENCH_ROOT"]) return path.resolve(process.env["MHQ_BENCH_ROOT"])
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    const pkg = path.join(dir, "package.json")
    if (fs.existsSync(pkg) && fs.readFileSync(pkg, "utf8").includes("\"mhq-sync-workspace\"")) return dir
    dir = path.dirname(dir)
  }
  return process.cwd()
})()

export const dist = (file: string) => path.join(repoRoot, "dist", file)

export const mb = (bytes: number) => bytes / (1024 * 1024)
export const fmtMb = (bytes: number) => `${mb(bytes).toFixed(0)} MB`
export const fmtS = (ms: number) => `${(ms / 1000).toFixed(1)} s`
export const fmtInt = (n: number) => Math.round(n).toLocaleString("en-US")
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
export const log = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`)

// ---------------------------------------------------------------------------------------------
// Other processes: /proc/<pid>/status

export interface ProcMemory {
  /** Resident set now (bytes). */
  readonly rss: number
  /** Peak resident set so far, the kernel's high-water mark (bytes). */
  readonly hwm: number
}

export const procMemory = (pid: number): ProcMemory | undefined => {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024
    const rss = kb("VmRSS")
    const hwm = kb("VmHWM")
    return Number.isFinite(rss) && Number.isFinite(hwm) ? { rss, hwm } : undefined
  } catch {
    return undefined
  }
}

/** Proportional set size (bytes) of a process (shared pages split among their users). */
export const procPss = (pid: number): number => {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/** Every descendant pid of `pid` (e.g. the embedded PostgreSQL cluster the agent started). */
export const descendants = (pid: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      const list = children.get(ppid) ?? []
      list.push(Number(entry))
      children.set(ppid, list)
    } catch {
      // gone meanwhile
    }
  }
  const out: Array<number> = []
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c)
      walk(c)
    }
  }
  walk(pid)
  return out
}

/** CPU time (user + system, ms) a process has used so far, from /proc/<pid>/stat. */
export const procCpuMs = (pid: number): number | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // fields 14 and 15 (utime, stime) are at index 11 and 12 after the comm field
    return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks
  } catch {
    return undefined
  }
}
const clockTicks = (() => {
  const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" })
  return Number(r.stdout?.trim()) || 100
})()

/** Samples VmRSS/VmHWM of a process every `everyMs` until stopped (the last reading before exit is kept). */
export class ProcSampler {
  peakRss = 0
  hwm = 0
  lastRss = 0
  /** CPU ms used, as of the last sample. */
  cpuMs = 0
  samples = 0
  private rssSum = 0
  private readonly timer: NodeJS.Timeout
  constructor(readonly pid: number, everyMs = 50) {
    this.timer = setInterval(() => this.sample(), everyMs)
    this.sample()
  }
  sample() {
    const m = procMemory(this.pid)
    if (!m) return
    this.peakRss = Math.max(this.peakRss, m.rss)
    this.hwm = Math.max(this.hwm, m.hwm)
    this.lastRss = m.rss
    this.cpuMs = procCpuMs(this.pid) ?? this.cpuMs
    this.rssSum += m.rss
    this.samples++
  }
  meanRss() {
    return this.samples === 0 ? 0 : this.rssSum / this.samples
  }
  /** Peak RSS: the kernel's high-water mark, or the highest sample if that is higher (it never is). */
  peak() {
    return Math.max(this.hwm, this.peakRss)
  }
  stop() {
    clearInterval(this.timer)
  }
}

// ---------------------------------------------------------------------------------------------
// The simulated GitLab in its own process (dist/sim-gitlab.mjs)

export interface SimStats {
  readonly total: number
  readonly byRoute: Readonly<Record<string, number>>
  readonly byStatus: Readonly<Record<string, number>>
  readonly log: ReadonlyArray<{ readonly at: number; readonly route: string; readonly path: string; readonly status: number }>
}

export interface Sim {
  readonly url: string
  readonly token: string
  readonly pid: number
  readonly latency: number
  readonly projects: number
  readonly mrsPerProject: number
  /** Top-level group ids of the sim's default layout (3 groups: 11, 12, 13). */
  readonly topGroups: ReadonlyArray<string>
  /** Projects that are not archived (the sim archives every 7th; the agent skips archived ones when listing groups). */
  readonly activeProjects: number
  readonly stats: () => Promise<SimStats>
  readonly stop: () => Promise<void>
}

export interface SimOptions {
  readonly projects: number
  readonly mrs: number
  readonly latency: number
  readonly seed?: number
  /** Request log entries the sim keeps (0 = counters only). */
  readonly logLimit?: number
}

export const startSim = (o: SimOptions): Promise<Sim> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [
      dist("sim-gitlab.mjs"),
      "--projects", String(o.projects), "--mrs", String(o.mrs), "--latency", String(o.latency),
      "--seed", String(o.seed ?? 1), "--log-limit", String(o.logLimit ?? 0)
    ], { stdio: ["ignore", "pipe", "inherit"] })
    child.once("error", reject)
    child.once("exit", (code) => reject(new Error(`sim-gitlab exited early (${code})`)))
    const lines = createInterface({ input: child.stdout! })
    lines.once("line", (line) => {
      const { token, url } = JSON.parse(line) as { url: string; token: string }
      child.removeAllListeners("exit")
      resolve({
        url,
        token,
        pid: child.pid!,
        latency: o.latency,
        projects: o.projects,
        mrsPerProject: o.mrs,
        topGroups: ["11", "12", "13"],
        activeProjects: o.projects - Math.floor(o.projects / 7),
        stats: async () => (await (await fetch(`${url}/__sim/stats`)).json()) as SimStats,
        stop: async () => {
          await stopChild(child)
        }
      })
    })
  })

export const stopChild = (child: ChildProcess, signal: NodeJS.Signals = "SIGTERM", timeoutMs = 15_000): Promise<number | null> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode)
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resolve(code)
    })
    child.kill(signal)
  })

/** Request counts between two readings of the sim's stats. */
export const statsDelta = (before: SimStats, after: SimStats) => {
  const byRoute: Record<string, number> = {}
  for (const [k, v] of Object.entries(after.byRoute)) {
    const d = v - (before.byRoute[k] ?? 0)
    if (d > 0) byRoute[k] = d
  }
  const non200 = Object.entries(after.byStatus).reduce((n, [k, v]) => (k === "200" ? n : n + v - (before.byStatus[k] ?? 0)), 0)
  return { total: after.total - before.total, byRoute, non200 }
}

// ---------------------------------------------------------------------------------------------
// Databases on the local PostgreSQL server (trust auth), via psql

export const serverUrl = process.env["MHQ_TEST_DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"

const psql = (sql: string) => {
  const r = spawnSync("psql", [serverUrl, "-qAtc", sql], { encoding: "utf8" })
  if (r.status !== 0) throw new Error(`psql failed (${sql}): ${r.stderr || r.error}`)
}

export interface ServerDatabase {
  readonly name: string
  readonly url: string
  readonly drop: () => void
}

export const freshServerDatabase = (label: string): ServerDatabase => {
  const name = `mhq_bench_${label}_${process.pid}_${Date.now().toString(36)}`
  psql(`CREATE DATABASE ${name}`)
  const u = new URL(serverUrl)
  u.pathname = `/${name}`
  return { name, url: u.toString(), drop: () => psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) }
}

export const tempDir = (prefix: string) => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

// ---------------------------------------------------------------------------------------------
// The product binary (dist/mhq-sync.mjs) as a user runs it: env config, its own cwd

export interface AgentEnv {
  readonly sim: Sim
  readonly concurrency: number
  /** DATABASE_URL; absent = embedded database in `<cwd>/data` (the default MHQ_DATA_DIR). */
  readonly databaseUrl?: string | undefined
  readonly extra?: Readonly<Record<string, string>>
}

/** Only what the agent needs: no MHQ_/GITLAB_/DATABASE_ variables leak in from the bench's environment. */
export const agentEnv = (e: AgentEnv): Record<string, string> => ({
  PATH: process.env["PATH"] ?? "/usr/bin:/bin",
  HOME: process.env["HOME"] ?? os.tmpdir(),
  GITLAB_DOMAIN_URL: e.sim.url,
  GITLAB_ACCESS_TOKEN: e.sim.token,
  GITLAB_GROUPS: e.sim.topGroups.join(","),
  // The request budget is lifted (the max the config accepts): the bench measures how well the
  // agent keeps its `concurrency` slots busy, not the politeness pacing.
  GITLAB_REQUESTS_PER_MINUTE: "100000",
  GITLAB_CONCURRENCY: String(e.concurrency),
  MHQ_HTTP_LISTEN: "off",
  MHQ_LOG_FORMAT: "json",
  ...(e.databaseUrl === undefined ? {} : { DATABASE_URL: e.databaseUrl }),
  ...e.extra
})

export interface AgentProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** Date.now() just before spawn. */
  readonly spawnedAt: number
  readonly sampler: ProcSampler
  readonly stdout: Array<string>
  /** Resolves with the exit code and the exit time (Date.now()). */
  readonly exited: Promise<{ readonly code: number | null; readonly at: number }>
  /** Resolves on the first stderr (log) line matching. */
  readonly waitForLog: (pattern: RegExp) => Promise<string>
}

/** V8 flags the product is launched with (the container's ENTRYPOINT and `npm start`). */
export const productNodeFlags = (process.env.MHQ_BENCH_NODE_FLAGS ?? "--max-old-space-size=128 --max-semi-space-size=4").split(" ").filter((f) => f !== "")

export const spawnAgent = (args: ReadonlyArray<string>, env: Record<string, string>, cwd: string): AgentProcess => {
  const spawnedAt = Date.now()
  const child = spawn(process.execPath, [...productNodeFlags, dist("mhq-sync.mjs"), ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
  const sampler = new ProcSampler(child.pid!, 50)
  const stdout: Array<string> = []
  const logTail: Array<string> = []
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = []
  createInterface({ input: child.stdout! }).on("line", (l) => stdout.push(l))
  createInterface({ input: child.stderr! }).on("line", (l) => {
    logTail.push(l)
    if (logTail.length > 50) logTail.shift()
    for (const w of [...waiters]) {
      if (w.pattern.test(l)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(l)
      }
    }
  })
  const exited = new Promise<{ code: number | null; at: number }>((resolve) => {
    child.once("exit", (code) => {
      const at = Date.now()
      sampler.stop()
      if (code !== 0) log(`mhq-sync ${args.join(" ")} exited ${code}; last log lines:\n${logTail.slice(-10).join("\n")}`)
      resolve({ code, at })
    })
  })
  return {
    child,
    pid: child.pid!,
    spawnedAt,
    sampler,
    stdout,
    exited,
    waitForLog: (pattern) => new Promise((resolve) => waiters.push({ pattern, resolve }))
  }
}

/** Sums "N new, M changed" over the `fetch` command's per-project lines. */
export const stagedFromFetchOutput = (lines: ReadonlyArray<string>) => {
  let inserted = 0, updated = 0, unchanged = 0, projects = 0, notOk = 0
  for (const l of lines) {
    const m = /^fetched .*: (\w+) — (\d+) new, (\d+) changed, (\d+) unchanged/.exec(l)
    if (!m) continue
    projects++
    if (m[1] !== "ok") notOk++
    inserted += Number(m[2])
    updated += Number(m[3])
    unchanged += Number(m[4])
  }
  return { inserted, updated, unchanged, projects, notOk }
}

// ---------------------------------------------------------------------------------------------
// Output

export const printTable = (title: string, rows: ReadonlyArray<Record<string, string | number>>) => {
  console.log(`\n${title}`)
  if (rows.length === 0) return
  const headers = [...new Set(rows.flatMap((r) => Object.keys(r)))]
  const widths = headers.map((h) => Math.max(h.length, ...rows.map((r) => String(r[h] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  console.log(line(headers))
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`)
  for (const r of rows) console.log(line(headers.map((h) => String(r[h] ?? ""))))
}
