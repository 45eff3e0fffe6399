/**
 * Versioned schema of the staging database. Append only: never edit a released migration, add the
 * next id. The code refuses a database whose schema is newer than it knows (a downgrade would
 * silently mis-read data).
 */
import { Data, Effect } from "effect"
import { Migrator, SqlClient } from "effect/sql"

export const table = "mhq_migrations"

const migrations: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {
  "0001_staging": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE records (
      instance text NOT NULL,
      kind text NOT NULL,
      project_id bigint NOT NULL,
      project_path text NOT NULL,
      key text NOT NULL,
      updated_at timestamptz NOT NULL,
      -- json, not jsonb: the canonical text is kept byte for byte and costs no conversion
      data json NOT NULL,
      size integer NOT NULL,
      hash text NOT NULL,
      batched_hash text,
      first_staged_at timestamptz NOT NULL DEFAULT now(),
      staged_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (instance, kind, project_id, key))`
    // The outbox scan: only rows whose current content has not been put in a batch yet.
    yield* sql`CREATE INDEX records_unbatched ON records (instance, kind, staged_at)
      WHERE batched_hash IS DISTINCT FROM hash`
    yield* sql`CREATE TABLE cursors (
      instance text NOT NULL,
      project_id bigint NOT NULL,
      kind text NOT NULL,
      value text NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (instance, project_id, kind))`
    yield* sql`CREATE TABLE batches (
      id uuid PRIMARY KEY,
      instance text NOT NULL,
      kind text NOT NULL,
      status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'split')),
      record_count integer NOT NULL,
      byte_size integer NOT NULL,
      attempts integer NOT NULL DEFAULT 0,
      last_error text,
      replay boolean NOT NULL DEFAULT false,
      parent_id uuid REFERENCES batches (id),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      first_attempt_at timestamptz,
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      delivered_at timestamptz,
      claimed_by text,
      claimed_until timestamptz,
      -- the claimer holds a session lock (Staging.registerOwner): the claim ends with its process
      claim_locked boolean NOT NULL DEFAULT false)`
    yield* sql`CREATE INDEX batches_claimable ON batches (next_attempt_at) WHERE status = 'pending'`
    yield* sql`CREATE INDEX batches_status ON batches (status, created_at)`
    // A batch keeps a snapshot of its records so a replay sends exactly what was sent.
    yield* sql`CREATE TABLE batch_items (
      batch_id uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
      seq integer NOT NULL,
      instance text NOT NULL,
      kind text NOT NULL,
      project_id bigint NOT NULL,
      project_path text NOT NULL,
      key text NOT NULL,
      updated_at timestamptz NOT NULL,
      data json NOT NULL,
      hash text NOT NULL,
      PRIMARY KEY (batch_id, seq))`
    yield* sql`CREATE TABLE runs (
      id bigserial PRIMARY KEY,
      cycle_id text NOT NULL,
      instance text NOT NULL,
      project_id bigint,
      project_path text,
      status text NOT NULL CHECK (status IN ('running', 'ok', 'partial', 'failed')),
      started_at timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz,
      counts jsonb NOT NULL DEFAULT '{}',
      warnings jsonb NOT NULL DEFAULT '[]',
      errors jsonb NOT NULL DEFAULT '[]')`
    yield* sql`CREATE INDEX runs_scope ON runs (instance, project_id, started_at DESC)`
    yield* sql`CREATE TABLE quarantine (
      id bigserial PRIMARY KEY,
      instance text NOT NULL,
      kind text NOT NULL,
      project_id bigint,
      project_path text,
      origin text NOT NULL,
      raw text NOT NULL,
      error text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now())`
    // Remote commands (received with heartbeat answers): each id runs at most once.
    yield* sql`CREATE TABLE commands (
      id text PRIMARY KEY,
      command text NOT NULL,
      parameters jsonb NOT NULL DEFAULT '{}',
      status text NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed', 'ignored')),
      outcome jsonb,
      received_at timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz,
      reported_at timestamptz)`
    yield* sql`CREATE TABLE agent_state (
      key text PRIMARY KEY,
      value jsonb NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now())`
  })
}

export const loader = Migrator.fromRecord(migrations)
export const latest: number = Math.max(...Object.keys(migrations).map((k) => Number.parseInt(k, 10)))

export class SchemaTooNew extends Data.TaggedError("SchemaTooNew")<{
  readonly databaseVersion: number
  readonly codeVersion: number
}> {
  override get message() {
    return `the staging database schema is version ${this.databaseVersion}, newer than this mhq-sync ` +
      `knows (${this.codeVersion}): it was written by a newer release. Upgrade mhq-sync, or point it at ` +
      `another database / data directory.`
  }
}

/** Applies pending migrations (a no-op when none); refuses a schema newer than the code. */
export const run = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const exists = yield* sql<{ t: string | null }>`SELECT to_regclass(${table})::text AS t`
  if (exists[0]?.t) {
    const rows = yield* sql<{ v: number | null }>`SELECT max(migration_id)::int AS v FROM ${sql(table)}`
    const v = rows[0]?.v ?? 0
    if (v > latest) return yield* new SchemaTooNew({ databaseVersion: v, codeVersion: latest })
  }
  return yield* Migrator.make({})({ loader, table })
})
