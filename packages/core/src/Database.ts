/**
 * One code path, two backends: `DATABASE_URL` set -> that PostgreSQL server; unset -> the embedded
 * PostgreSQL in the data directory. Either way the rest of the agent sees one `SqlClient`.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Data, Duration, Effect, Layer, Option, Redacted } from "effect"
import type { SqlClient } from "effect/sql"
import * as EmbeddedPostgres from "./EmbeddedPostgres.ts"

export interface Info {
  readonly backend: "embedded" | "server"
  /** host:port/database, never the password: safe for logs, status and heartbeats. */
  readonly target: string
}
export class DatabaseInfo extends Context.Service<DatabaseInfo, Info>()("@mhq-sync/core/DatabaseInfo") {}

export class DatabaseError extends Data.TaggedError("DatabaseError")<{ readonly message: string }> {}

export interface Options {
  /** postgres://user:password@host:port/database (DATABASE_URL); absent -> embedded. */
  readonly url?: Redacted.Redacted<string> | undefined
  /** Where the embedded cluster lives (MHQ_DATA_DIR, default ./data). */
  readonly dataDir: string
  readonly maxConnections?: number | undefined
  readonly applicationName?: string | undefined
  readonly connectTimeout?: Duration.Input | undefined
}

interface Target {
  readonly host: string
  readonly port: number
  readonly database: string
  readonly describe: string
}

const parseUrl = (url: Redacted.Redacted<string>): Effect.Effect<Target, DatabaseError> =>
  Effect.try({
    try: () => {
      const u = new URL(Redacted.value(url))
      if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") {
        throw new Error(`scheme must be postgres:// or postgresql://, not ${u.protocol}//`)
      }
      const host = decodeURIComponent(u.hostname) || "localhost"
      const port = u.port ? Number(u.port) : 5432
      const database = decodeURIComponent(u.pathname.replace(/^\//, "")) || decodeURIComponent(u.username) || "postgres"
      return { host, port, database, describe: `${host}:${port}/${database}` }
    },
    catch: (e) =>
      new DatabaseError({
        message: `DATABASE_URL is not a valid PostgreSQL URL (${(e as Error).message}); ` +
          `expected postgres://user:password@host:5432/database`
      })
  })

const scrub = (text: string, secret: string | undefined) =>
  secret && secret.length > 0 ? text.split(secret).join("***") : text

const reason = (e: unknown): string => {
  const err = e as { message?: string; cause?: { message?: string; cause?: { message?: string } } }
  const parts = [err.cause?.cause?.message, err.cause?.message, err.message].filter((m): m is string => !!m)
  return parts[0] ?? String(e)
}

/** The pool, verified with a first query so a wrong URL fails at start, in one line naming host and database. */
const clientLayer = (config: PgClient.PgPoolConfig, target: Target, info: Info, secret: string | undefined, options: Options) => {
  const toError = (e: unknown) =>
    new DatabaseError({
      message: scrub(
        `cannot connect to PostgreSQL at ${target.host}:${target.port}, database "${target.database}"` +
          `${info.backend === "server" ? " (DATABASE_URL)" : " (embedded)"}: ${reason(e)}`,
        secret
      )
    })
  const timeout = options.connectTimeout ?? "15 seconds"
  const acquire = Effect.gen(function*() {
    const client = yield* PgClient.make(config).pipe(Effect.mapError(toError))
    yield* client`SELECT 1`.pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () => Effect.fail(new Error(`no answer within ${Duration.format(Duration.fromInputUnsafe(timeout))}`))
      }),
      Effect.mapError(toError)
    )
    return client
  })
  return Layer.merge(PgClient.layerFrom(acquire), Layer.succeed(DatabaseInfo, DatabaseInfo.of(info)))
}

export const layer = (
  options: Options
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient | DatabaseInfo, DatabaseError | EmbeddedPostgres.EmbeddedPostgresError> => {
  const common = {
    maxConnections: options.maxConnections ?? 8,
    applicationName: options.applicationName ?? "mhq-sync",
    connectTimeout: options.connectTimeout ?? "15 seconds",
    idleTimeout: "60 seconds" as Duration.Input
  }
  return Option.match(Option.fromNullishOr(options.url), {
    onSome: (url) =>
      Layer.unwrap(Effect.map(parseUrl(url), (target) => {
        const raw = new URL(Redacted.value(url)).password
        let password = raw
        try {
          password = decodeURIComponent(raw)
        } catch { /* a stray % in the password: scrub it as written */ }
        return clientLayer({ ...common, url }, target, { backend: "server", target: target.describe }, password, options)
      })),
    onNone: () =>
      Layer.unwrap(Effect.map(EmbeddedPostgres.make({ dataDir: options.dataDir }), (conn) => {
        const target = { host: conn.host, port: conn.port, database: conn.database, describe: `embedded ${conn.dataDir}` }
        return clientLayer(
          { ...common, host: conn.host, port: conn.port, database: conn.database, username: conn.username, password: conn.password },
          target,
          { backend: "embedded", target: target.describe },
          Redacted.value(conn.password),
          options
        )
      }))
  })
}
