import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Database, Staging } from "@mhq-sync/core"
import { TestDatabase } from "@mhq-sync/testkit"
import { Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"

const stagingIn = (dataDir: string) => Staging.layer.pipe(Layer.provideMerge(Database.layer({ dataDir })))

const record = (key: string) => ({
  instance: "https://gl.example", kind: "project", projectId: 7, projectPath: "g/p", key,
  updatedAt: "2026-11-01T00:00:00Z", data: { key }
})

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("EmbeddedPostgres", () => {
  it.live("listens on 127.0.0.1 only, is reused across restarts and stops cleanly", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* TestDatabase.tempDir()
      const firstPid = yield* Effect.scoped(Effect.gen(function*() {
        const staging = yield* Staging.Staging
        const sql = yield* SqlClient.SqlClient
        const info = yield* Database.DatabaseInfo
        assert.strictEqual(info.backend, "embedded")
        const [listen] = yield* sql<{ listen_addresses: string }>`SHOW listen_addresses`
        assert.strictEqual(listen!.listen_addresses, "127.0.0.1")
        const [socket] = yield* sql<{ unix_socket_directories: string }>`SHOW unix_socket_directories`
        assert.strictEqual(socket!.unix_socket_directories, "")
        yield* staging.stage({ records: [record("a")], cursors: [{ instance: "https://gl.example", projectId: 7, kind: "project", value: "v1" }] })
        const pid = Number(fs.readFileSync(path.join(dir, "pg", "postmaster.pid"), "utf8").split("\n")[0])
        assert.isTrue(isAlive(pid))
        return pid
      }).pipe(Effect.provide(stagingIn(dir))))
      // Scope closed: the server is stopped and the lock released.
      assert.isFalse(isAlive(firstPid))
      assert.isFalse(fs.existsSync(path.join(dir, "agent.lock")))

      const again = yield* Effect.scoped(Effect.gen(function*() {
        const staging = yield* Staging.Staging
        return {
          summary: yield* staging.summary,
          cursor: yield* staging.cursor({ instance: "https://gl.example", projectId: 7, kind: "project" })
        }
      }).pipe(Effect.provide(stagingIn(dir))))
      assert.deepStrictEqual(again.summary.recordsByKind, { project: 1 })
      assert.strictEqual(Option.getOrThrow(again.cursor).value, "v1")
    })), 120_000)

  it.live("refuses a data directory held by another running agent", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* TestDatabase.tempDir()
      const other = spawn("sleep", ["30"], { stdio: "ignore" })
      yield* Effect.addFinalizer(() => Effect.sync(() => other.kill("SIGKILL")))
      fs.writeFileSync(path.join(dir, "agent.lock"), `${other.pid}\n`)
      const error = yield* Effect.flip(Effect.scoped(Layer.build(stagingIn(dir))))
      assert.strictEqual(error._tag, "EmbeddedPostgresError")
      assert.include(error.message, `in use by another running mhq-sync (pid ${other.pid})`)
    })), 60_000)

  it.live("a data directory that cannot be created fails clearly", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* TestDatabase.tempDir()
      const file = path.join(dir, "a-file")
      fs.writeFileSync(file, "not a directory")
      const error = yield* Effect.flip(Effect.scoped(Layer.build(stagingIn(path.join(file, "data")))))
      assert.strictEqual(error._tag, "EmbeddedPostgresError")
      assert.match(error.message, /data directory .*a-file\/data is not writable: .*Set MHQ_DATA_DIR/)
    })), 60_000)

  it.live("recovers after the agent was killed with -9 (orphaned server, stale lock)", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* TestDatabase.tempDir()
      const script = new URL("./fixtures/stage-and-wait.ts", import.meta.url).pathname
      const child = spawn(process.execPath, ["--import", "tsx", script, dir], { cwd: process.cwd(), stdio: ["ignore", "pipe", "inherit"] })
      yield* Effect.promise(() =>
        new Promise<void>((resolve, reject) => {
          child.stdout.on("data", (d: Buffer) => d.toString().includes("READY") && resolve())
          child.once("exit", (code) => reject(new Error(`child exited ${code}`)))
        })
      )
      const orphan = Number(fs.readFileSync(path.join(dir, "pg", "postmaster.pid"), "utf8").split("\n")[0])
      child.kill("SIGKILL")
      yield* Effect.promise(() => new Promise((r) => child.once("exit", r)))
      assert.isTrue(isAlive(orphan)) // postgres survived its agent

      const summary = yield* Effect.scoped(Effect.gen(function*() {
        const staging = yield* Staging.Staging
        yield* staging.stage({ records: [record("after-restart")] })
        return yield* staging.summary
      }).pipe(Effect.provide(stagingIn(dir))))
      assert.deepStrictEqual(summary.recordsByKind, { project: 2 })
      assert.isFalse(isAlive(orphan))
    })), 120_000)
})
