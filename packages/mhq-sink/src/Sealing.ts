/**
 * Sealed payloads: plaintext is gzipped, then sealed with libsodium `crypto_box_seal` to the MHQ
 * admin's X25519 public key, then written as standard base64 (libsodium's ORIGINAL variant).
 * Only the holder of the private key can open it; a flipped byte makes opening fail.
 *
 * Plain functions (no Effect runtime needed): `seal`/`open` for batches of records (JSON Lines),
 * `sealJson`/`openJson` for one JSON value (heartbeat details). The `*Sync` variants need
 * `await Sodium.ready()` first; the async ones wait themselves.
 */
import { promisify } from "node:util"
import * as zlib from "node:zlib"
import type { SyncRecord } from "@mhq-sync/core"
import { Data, Effect, Redacted } from "effect"
import * as Keys from "./Keys.ts"
import * as Sodium from "./Sodium.ts"
import * as WireProtocol from "./WireProtocol.ts"

export class SealingError extends Data.TaggedError("SealingError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export type PublicKeyInput = Uint8Array | string
export type PrivateKeyInput = Uint8Array | string | Redacted.Redacted<Uint8Array> | Redacted.Redacted<string>

/** Largest plaintext `open` will inflate (guards the receiving side against gzip bombs). */
export const defaultMaxPlaintextBytes = 256 * 1024 * 1024

const gzip = promisify(zlib.gzip)
const gunzip = promisify(zlib.gunzip)

const publicKeyBytes = (key: PublicKeyInput): Uint8Array =>
  typeof key === "string" ? Keys.parsePublicKey(key) : key

const privateKeyBytes = (key: PrivateKeyInput): Uint8Array => {
  const value: Uint8Array | string = Redacted.isRedacted(key) ? Redacted.value(key as Redacted.Redacted<Uint8Array | string>) : key
  return typeof value === "string" ? Keys.decodeKeyUnsafe(value, "MHQ_PRIVATE_KEY") : value
}

const isSyncRecord = (r: SyncRecord.SyncRecord | WireProtocol.WireRecord): r is SyncRecord.SyncRecord =>
  "projectId" in r

/** JSON Lines: one wire record per line, each line ending in "\n". */
export const encodeLines = (records: ReadonlyArray<SyncRecord.SyncRecord | WireProtocol.WireRecord>): string => {
  let out = ""
  for (const r of records) out += JSON.stringify(isSyncRecord(r) ? WireProtocol.toWireRecord(r) : r) + "\n"
  return out
}

/** Parses and validates JSON Lines of wire records. */
export const decodeLines = (text: string): Array<WireProtocol.WireRecord> => {
  const out: Array<WireProtocol.WireRecord> = []
  let n = 0
  for (const line of text.split("\n")) {
    n++
    if (line.length === 0) continue
    try {
      out.push(WireProtocol.decodeWireRecord(JSON.parse(line)))
    } catch (e) {
      throw new SealingError({ message: `line ${n} is not a valid record: ${(e as Error).message.split("\n")[0]}` })
    }
  }
  return out
}

/** Seals already-compressed bytes; returns standard base64. Needs libsodium ready. */
export const sealBytes = (plaintext: Uint8Array, publicKey: PublicKeyInput): string => {
  const s = Sodium.get()
  return s.to_base64(s.crypto_box_seal(plaintext, publicKeyBytes(publicKey)), s.base64_variants.ORIGINAL)
}

/** Opens standard base64 sealed bytes with the private key (the public key is derived from it). */
export const openBytes = (ciphertext: string, privateKey: PrivateKeyInput): Uint8Array => {
  const s = Sodium.get()
  let sealed: Uint8Array
  try {
    sealed = s.from_base64(ciphertext, s.base64_variants.ORIGINAL)
  } catch (cause) {
    throw new SealingError({ message: "ciphertext is not standard base64", cause })
  }
  const sk = privateKeyBytes(privateKey)
  try {
    return s.crypto_box_seal_open(sealed, s.crypto_scalarmult_base(sk), sk)
  } catch (cause) {
    throw new SealingError({ message: "cannot open: wrong private key, or the ciphertext was altered", cause })
  }
}

export interface Sealed {
  /** Standard base64 of the sealed box. */
  readonly ciphertext: string
  /** Bytes of JSON before compression. */
  readonly plaintextBytes: number
  readonly compressedBytes: number
}

const inflate = (compressed: Uint8Array, maxBytes: number): Buffer => {
  try {
    return zlib.gunzipSync(compressed, { maxOutputLength: maxBytes })
  } catch (cause) {
    throw new SealingError({ message: `opened plaintext is not gzip within ${maxBytes} bytes`, cause })
  }
}

/** gzip + seal of records as JSON Lines. Needs libsodium ready (see `seal` for the async form). */
export const sealSync = (
  records: ReadonlyArray<SyncRecord.SyncRecord | WireProtocol.WireRecord>,
  publicKey: PublicKeyInput
): Sealed => {
  const json = Buffer.from(encodeLines(records))
  const compressed = zlib.gzipSync(json)
  return { ciphertext: sealBytes(compressed, publicKey), plaintextBytes: json.length, compressedBytes: compressed.length }
}

/** Opens a sealed batch into its records. Needs libsodium ready. */
export const openSync = (
  ciphertext: string,
  privateKey: PrivateKeyInput,
  options: { readonly maxPlaintextBytes?: number } = {}
): Array<WireProtocol.WireRecord> =>
  decodeLines(inflate(openBytes(ciphertext, privateKey), options.maxPlaintextBytes ?? defaultMaxPlaintextBytes).toString("utf8"))

/** gzip (off the main thread) + seal of records as JSON Lines. */
export const seal = async (
  records: ReadonlyArray<SyncRecord.SyncRecord | WireProtocol.WireRecord>,
  publicKey: PublicKeyInput
): Promise<Sealed> => {
  await Sodium.ready()
  const json = Buffer.from(encodeLines(records))
  const compressed = await gzip(json)
  return { ciphertext: sealBytes(compressed, publicKey), plaintextBytes: json.length, compressedBytes: compressed.length }
}

/** Opens a sealed batch into its validated records; throws `SealingError`. */
export const open = async (
  ciphertext: string,
  privateKey: PrivateKeyInput,
  options: { readonly maxPlaintextBytes?: number } = {}
): Promise<Array<WireProtocol.WireRecord>> => {
  await Sodium.ready()
  const compressed = openBytes(ciphertext, privateKey)
  const maxOutputLength = options.maxPlaintextBytes ?? defaultMaxPlaintextBytes
  let text: string
  try {
    text = (await gunzip(compressed, { maxOutputLength })).toString("utf8")
  } catch (cause) {
    throw new SealingError({ message: `opened plaintext is not gzip within ${maxOutputLength} bytes`, cause })
  }
  return decodeLines(text)
}

/** gzip + seal of one JSON value (heartbeat details). Needs libsodium ready. */
export const sealJsonSync = (value: unknown, publicKey: PublicKeyInput): string =>
  sealBytes(zlib.gzipSync(Buffer.from(JSON.stringify(value))), publicKey)

/** Opens one sealed JSON value. Needs libsodium ready. */
export const openJsonSync = (ciphertext: string, privateKey: PrivateKeyInput): unknown => {
  const text = inflate(openBytes(ciphertext, privateKey), defaultMaxPlaintextBytes).toString("utf8")
  try {
    return JSON.parse(text)
  } catch (cause) {
    throw new SealingError({ message: "opened plaintext is not JSON", cause })
  }
}

export const sealJson = async (value: unknown, publicKey: PublicKeyInput): Promise<string> => {
  await Sodium.ready()
  return sealJsonSync(value, publicKey)
}

export const openJson = async (ciphertext: string, privateKey: PrivateKeyInput): Promise<unknown> => {
  await Sodium.ready()
  return openJsonSync(ciphertext, privateKey)
}

const toSealingError = (e: unknown): SealingError =>
  e instanceof SealingError ? e : new SealingError({ message: e instanceof Error ? e.message : String(e), cause: e })

/** Effect form of `seal` (libsodium readiness handled by the same memoised promise). */
export const sealEffect = (
  records: ReadonlyArray<SyncRecord.SyncRecord | WireProtocol.WireRecord>,
  publicKey: PublicKeyInput
): Effect.Effect<Sealed, SealingError> => Effect.tryPromise({ try: () => seal(records, publicKey), catch: toSealingError })

/** Effect form of `open`. */
export const openEffect = (
  ciphertext: string,
  privateKey: PrivateKeyInput,
  options: { readonly maxPlaintextBytes?: number } = {}
): Effect.Effect<Array<WireProtocol.WireRecord>, SealingError> =>
  Effect.tryPromise({ try: () => open(ciphertext, privateKey, options), catch: toSealingError })
