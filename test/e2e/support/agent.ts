/**
 * Spawning the real `mhq-sync` process: a working directory with its own `.env` (the older agent's
 * drop-in layout plus our variables), every line of stdout/stderr captured for the leak check, and
 * a registry of children so a failed test never leaves one behind.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { bin } from "./build.ts"

export interface CapturedLine {
  readonly agent: string
  readonly stream: "stdout" | "stderr"
  readonly at: number
  readonly text: string
}

/** Every line any agent of this test file printed (scenario 7 scans them all). */
export const captured: Array<CapturedLine> = []

const live = new Set<Agent>()
/** Every workspace of this test file (scenario 7 also checks their database passwords). */
export const workspaces: Array<Workspace> = []
const dirs: Array<string> = []

export const tempDir = (prefix: string): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  dirs.push(dir)
  return dir
}

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export class Agent {
  readonly lines: Array<CapturedLine> = []
  readonly exited: Promise<Exit>
  exit: Exit | undefined
  private readonly child: ChildProcess
  private readonly partial = { stdout: "", stderr: "" }

  constructor(readonly name: string, readonly args: ReadonlyArray<string>, cwd: string, env: Record<string, string>) {
    this.child = spawn(process.execPath, [bin, ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
    live.add(this)
    for (const stream of ["stdout", "stderr"] as const) {
      this.child[stream]!.setEncoding("utf8")
      this.child[stream]!.on("data", (chunk: string) => this.onData(stream, chunk))
    }
    this.exited = new Promise<Exit>((resolve) => {
      this.child.once("exit", (code, signal) => {
        for (const stream of ["stdout", "stderr"] as const) if (this.partial[stream] !== "") this.push(stream, this.partial[stream])
        this.exit = { code, signal }
        live.delete(this)
        resolve(this.exit)
      })
    })
  }

  get pid(): number {
    return this.child.pid!
  }

  private onData(stream: "stdout" | "stderr", chunk: string) {
    const parts = (this.partial[stream] + chunk).split("\n")
    this.partial[stream] = parts.pop()!
    for (const line of parts) this.push(stream, line)
  }

  private push(stream: "stdout" | "stderr", text: string) {
    const line: CapturedLine = { agent: this.name, stream, at: Date.now(), text }
    this.lines.push(line)
    captured.push(line)
    this.parse(line)
  }

  get stdout(): string {
    return this.lines.filter((l) => l.stream === "stdout").map((l) => l.text).join("\n")
  }

  get output(): string {
    return this.lines.map((l) => `[${l.stream}] ${l.text}`).join("\n")
  }

  /** JSON log lines (stderr), parsed once as they arrive; other lines skipped. */
  readonly logs: Array<{ readonly message: unknown; readonly level?: string; readonly timestamp?: string; readonly [k: string]: unknown }> = []
  /** Log messages as text (JSON logs carry the message as a string or an array of parts). */
  readonly messages: Array<string> = []

  private parse(line: CapturedLine) {
    if (line.stream !== "stderr" || !line.text.startsWith("{")) return
    try {
      const log = JSON.parse(line.text) as { message: unknown }
      this.logs.push(log)
      this.messages.push(Array.isArray(log.message) ? log.message.map(String).join(" ") : String(log.message))
    } catch {}
  }

  kill(signal: NodeJS.Signals): void {
    if (this.exit === undefined) this.child.kill(signal)
  }

  /** Resolves with the exit; on timeout kills the process and rejects with its output. */
  async wait(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.kill("SIGKILL")
        reject(new Error(`mhq-sync ${this.args.join(" ")} (${this.name}) still running after ${timeoutMs} ms\n${this.output.slice(-4000)}`))
      }, timeoutMs)
    })
    try {
      return await Promise.race([this.exited, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Resolves once a captured line satisfies `predicate`; rejects on exit or timeout. */
  waitForLine(predicate: (line: string) => boolean, timeoutMs: number): Promise<void> {
    let checked = 0
    return this.waitUntil(() => {
      for (; checked < this.lines.length; checked++) if (predicate(this.lines[checked]!.text)) return true
      return false
    }, timeoutMs)
  }

  /** Resolves once a log message satisfies `predicate`; rejects on exit or timeout. */
  waitForMessage(predicate: (message: string) => boolean, timeoutMs: number): Promise<void> {
    let checked = 0
    return this.waitUntil(() => {
      for (; checked < this.messages.length; checked++) if (predicate(this.messages[checked]!)) return true
      return false
    }, timeoutMs)
  }

  /** Resolves once `condition` holds (polled every 25 ms); rejects on exit or timeout. */
  waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const deadline = Date.now() + timeoutMs
      const tick = () => {
        if (condition()) return resolve()
        if (this.exit !== undefined) return reject(new Error(`${this.name} exited (${JSON.stringify(this.exit)}) before the expected condition\n${this.output.slice(-4000)}`))
        if (Date.now() > deadline) return reject(new Error(`${this.name}: condition not met within ${timeoutMs} ms\n${this.output.slice(-4000)}`))
        setTimeout(tick, 25)
      }
      tick()
    })
  }
}

/** Single-quoted .env value, as the older agent's files have them. */
const dotenvValue = (v: string) => `'${v.replace(/'/g, "")}'`

export class Workspace {
  readonly cwd: string
  private seq = 0

  /** `env` goes to `.env` (secrets included, like the older agent's layout); `processEnv` to the process. */
  constructor(readonly name: string, env: Record<string, string>, readonly processEnv: Record<string, string> = {}) {
    this.cwd = tempDir(`mhq-e2e-${name}-`)
    // The embedded PostgreSQL runs as an unprivileged user when the tests run as root: it must be
    // able to reach ./data (the .env itself stays 0600).
    fs.chmodSync(this.cwd, 0o711)
    workspaces.push(this)
    fs.writeFileSync(path.join(this.cwd, ".env"), Object.entries(env).map(([k, v]) => `${k}=${dotenvValue(v)}`).join("\n") + "\n", { mode: 0o600 })
  }

  /** The embedded cluster's password (kept in the data directory), once it exists. */
  get databasePassword(): string | undefined {
    const file = path.join(this.cwd, "data", "pg-password")
    return fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim() : undefined
  }

  /** Starts `mhq-sync <args>` in this workspace. */
  spawn(args: ReadonlyArray<string>, env: Record<string, string> = {}): Agent {
    return new Agent(`${this.name}#${++this.seq} ${args[0] ?? ""}`, args, this.cwd, {
      // Nothing inherited but PATH: no proxy variables, no stray DATABASE_URL.
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: this.cwd,
      MHQ_LOG_FORMAT: "json",
      MHQ_HTTP_LISTEN: "off",
      ...this.processEnv,
      ...env
    })
  }

  /** Runs a command to completion. */
  async run(args: ReadonlyArray<string>, options: { readonly env?: Record<string, string>; readonly timeoutMs?: number } = {}) {
    const agent = this.spawn(args, options.env)
    const exit = await agent.wait(options.timeoutMs ?? 90_000)
    return { agent, exit }
  }

  async statusJson(env: Record<string, string> = {}): Promise<StatusReport> {
    const { agent, exit } = await this.run(["status", "--json"], { env })
    if (exit.code !== 0) throw new Error(`status --json exited ${exit.code}\n${agent.output}`)
    return JSON.parse(agent.stdout) as StatusReport
  }
}

export interface StatusReport {
  readonly batches: { readonly pending: number; readonly failed: number; readonly delivered: number; readonly split: number }
  readonly undelivered: number
  readonly quarantined: number
  readonly projects: ReadonlyArray<{
    readonly projectId: number
    readonly projectPath: string
    readonly quarantined: number
    readonly unbatched: number
    readonly records: Readonly<Record<string, number>>
    readonly lastRun: { readonly status: string; readonly warnings: ReadonlyArray<string>; readonly errors: ReadonlyArray<string> } | null
  }>
  readonly failedBatches: ReadonlyArray<unknown>
  readonly lastError: string | null
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * An agent killed with -9 leaves its embedded postgres running (its own process group): stop the
 * one recorded in this data directory, by the pid it wrote there.
 */
export const stopEmbeddedPostgres = async (dataDir: string): Promise<void> => {
  const candidates: Array<string> = []
  const walk = (dir: string, depth: number) => {
    if (depth > 2 || !fs.existsSync(dir)) return
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.isFile() && e.name === "postmaster.pid") candidates.push(path.join(dir, e.name))
      else if (e.isDirectory()) walk(path.join(dir, e.name), depth + 1)
    }
  }
  walk(dataDir, 0)
  for (const file of candidates) {
    const pid = Number(fs.readFileSync(file, "utf8").split("\n")[0])
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) continue
    process.kill(pid, "SIGINT")
    const deadline = Date.now() + 10_000
    while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    if (isAlive(pid)) process.kill(pid, "SIGKILL")
  }
}

/** Kills every agent still running (by pid), stops embedded clusters left in our dirs, removes the dirs. */
export const cleanup = async (): Promise<void> => {
  for (const agent of [...live]) {
    agent.kill("SIGKILL")
    await agent.exited
  }
  for (const dir of dirs.splice(0)) {
    await stopEmbeddedPostgres(dir).catch(() => undefined)
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Kills agents still running (between tests). */
export const killLive = async (): Promise<void> => {
  for (const agent of [...live]) {
    agent.kill("SIGKILL")
    await agent.exited
  }
}
