/**
 * What the reference receiver holds, de-duplicated by batch id (the receiver does that: a repeated
 * id is answered 409 and stored once) and then by record version (identity + updated_at), and
 * compared with an independently computed expectation.
 */
import type { ReferenceReceiver } from "@mhq-sync/testkit"
import { canonical, identityOf, versionOf, type WireLike } from "./expected.ts"

export interface Received {
  /** Record versions, each once. */
  readonly versions: Map<string, WireLike>
  /** Versions that arrived in more than one batch id (a record sent twice). */
  readonly inSeveralBatches: Array<{ readonly version: string; readonly batches: ReadonlyArray<string> }>
  /** Versions that arrived twice with different data. */
  readonly conflicting: Array<string>
  readonly batches: number
  readonly records: number
}

export const received = (receiver: ReferenceReceiver.Handle, fromBatch = 0): Received => {
  const versions = new Map<string, WireLike>()
  const seenIn = new Map<string, Array<string>>()
  const conflicting: Array<string> = []
  let records = 0
  const batches = receiver.batches.slice(fromBatch)
  for (const batch of batches) {
    for (const r of batch.records) {
      records++
      const v = versionOf(r)
      const list = seenIn.get(v) ?? []
      list.push(batch.id)
      seenIn.set(v, list)
      const before = versions.get(v)
      if (before !== undefined && canonical(before.data) !== canonical(r.data)) conflicting.push(v)
      versions.set(v, r)
    }
  }
  const inSeveralBatches = [...seenIn].filter(([, ids]) => ids.length > 1).map(([version, ids]) => ({ version, batches: ids }))
  return { versions, inSeveralBatches, conflicting, batches: batches.length, records }
}

/** The newest version of every identity. */
export const latest = (versions: Iterable<WireLike>): Map<string, WireLike> => {
  const out = new Map<string, WireLike>()
  for (const r of versions) {
    const id = identityOf(r)
    const cur = out.get(id)
    if (cur === undefined || Date.parse(r.updated_at) > Date.parse(cur.updated_at)) out.set(id, r)
  }
  return out
}

export interface Difference {
  readonly missing: Array<string>
  readonly extra: Array<string>
  /** Same version, different data. */
  readonly different: Array<string>
}

export const difference = (expected: ReadonlyMap<string, WireLike>, actual: ReadonlyMap<string, WireLike>): Difference => {
  const missing: Array<string> = []
  const extra: Array<string> = []
  const different: Array<string> = []
  for (const [k, e] of expected) {
    const a = actual.get(k)
    if (a === undefined) missing.push(k)
    else if (canonical(a.data) !== canonical(e.data) || a.project_path !== e.project_path) {
      different.push(`${k}\n    expected ${canonical(e.data)}\n    received ${canonical(a.data)}`)
    }
  }
  for (const k of actual.keys()) if (!expected.has(k)) extra.push(k)
  return { missing, extra, different }
}

/** "" when equal, else a readable report (first few of each). */
export const describeDifference = (d: Difference, limit = 8): string => {
  const parts: Array<string> = []
  if (d.missing.length > 0) parts.push(`${d.missing.length} missing, e.g.\n  ${d.missing.slice(0, limit).join("\n  ")}`)
  if (d.extra.length > 0) parts.push(`${d.extra.length} extra, e.g.\n  ${d.extra.slice(0, limit).join("\n  ")}`)
  if (d.different.length > 0) parts.push(`${d.different.length} with different data, e.g.\n  ${d.different.slice(0, limit).join("\n  ")}`)
  return parts.join("\n")
}
