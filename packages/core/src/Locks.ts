/**
 * Session-level Postgres advisory locks on a dedicated connection: held while an effect runs,
 * released when it ends or when the process dies (the server drops the session). Used so two
 * agents on one database never run a cycle at the same time.
 */
import { Data, Duration, Effect, Option } from "effect"
import { SqlClient, type SqlError } from "effect/sql"

export class LockTimeout extends Data.TaggedError("LockTimeout")<{ readonly name: string; readonly waited: Duration.Duration }> {
  override get message() {
    return `another mhq-sync holds the "${this.name}" lock on this database (waited ${Duration.format(this.waited)})`
  }
}

/**
 * Runs `effect` while holding the named lock. Waits (polling, interruptibly) up to `wait`;
 * `Option.none()` = do not wait.
 */
export const withLock = (name: string, options: { readonly wait: Option.Option<Duration.Input>; readonly poll?: Duration.Input } = { wait: Option.none() }) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | LockTimeout | SqlError.SqlError, R | SqlClient.SqlClient> =>
  Effect.scoped(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const conn = yield* sql.reserve
    const started = Date.now()
    const limit = Option.map(options.wait, (w) => Duration.toMillis(Duration.fromInputUnsafe(w)))
    for (;;) {
      const rows = yield* conn.execute("SELECT pg_try_advisory_lock(hashtext($1)) AS ok", [`mhq-sync:${name}`], undefined)
      if ((rows[0] as { ok: boolean } | undefined)?.ok) break
      const waited = Date.now() - started
      if (Option.isNone(limit) || waited >= limit.value) {
        return yield* new LockTimeout({ name, waited: Duration.millis(waited) })
      }
      yield* Effect.sleep(options.poll ?? "1 second")
    }
    yield* Effect.addFinalizer(() =>
      conn.execute("SELECT pg_advisory_unlock(hashtext($1))", [`mhq-sync:${name}`], undefined).pipe(Effect.ignore)
    )
    return yield* effect
  }))
