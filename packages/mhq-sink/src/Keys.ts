/**
 * X25519 keys for sealed boxes and the webhook client secret. Keys travel as standard base64 of 32
 * bytes (44 characters, ending in "="). Parsing errors name the key and what was expected, and never
 * echo the value (it may be a private key pasted into the wrong variable).
 */
import { generateKeyPairSync } from "node:crypto"
import { Data, Effect, Redacted } from "effect"

export const keyBytes = 32

export class KeyError extends Data.TaggedError("KeyError")<{
  /** The setting the key came from, e.g. "MHQ_PUBLIC_KEY". */
  readonly name: string
  readonly message: string
}> {}

export interface KeyPair {
  /** Standard base64 of the 32-byte X25519 public key: give this to agents as MHQ_PUBLIC_KEY. */
  readonly publicKey: string
  /** Standard base64 of the 32-byte private key: stays with MHQ (e.g. MHQ_PRIVATE_KEY). */
  readonly privateKey: string
}

const standardBase64 = /^[A-Za-z0-9+/]*={0,2}$/
const expected = `standard base64 of ${keyBytes} bytes (44 characters ending in "=")`

const describe = (trimmed: string): string => {
  if (trimmed.length === 0) return "it is empty"
  if (/^[A-Za-z0-9_-]+={0,2}$/.test(trimmed) && /[-_]/.test(trimmed)) {
    return "it looks like URL-safe base64 (contains '-' or '_'); use the standard alphabet with '+' and '/'"
  }
  if (!standardBase64.test(trimmed) || trimmed.length % 4 !== 0) {
    return `it is not valid standard base64 (${trimmed.length} characters)`
  }
  return `it decodes to ${Buffer.from(trimmed, "base64").length} bytes`
}

/** Decodes a 32-byte key; throws `KeyError` naming the setting. Surrounding whitespace is ignored. */
export const decodeKeyUnsafe = (value: string | Redacted.Redacted<string>, name: string): Uint8Array => {
  const trimmed = (Redacted.isRedacted(value) ? Redacted.value(value) : value).trim()
  if (trimmed.length === 44 && standardBase64.test(trimmed) && trimmed.endsWith("=") && !trimmed.endsWith("==")) {
    const bytes = Buffer.from(trimmed, "base64")
    // Reject non-canonical encodings (stray bits in the last character).
    if (bytes.length === keyBytes && bytes.toString("base64") === trimmed) return new Uint8Array(bytes)
  }
  throw new KeyError({ name, message: `${name} must be ${expected}, but ${describe(trimmed)}` })
}

/** The public key agents seal to (default setting name MHQ_PUBLIC_KEY). */
export const parsePublicKey = (value: string, name = "MHQ_PUBLIC_KEY"): Uint8Array => decodeKeyUnsafe(value, name)

/** A private key, kept redacted (default setting name MHQ_PRIVATE_KEY). */
export const parsePrivateKey = (
  value: string | Redacted.Redacted<string>,
  name = "MHQ_PRIVATE_KEY"
): Redacted.Redacted<Uint8Array> => Redacted.make(decodeKeyUnsafe(value, name), { label: name })

export const publicKey = (value: string, name = "MHQ_PUBLIC_KEY"): Effect.Effect<Uint8Array, KeyError> =>
  Effect.try({ try: () => parsePublicKey(value, name), catch: (e) => e as KeyError })

export const privateKey = (
  value: string | Redacted.Redacted<string>,
  name = "MHQ_PRIVATE_KEY"
): Effect.Effect<Redacted.Redacted<Uint8Array>, KeyError> =>
  Effect.try({ try: () => parsePrivateKey(value, name), catch: (e) => e as KeyError })

/** The webhook signing secret (MHQ_CLIENT_SECRET): any non-empty text; see Signature for its use. */
export const parseClientSecret = (
  value: string | Redacted.Redacted<string>,
  name = "MHQ_CLIENT_SECRET"
): Redacted.Redacted<string> => {
  const text = Redacted.isRedacted(value) ? Redacted.value(value) : value
  if (text.trim().length === 0) throw new KeyError({ name, message: `${name} must be a non-empty secret` })
  if (text.startsWith("whsec_") && !/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(text)) {
    throw new KeyError({ name, message: `${name} starts with "whsec_" but the rest is not standard base64` })
  }
  return Redacted.make(text, { label: name })
}

const fromBase64Url = (s: string): string => Buffer.from(s, "base64url").toString("base64")

/**
 * A fresh X25519 key pair for an MHQ admin, as standard base64 (no libsodium needed: the raw
 * X25519 keys are what `crypto_box_seal` uses).
 */
export const generateKeyPair = (): KeyPair => {
  const { publicKey: pub, privateKey: priv } = generateKeyPairSync("x25519")
  const jwk = priv.export({ format: "jwk" })
  const x = pub.export({ format: "jwk" }).x
  if (typeof jwk.d !== "string" || typeof x !== "string") throw new Error("X25519 key export failed")
  return { publicKey: fromBase64Url(x), privateKey: fromBase64Url(jwk.d) }
}
