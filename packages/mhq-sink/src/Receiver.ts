/**
 * The receiving half, for MHQ's service: verify the signature, decode the envelope and open the
 * sealed payload in one call. Plain async functions; the error carries the HTTP status to answer
 * (401 for signature problems, 400 for anything else malformed).
 */
import { Data, type Redacted } from "effect"
import * as Sealing from "./Sealing.ts"
import * as Signature from "./Signature.ts"
import * as Sodium from "./Sodium.ts"
import * as WireProtocol from "./WireProtocol.ts"

export class ReceiveError extends Data.TaggedError("ReceiveError")<{
  readonly status: 400 | 401
  readonly message: string
}> {}

export interface ReceivedBatch {
  readonly type: "batch"
  readonly id: string
  /** The agent set `mhq-replay: 1`: a deliberate re-send of a batch MHQ may already have. */
  readonly replay: boolean
  readonly envelope: WireProtocol.BatchEnvelope
  readonly records: ReadonlyArray<WireProtocol.WireRecord>
}
export interface ReceivedHeartbeat {
  readonly type: "heartbeat"
  readonly id: string
  readonly envelope: WireProtocol.HeartbeatEnvelope
  /** The opened details (see WireProtocol.HeartbeatDetails). */
  readonly details: unknown
}
export type Received = ReceivedBatch | ReceivedHeartbeat

export interface Options {
  readonly headers: Signature.HeaderBag
  /** The raw request body, exactly as received. */
  readonly body: string | Uint8Array
  readonly secret: Signature.Secret
  readonly privateKey: Uint8Array | string | Redacted.Redacted<Uint8Array> | Redacted.Redacted<string>
  readonly now?: number | undefined
  readonly toleranceSeconds?: number | undefined
  readonly maxPlaintextBytes?: number | undefined
}

const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0]!

/** Verifies, decodes and opens one request. Throws `ReceiveError`. */
export const receive = async (options: Options): Promise<Received> => {
  await Sodium.ready()
  let verified: Signature.Verified
  try {
    verified = Signature.verify(options)
  } catch (e) {
    throw new ReceiveError({ status: 401, message: firstLine(e) })
  }
  const text = typeof options.body === "string" ? options.body : Buffer.from(options.body).toString("utf8")
  let envelope: WireProtocol.Envelope
  try {
    envelope = WireProtocol.decodeEnvelope(JSON.parse(text))
  } catch (e) {
    throw new ReceiveError({ status: 400, message: `not a v1 envelope: ${firstLine(e)}` })
  }
  if (verified.id !== envelope.id) throw new ReceiveError({ status: 400, message: "webhook-id differs from the body's id" })
  try {
    if (envelope.type === "batch") {
      const records = await Sealing.open(envelope.ciphertext, options.privateKey,
        options.maxPlaintextBytes === undefined ? {} : { maxPlaintextBytes: options.maxPlaintextBytes })
      if (records.length !== envelope.record_count) {
        throw new Error(`record_count is ${envelope.record_count} but the payload holds ${records.length}`)
      }
      const replay = Signature.header(options.headers, WireProtocol.headers.replay) === "1"
      return { type: "batch", id: envelope.id, replay, envelope, records }
    }
    return { type: "heartbeat", id: envelope.id, envelope, details: Sealing.openJsonSync(envelope.details, options.privateKey) }
  } catch (e) {
    throw new ReceiveError({ status: 400, message: firstLine(e) })
  }
}
