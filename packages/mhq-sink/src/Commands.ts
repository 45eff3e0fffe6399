/**
 * Remote commands received with heartbeat answers. Each is stored in the `commands` table before
 * anything runs (id is the primary key, so a command repeated by later answers is stored once and
 * runs at most once, across restarts too), executed by a pluggable executor, and its outcome is
 * reported by the next heartbeat, after which it is marked reported.
 */
import { Staging } from "@mhq-sync/core"
import { Context, Data, Effect, Layer, Schema } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import * as Delivery from "./Delivery.ts"
import * as SinkConfig from "./SinkConfig.ts"
import * as WireProtocol from "./WireProtocol.ts"

export interface StoredCommand {
  readonly id: string
  readonly command: string
  readonly parameters: Schema.Json
  readonly status: WireProtocol.CommandStatus
  readonly outcome: Schema.Json | null
  readonly receivedAt: Date
  readonly finishedAt: Date | null
  readonly reportedAt: Date | null
}

/** A command's executor failed; the message becomes the reported outcome. */
export class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly message: string }> {}

/** Runs one command; the success value is the reported outcome. */
export type Executor = (command: StoredCommand) => Effect.Effect<Schema.Json, unknown>
export interface Executors {
  readonly [command: string]: Executor
}

export interface ReceiveResult {
  readonly stored: number
  readonly duplicates: number
  readonly ignored: number
  readonly invalid: number
}

export interface Service {
  /** Stores commands from a heartbeat answer (unknown names and a disabled setting -> ignored). */
  readonly receive: (commands: ReadonlyArray<unknown>) => Effect.Effect<ReceiveResult, Staging.StagingError>
  /** Runs every pending command once, in arrival order; returns how many ran. */
  readonly runPending: Effect.Effect<number, Staging.StagingError>
  /** Finished commands not yet reported by a heartbeat. */
  readonly unreported: Effect.Effect<ReadonlyArray<WireProtocol.CommandResult>, Staging.StagingError>
  readonly markReported: (ids: ReadonlyArray<string>) => Effect.Effect<void, Staging.StagingError>
  readonly list: Effect.Effect<ReadonlyArray<StoredCommand>, Staging.StagingError>
}

export class Commands extends Context.Service<Commands, Service>()("@mhq-sync/mhq-sink/Commands") {}

const ProjectScope = Schema.Struct({
  project_id: Schema.Int,
  instance: Schema.optionalKey(Schema.String)
})
const CursorScope = Schema.Struct({
  project_id: Schema.optionalKey(Schema.Int),
  kind: Schema.optionalKey(Schema.String),
  instance: Schema.optionalKey(Schema.String)
})
const ReplayBatch = Schema.Struct({ batch_id: Schema.String.pipe(Schema.check(Schema.isUUID())) })
const ReplaySince = Schema.Struct({ since: Schema.String, kind: Schema.optionalKey(Schema.String) })

const parameters = <S extends Schema.Codec<any, any, never, never>>(schema: S, command: StoredCommand) =>
  Schema.decodeUnknownEffect(schema)(command.parameters ?? {}).pipe(
    Effect.mapError((e) => new CommandFailed({ message: `invalid parameters for ${command.command}: ${e.message.split("\n").join(" ")}` }))
  )

const reportOf = (r: Delivery.Report): Schema.Json => ({ ...r })

/** Built-in executors: cursors via Staging, replays via Delivery. Runners may override or add. */
export const defaultExecutors = Effect.gen(function*() {
  const staging = yield* Staging.Staging
  const delivery = yield* Delivery.Delivery
  const executors: Executors = {
    // The runner's next fetch re-pulls the project from the backfill window.
    resync_project: (c) =>
      Effect.gen(function*() {
        const p = yield* parameters(ProjectScope, c)
        const reset = yield* staging.resetCursors({ projectId: p.project_id, ...(p.instance === undefined ? {} : { instance: p.instance }) })
        return { cursors_reset: reset, project_id: p.project_id }
      }),
    reset_cursor: (c) =>
      Effect.gen(function*() {
        const p = yield* parameters(CursorScope, c)
        const reset = yield* staging.resetCursors({
          ...(p.project_id === undefined ? {} : { projectId: p.project_id }),
          ...(p.kind === undefined ? {} : { kind: p.kind }),
          ...(p.instance === undefined ? {} : { instance: p.instance })
        })
        return { cursors_reset: reset }
      }),
    replay_batch: (c) =>
      Effect.gen(function*() {
        const p = yield* parameters(ReplayBatch, c)
        return reportOf(yield* delivery.replayBatch(p.batch_id))
      }),
    replay_since: (c) =>
      Effect.gen(function*() {
        const p = yield* parameters(ReplaySince, c)
        const since = new Date(p.since)
        if (Number.isNaN(since.getTime())) return yield* new CommandFailed({ message: "since is not an ISO-8601 time" })
        return reportOf(yield* delivery.replaySince(since, { kind: p.kind }))
      })
  }
  return executors
})

type Row = {
  readonly id: string
  readonly command: string
  readonly parameters: Schema.Json
  readonly status: WireProtocol.CommandStatus
  readonly outcome: Schema.Json | null
  readonly received_at: Date
  readonly finished_at: Date | null
  readonly reported_at: Date | null
}
const toStored = (r: Row): StoredCommand => ({
  id: r.id,
  command: r.command,
  parameters: r.parameters,
  status: r.status,
  outcome: r.outcome,
  receivedAt: r.received_at,
  finishedAt: r.finished_at,
  reportedAt: r.reported_at
})

const describeError = (e: unknown): string => {
  if (typeof e === "object" && e !== null && typeof (e as { message?: unknown }).message === "string") {
    const tag = (e as { _tag?: unknown })._tag
    return `${typeof tag === "string" && tag !== "CommandFailed" ? `${tag}: ` : ""}${(e as { message: string }).message}`
  }
  return String(e)
}

export interface Options {
  /** Executors by command name; only these names are accepted (default: none). */
  readonly executors: Executors
  /** When false, every received command is stored as ignored (default true). */
  readonly enabled?: boolean | undefined
}

export const make = (options: Options) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const enabled = options.enabled ?? true
    const wrap = (operation: string) => (cause: SqlError.SqlError) => new Staging.StagingError({ operation: `commands.${operation}`, cause })

    // At most once: a command caught running by a crash is not started again.
    yield* sql`UPDATE commands SET status = 'failed', finished_at = now(),
      outcome = ${JSON.stringify({ error: "interrupted: the agent stopped while it was running" })}::jsonb
      WHERE status = 'running'`.pipe(Effect.mapError(wrap("recover")))

    const receive = (commands: ReadonlyArray<unknown>) =>
      Effect.gen(function*() {
        let stored = 0, duplicates = 0, ignored = 0, invalid = 0
        for (const raw of commands) {
          const decoded = WireProtocol.decodeCommand(raw)
          if (decoded._tag === "Failure") {
            invalid++
            yield* Effect.logWarning("ignoring a malformed command from MHQ", { error: decoded.failure.message.split("\n")[0] })
            continue
          }
          const c = decoded.success
          const known = Object.hasOwn(options.executors, c.command)
          const reason = !enabled ? "commands are disabled on this agent" : !known ? `unknown command ${c.command}` : undefined
          const rows = yield* sql`INSERT INTO commands (id, command, parameters, status, outcome, finished_at)
            VALUES (${c.id}, ${c.command}, ${JSON.stringify(c.parameters ?? {})}::jsonb,
              ${reason === undefined ? "pending" : "ignored"},
              ${reason === undefined ? null : JSON.stringify({ error: reason })}::jsonb,
              ${reason === undefined ? null : new Date()})
            ON CONFLICT (id) DO NOTHING RETURNING 1`.pipe(Effect.mapError(wrap("receive")))
          if (rows.length === 0) {
            duplicates++
            continue
          }
          stored++
          if (reason !== undefined) {
            ignored++
            yield* Effect.logWarning("command ignored", { command_id: c.id, command: c.command, reason })
          } else {
            yield* Effect.logInfo("command received", { command_id: c.id, command: c.command })
          }
        }
        return { stored, duplicates, ignored, invalid }
      })

    const claimNext = sql<Row>`UPDATE commands SET status = 'running'
      WHERE id = (SELECT id FROM commands WHERE status = 'pending' ORDER BY received_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
      RETURNING id, command, parameters, status, outcome, received_at, finished_at, reported_at`.pipe(
      Effect.mapError(wrap("claim"))
    )

    const finish = (id: string, status: "done" | "failed", outcome: Schema.Json) =>
      sql`UPDATE commands SET status = ${status}, outcome = ${JSON.stringify(outcome)}::jsonb, finished_at = now()
        WHERE id = ${id}`.pipe(Effect.mapError(wrap("finish")), Effect.asVoid)

    const runOne = (command: StoredCommand) =>
      Effect.gen(function*() {
        const executor = options.executors[command.command]
        const result = executor === undefined
          ? { _tag: "Failure" as const, failure: new CommandFailed({ message: `no executor for ${command.command}` }) }
          : yield* Effect.result(Effect.suspend(() => executor(command)).pipe(Effect.catchDefect((d) => Effect.fail(d))))
        if (result._tag === "Success") {
          yield* finish(command.id, "done", result.success)
          yield* Effect.logInfo("command done", { command_id: command.id, command: command.command })
        } else {
          const error = describeError(result.failure)
          yield* finish(command.id, "failed", { error })
          yield* Effect.logWarning("command failed", { command_id: command.id, command: command.command, error })
        }
      })

    const runPending = Effect.gen(function*() {
      let ran = 0
      while (true) {
        const [row] = yield* claimNext
        if (row === undefined) return ran
        yield* runOne(toStored(row))
        ran++
      }
    })

    const unreported = sql<Row>`SELECT id, command, parameters, status, outcome, received_at, finished_at, reported_at
      FROM commands WHERE status IN ('done', 'failed', 'ignored') AND reported_at IS NULL
      ORDER BY received_at, id LIMIT 100`.pipe(
      Effect.mapError(wrap("unreported")),
      Effect.map((rows) =>
        rows.map((r): WireProtocol.CommandResult => ({
          id: r.id,
          command: r.command,
          status: r.status,
          outcome: r.outcome,
          received_at: r.received_at.toISOString(),
          finished_at: r.finished_at?.toISOString() ?? null
        }))
      )
    )

    const markReported = (ids: ReadonlyArray<string>) =>
      ids.length === 0 ? Effect.void : sql`UPDATE commands SET reported_at = now()
        WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb)))`.pipe(
        Effect.mapError(wrap("markReported")),
        Effect.asVoid
      )

    const list = sql<Row>`SELECT id, command, parameters, status, outcome, received_at, finished_at, reported_at
      FROM commands ORDER BY received_at, id`.pipe(Effect.mapError(wrap("list")), Effect.map((rows) => rows.map(toStored)))

    return Commands.of({
      receive: (commands) => receive(commands).pipe(Effect.annotateLogs({ component: "mhq-commands" })),
      runPending: runPending.pipe(Effect.annotateLogs({ component: "mhq-commands" })),
      unreported,
      markReported,
      list
    })
  })

/**
 * Commands with the built-in executors plus `extra` (which win on a name clash); enabled per
 * SinkConfig. Needs SqlClient, Staging, Delivery and SinkConfig.
 */
export const layer = (options: { readonly extra?: Executors | undefined; readonly enabled?: boolean | undefined } = {}) =>
  Layer.effect(
    Commands,
    Effect.gen(function*() {
      const builtIn = yield* defaultExecutors
      const settings = yield* SinkConfig.SinkConfig
      return yield* make({
        executors: { ...builtIn, ...options.extra },
        enabled: options.enabled ?? settings.commandsEnabled
      })
    })
  )
