/**
 * Wire protocol v1 between the agent and MHQ (see docs/wire-protocol.md): constants, header names
 * and the schemas of every JSON document that crosses the wire. Schemas are the source of truth;
 * the agent encodes with them and the receiving side decodes with them.
 */
import type { SyncRecord } from "@mhq-sync/core"
import { Schema } from "effect"

export const version = 1 as const
export const encryption = "x25519-xsalsa20poly1305-sealedbox" as const
export const compression = "gzip" as const

/** Header names (lower case, as Node and the Effect HttpClient expose them). */
export const headers = {
  id: "webhook-id",
  timestamp: "webhook-timestamp",
  signature: "webhook-signature",
  replay: "mhq-replay",
  userAgent: "user-agent"
} as const

export const userAgent = (agentVersion: string): string => `mhq-sync/${agentVersion}`

const Uuid = Schema.String.pipe(Schema.check(Schema.isUUID()))
const NonNegativeInt = Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)))
const Base64 = Schema.String.pipe(Schema.check(Schema.isPattern(/^[A-Za-z0-9+/]*={0,2}$/)))

/** One line of the sealed JSON Lines plaintext: one staged record. */
export const WireRecord = Schema.Struct({
  kind: Schema.String,
  instance: Schema.String,
  project_id: Schema.Int,
  project_path: Schema.String,
  key: Schema.String,
  updated_at: Schema.String,
  data: Schema.Json
})
export type WireRecord = typeof WireRecord.Type

export const toWireRecord = (r: SyncRecord.SyncRecord): WireRecord => ({
  kind: r.kind,
  instance: r.instance,
  project_id: r.projectId,
  project_path: r.projectPath,
  key: r.key,
  updated_at: r.updatedAt,
  data: r.data
})

export const fromWireRecord = (r: WireRecord): SyncRecord.SyncRecord => ({
  instance: r.instance,
  kind: r.kind,
  projectId: r.project_id,
  projectPath: r.project_path,
  key: r.key,
  updatedAt: r.updated_at,
  data: r.data
})

/** The JSON body of one batch POST. */
export const BatchEnvelope = Schema.Struct({
  type: Schema.Literal("batch"),
  version: Schema.Literal(version),
  /** The batch's UUIDv7; equal to the webhook-id header; stable across retries and replays. */
  id: Uuid,
  client_id: Schema.String,
  agent_version: Schema.String,
  /** GitLab base URL the records come from. */
  instance: Schema.String,
  kind: Schema.String,
  record_count: NonNegativeInt,
  /** ISO-8601 time the batch was packed. */
  created_at: Schema.String,
  encryption: Schema.Literal(encryption),
  compression: Schema.Literal(compression),
  /** Standard base64 of crypto_box_seal(gzip(JSON Lines of WireRecord)). */
  ciphertext: Base64
})
export type BatchEnvelope = typeof BatchEnvelope.Type

export const HeartbeatStatus = Schema.Literals(["ok", "degraded", "failing", "stopping"])
export type HeartbeatStatus = typeof HeartbeatStatus.Type

/** The JSON body of one heartbeat POST. */
export const HeartbeatEnvelope = Schema.Struct({
  type: Schema.Literal("heartbeat"),
  version: Schema.Literal(version),
  /** A fresh UUIDv7 per heartbeat; equal to the webhook-id header. */
  id: Uuid,
  client_id: Schema.String,
  agent_version: Schema.String,
  status: HeartbeatStatus,
  sent_at: Schema.String,
  /** Standard base64 of crypto_box_seal(gzip(JSON of HeartbeatDetails)). */
  details: Base64
})
export type HeartbeatEnvelope = typeof HeartbeatEnvelope.Type

export const Envelope = Schema.Union([BatchEnvelope, HeartbeatEnvelope])
export type Envelope = typeof Envelope.Type

export const CommandName = Schema.Literals(["resync_project", "reset_cursor", "replay_batch", "replay_since"])
export type CommandName = typeof CommandName.Type

export const CommandStatus = Schema.Literals(["pending", "running", "done", "failed", "ignored"])
export type CommandStatus = typeof CommandStatus.Type

/** A command as MHQ sends it (the name is kept open: unknown ones are stored and ignored). */
export const Command = Schema.Struct({
  id: Schema.NonEmptyString,
  command: Schema.String,
  parameters: Schema.optionalKey(Schema.Json)
})
export type Command = typeof Command.Type

/** Body of MHQ's answer to a heartbeat (any other body, or none, means "no commands"). */
export const HeartbeatResponse = Schema.Struct({
  commands: Schema.optionalKey(Schema.Array(Schema.Unknown))
})
export type HeartbeatResponse = typeof HeartbeatResponse.Type

/** What happened to a command, reported (sealed, in `details.command_results`) by the next heartbeat. */
export const CommandResult = Schema.Struct({
  id: Schema.String,
  command: Schema.String,
  status: CommandStatus,
  outcome: Schema.Json,
  received_at: Schema.String,
  finished_at: Schema.NullOr(Schema.String)
})
export type CommandResult = typeof CommandResult.Type

export const ProjectCycle = Schema.Struct({
  instance: Schema.String,
  project_id: Schema.NullOr(Schema.Int),
  project_path: Schema.NullOr(Schema.String),
  cycle_id: Schema.String,
  status: Schema.String,
  started_at: Schema.String,
  finished_at: Schema.NullOr(Schema.String)
})
export type ProjectCycle = typeof ProjectCycle.Type

/** The sealed heartbeat details (plaintext = JSON of this, gzipped, then sealed). */
export const HeartbeatDetails = Schema.Struct({
  uptime_seconds: Schema.Number,
  started_at: Schema.String,
  last_cycles: Schema.Array(ProjectCycle),
  batches: Schema.Struct({ pending: NonNegativeInt, failed: NonNegativeInt, delivered: NonNegativeInt, split: NonNegativeInt }),
  undelivered_records: NonNegativeInt,
  quarantined: NonNegativeInt,
  database: Schema.Struct({
    backend: Schema.String,
    target: Schema.NullOr(Schema.String),
    healthy: Schema.Boolean,
    error: Schema.NullOr(Schema.String)
  }),
  next_fetch_at: Schema.NullOr(Schema.String),
  next_send_at: Schema.NullOr(Schema.String),
  heartbeats: Schema.Struct({ sent: NonNegativeInt, failed: NonNegativeInt, consecutive_failures: NonNegativeInt }),
  /** Effective configuration without secrets. */
  config: Schema.Record(Schema.String, Schema.Json),
  command_results: Schema.Array(CommandResult)
})
export type HeartbeatDetails = typeof HeartbeatDetails.Type

export const decodeBatchEnvelope = Schema.decodeUnknownSync(BatchEnvelope)
export const decodeHeartbeatEnvelope = Schema.decodeUnknownSync(HeartbeatEnvelope)
export const decodeEnvelope = Schema.decodeUnknownSync(Envelope)
export const decodeWireRecord = Schema.decodeUnknownSync(WireRecord)
export const decodeCommand = Schema.decodeUnknownResult(Command)
export const decodeHeartbeatResponse = Schema.decodeUnknownResult(Schema.fromJsonString(HeartbeatResponse))
