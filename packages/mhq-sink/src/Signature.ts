/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): headers `webhook-id`,
 * `webhook-timestamp` (unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256(key,
 * id + "." + timestamp + "." + body)>`. Several space-separated signatures may be present (key
 * rotation); one match is enough. Comparison is constant-time; timestamps more than 5 minutes away
 * from now are refused (replay protection).
 *
 * The HMAC key is the UTF-8 bytes of MHQ_CLIENT_SECRET, except for a secret in the Standard
 * Webhooks form `whsec_<base64>`, whose key is the base64-decoded rest (so stock Standard Webhooks
 * libraries interoperate).
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { Data, Effect, Redacted } from "effect"
import * as WireProtocol from "./WireProtocol.ts"

export const defaultToleranceSeconds = 5 * 60

export type Secret = string | Redacted.Redacted<string>

export type SignatureHeaders = {
  readonly "webhook-id": string
  readonly "webhook-timestamp": string
  readonly "webhook-signature": string
}

export type SignatureFailure = "missing_header" | "invalid_timestamp" | "timestamp_too_old" | "timestamp_too_new" | "no_matching_signature"

export class SignatureError extends Data.TaggedError("SignatureError")<{
  readonly reason: SignatureFailure
  readonly message: string
}> {}

const keyOf = (secret: Secret): Buffer => {
  const text = Redacted.isRedacted(secret) ? Redacted.value(secret) : secret
  return text.startsWith("whsec_") ? Buffer.from(text.slice(6), "base64") : Buffer.from(text, "utf8")
}

const toBuffer = (body: string | Uint8Array): Buffer =>
  typeof body === "string" ? Buffer.from(body, "utf8") : Buffer.from(body.buffer, body.byteOffset, body.byteLength)

/** The bare `v1,<base64>` signature of one message. */
export const signature = (secret: Secret, id: string, timestamp: number | string, body: string | Uint8Array): string => {
  const mac = createHmac("sha256", keyOf(secret))
  mac.update(`${id}.${timestamp}.`)
  mac.update(toBuffer(body))
  return `v1,${mac.digest("base64")}`
}

/** Signature headers for a message; `timestamp` defaults to now (unix seconds). */
export const sign = (options: {
  readonly secret: Secret
  readonly id: string
  readonly body: string | Uint8Array
  readonly timestamp?: number | undefined
}): SignatureHeaders => {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000)
  return {
    "webhook-id": options.id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signature(options.secret, options.id, timestamp, options.body)
  }
}

export type HeaderBag =
  | { readonly [name: string]: string | ReadonlyArray<string> | undefined }
  | { readonly get: (name: string) => string | null }

/** A header from a Node-style object (any case) or a Fetch-style `Headers`. */
export const header = (headers: HeaderBag, name: string): string | undefined => {
  if (typeof (headers as { get?: unknown }).get === "function") {
    return (headers as { get: (n: string) => string | null }).get(name) ?? undefined
  }
  const bag = headers as { readonly [name: string]: string | ReadonlyArray<string> | undefined }
  const value = bag[name] ?? Object.entries(bag).find(([k]) => k.toLowerCase() === name)?.[1]
  return Array.isArray(value) ? value.join(" ") : (value as string | undefined)
}

export interface Verified {
  readonly id: string
  readonly timestamp: number
}

/**
 * Verifies the Standard Webhooks headers of a received body (the exact bytes received). Throws
 * `SignatureError`; returns the message id and timestamp.
 */
export const verify = (options: {
  readonly secret: Secret
  readonly headers: HeaderBag
  readonly body: string | Uint8Array
  /** Unix seconds; defaults to now. */
  readonly now?: number | undefined
  readonly toleranceSeconds?: number | undefined
}): Verified => {
  const id = header(options.headers, WireProtocol.headers.id)
  const ts = header(options.headers, WireProtocol.headers.timestamp)
  const sig = header(options.headers, WireProtocol.headers.signature)
  if (!id || !ts || !sig) {
    throw new SignatureError({ reason: "missing_header", message: "missing webhook-id, webhook-timestamp or webhook-signature header" })
  }
  if (!/^\d{1,12}$/.test(ts)) {
    throw new SignatureError({ reason: "invalid_timestamp", message: "webhook-timestamp is not unix seconds" })
  }
  const timestamp = Number(ts)
  const now = options.now ?? Math.floor(Date.now() / 1000)
  const tolerance = options.toleranceSeconds ?? defaultToleranceSeconds
  if (timestamp < now - tolerance) {
    throw new SignatureError({ reason: "timestamp_too_old", message: `webhook-timestamp is more than ${tolerance} s old` })
  }
  if (timestamp > now + tolerance) {
    throw new SignatureError({ reason: "timestamp_too_new", message: `webhook-timestamp is more than ${tolerance} s in the future` })
  }
  const expected = Buffer.from(signature(options.secret, id, ts, options.body).slice(3), "base64")
  let matched = false
  for (const candidate of sig.split(" ")) {
    const comma = candidate.indexOf(",")
    if (comma < 0 || candidate.slice(0, comma) !== "v1") continue
    const given = Buffer.from(candidate.slice(comma + 1), "base64")
    // Compare every candidate (no early exit) so timing does not reveal which one matched.
    if (given.length === expected.length && timingSafeEqual(given, expected)) matched = true
  }
  if (!matched) throw new SignatureError({ reason: "no_matching_signature", message: "no webhook-signature matches" })
  return { id, timestamp }
}

/** Effect form of `verify`. */
export const verifyEffect = (options: Parameters<typeof verify>[0]): Effect.Effect<Verified, SignatureError> =>
  Effect.try({ try: () => verify(options), catch: (e) => e as SignatureError })
