/**
 * The e2e suites spawn the bundle users run (`dist/mhq-sync.mjs`). Build it once when it is missing
 * or older than the sources; a lock directory keeps parallel test files from building at once.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

export const repo = path.resolve(import.meta.dirname, "../../..")
export const bin = path.join(repo, "dist", "mhq-sync.mjs")

const newest = (dir: string): number =>
  fs.readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
    if (e.name === "node_modules" || e.name === "test") return m
    const p = path.join(dir, e.name)
    return Math.max(m, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs)
  }, 0)

const stale = () => {
  if (!fs.existsSync(bin)) return true
  const sources = Math.max(newest(path.join(repo, "packages")), newest(path.join(repo, "test/support/src")))
  return fs.statSync(bin).mtimeMs < sources
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Built (or found fresh) once per test run: a later rebuild could swap the file under a running agent. */
const marker = path.join(os.tmpdir(), `mhq-sync-e2e-built-${process.ppid}`)

/** A marker from this run (a stale one, from an earlier run with the same parent pid, is ignored). */
const marked = () => fs.existsSync(marker) && Date.now() - fs.statSync(marker).mtimeMs < 15 * 60_000

export const ensureBuilt = async (): Promise<void> => {
  if (marked() && fs.existsSync(bin)) return
  if (!stale()) return void fs.writeFileSync(marker, "")
  const lock = path.join(os.tmpdir(), "mhq-sync-e2e-build.lock")
  const deadline = Date.now() + 60_000
  for (;;) {
    try {
      fs.mkdirSync(lock)
      break
    } catch {
      // Another test file is building; a lock older than a minute is left over from a crash.
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 60_000) fs.rmSync(lock, { recursive: true, force: true })
      } catch {}
      if (Date.now() > deadline) throw new Error(`build lock ${lock} held for over a minute`)
      await sleep(200)
    }
  }
  try {
    if (marked() || !stale()) return
    const result = spawnSync(process.execPath, [path.join(repo, "scripts/build.mjs")], { cwd: repo, encoding: "utf8" })
    if (result.status !== 0) throw new Error(`build failed: ${result.stderr}`)
    fs.writeFileSync(marker, "")
  } finally {
    fs.rmSync(lock, { recursive: true, force: true })
  }
}
