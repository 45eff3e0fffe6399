/**
 * The unit of data that moves through the pipeline: one minimised entity from one source instance.
 * Identity is (instance, kind, projectId, key); `hash` covers everything that is sent, so an
 * unchanged entity is recognised and never rewritten or re-sent.
 */
import { createHash } from "node:crypto"
import { Data, Schema } from "effect"

export const SyncRecord = Schema.Struct({
  /** Base URL of the source instance, normalised (no trailing slash). */
  instance: Schema.String,
  /** Entity kind, e.g. "merge_request", "note", "pipeline". */
  kind: Schema.String,
  /** The scope the record belongs to: project id and full path. */
  projectId: Schema.Int,
  projectPath: Schema.String,
  /** Key within (instance, kind, projectId), e.g. "42" or "42:1337" for a child. */
  key: Schema.String,
  /** ISO-8601 time the source last changed the entity (or its parent, for children without one). */
  updatedAt: Schema.String,
  data: Schema.Json
})
export type SyncRecord = typeof SyncRecord.Type

/** Raised when a record's `data` cannot be turned into canonical JSON (bigint, cycle, NaN, function ...). */
export class UnserialisableRecord extends Data.TaggedError("UnserialisableRecord")<{
  readonly record: { readonly kind: string; readonly projectId: number; readonly key: string }
  readonly message: string
}> {}

const canonicalValue = (value: unknown, path: string, seen: Set<object>): unknown => {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`non-finite number at ${path}`)
    return value
  }
  if (typeof value !== "object") throw new Error(`${typeof value} at ${path} is not JSON`)
  if (seen.has(value)) throw new Error(`circular reference at ${path}`)
  seen.add(value)
  try {
    if (Array.isArray(value)) return value.map((v, i) => canonicalValue(v, `${path}[${i}]`, seen))
    const proto = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) throw new Error(`non-plain object at ${path}`)
    const out: { [k: string]: unknown } = {}
    for (const k of Object.keys(value).sort()) {
      const v = (value as { [k: string]: unknown })[k]
      if (v === undefined) continue // JSON drops undefined keys; do it explicitly so hashes agree
      out[k] = canonicalValue(v, `${path}.${k}`, seen)
    }
    return out
  } finally {
    seen.delete(value)
  }
}

/** JSON text with sorted keys; throws `UnserialisableRecord` for data JSON cannot represent. */
export const canonicalJson = (record: SyncRecord): string => {
  try {
    return JSON.stringify(canonicalValue(record.data, "data", new Set()))
  } catch (e) {
    throw new UnserialisableRecord({
      record: { kind: record.kind, projectId: record.projectId, key: record.key },
      message: `data of ${record.kind} ${record.key} cannot be serialised: ${(e as Error).message}`
    })
  }
}

/** Stable content hash over everything that is delivered, given the canonical data JSON. */
export const hashWith = (record: SyncRecord, dataJson: string): string =>
  createHash("sha256")
    .update(`${record.instance}\n${record.kind}\n${record.projectId}\n${record.projectPath}\n${record.key}\n`)
    .update(`${record.updatedAt}\n`)
    .update(dataJson)
    .digest("hex")

export const hash = (record: SyncRecord): string => hashWith(record, canonicalJson(record))
