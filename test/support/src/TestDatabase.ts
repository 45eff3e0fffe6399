/**
 * Real databases for tests: a fresh database on the PostgreSQL server (MHQ_TEST_DATABASE_URL,
 * default the local trust-auth server) or an embedded cluster in a temporary directory. Both are
 * removed when the layer's scope closes.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { PgClient } from "@effect/sql-pg"
import { Database, Staging } from "@mhq-sync/core"
import { Effect, Layer, Redacted } from "effect"
import { Reactivity } from "effect/reactivity"

export const serverUrl = process.env.MHQ_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

const withDatabase = (name: string) => {
  const u = new URL(serverUrl)
  u.pathname = `/${name}`
  return u.toString()
}

/** Runs statements on the server's maintenance database (CREATE/DROP DATABASE cannot run in a transaction). */
const admin = (statement: string) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* PgClient.make({ url: Redacted.make(serverUrl), maxConnections: 1 })
    yield* client.unsafe(statement)
  })).pipe(Effect.provide(Reactivity.layer), Effect.orDie)

/** A new database on the server; its URL. Dropped (even with open connections) on scope close. */
export const freshServerDatabase = Effect.acquireRelease(
  Effect.gen(function*() {
    const name = `mhq_test_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
    yield* admin(`CREATE DATABASE ${name}`)
    return { name, url: withDatabase(name) }
  }),
  ({ name }) => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
)

/** A temporary directory removed on scope close. */
export const tempDir = (prefix = "mhq-test-") =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

export type Backend = "server" | "embedded"
export const backends: ReadonlyArray<Backend> = ["server", "embedded"]

/** SqlClient + PgClient + DatabaseInfo for a fresh database on the chosen backend. */
export const database = (backend: Backend, options: { readonly maxConnections?: number } = {}) =>
  Layer.unwrap(
    backend === "server"
      ? Effect.map(freshServerDatabase, ({ url }) =>
        Database.layer({ url: Redacted.make(url), dataDir: "", maxConnections: options.maxConnections }))
      : Effect.map(tempDir("mhq-embedded-"), (dir) =>
        Database.layer({ dataDir: dir, maxConnections: options.maxConnections }))
  )

/** Staging (migrated) over a fresh database, with the database services too. */
export const staging = (backend: Backend, options: { readonly maxConnections?: number } = {}) =>
  Staging.layer.pipe(Layer.provideMerge(database(backend, options)))
