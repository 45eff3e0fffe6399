/**
 * How the pieces plug together: a source is a Stream of `Unit`s (records of one scope and kind,
 * plus the cursor they complete once the scope/kind is exhausted); transforms are pure
 * record -> record-or-drop functions; staging writes each unit atomically.
 *
 *   source.pipe(Pipeline.transform(t1, t2), Pipeline.stage) // -> Effect<Totals>
 */
import { Effect, Stream } from "effect"
import * as Staging from "./Staging.ts"
import type { SyncRecord } from "./SyncRecord.ts"

export type Unit = Staging.StageInput

export type Source<E = never, R = never> = Stream.Stream<Unit, E, R>

/** Pure: return the record (possibly changed) to keep it, or `undefined` to drop it. */
export type Transform = (record: SyncRecord) => SyncRecord | undefined

export const compose = (...transforms: ReadonlyArray<Transform>): Transform => (record) => {
  let current: SyncRecord | undefined = record
  for (const t of transforms) {
    if (current === undefined) return undefined
    current = t(current)
  }
  return current
}

export interface Totals extends Staging.StageResult {
  readonly dropped: number
  readonly units: number
}

export const emptyTotals: Totals = { inserted: 0, updated: 0, unchanged: 0, quarantined: 0, dropped: 0, units: 0 }

export const addTotals = (a: Totals, b: Totals): Totals => ({
  inserted: a.inserted + b.inserted,
  updated: a.updated + b.updated,
  unchanged: a.unchanged + b.unchanged,
  quarantined: a.quarantined + b.quarantined,
  dropped: a.dropped + b.dropped,
  units: a.units + b.units
})

/** Applies transforms to every record of every unit; counts drops on the unit for reporting. */
export const transform = (...transforms: ReadonlyArray<Transform>) => {
  const t = compose(...transforms)
  return <E, R>(source: Source<E, R>): Stream.Stream<Unit & { readonly dropped: number }, E, R> =>
    Stream.map(source, (unit) => {
      const records: Array<SyncRecord> = []
      for (const r of unit.records) {
        const out = t(r)
        if (out !== undefined) records.push(out)
      }
      return { ...unit, records, dropped: unit.records.length - records.length }
    })
}

/** Units staged together in one transaction (each unit stays whole: atomicity is per unit). */
export const coalesce = { units: 64, within: "50 millis" } as const

/** Concatenates units in order: records, quarantine and cursors of each keep their relative order. */
export const merge = (units: ReadonlyArray<Unit & { readonly dropped?: number }>): Unit & { readonly dropped: number } => ({
  records: units.flatMap((u) => u.records),
  quarantine: units.flatMap((u) => u.quarantine ?? []),
  cursors: units.flatMap((u) => u.cursors ?? []),
  dropped: units.reduce((n, u) => n + (u.dropped ?? 0), 0)
})

/**
 * Stages every unit, in order; returns the totals. Units that arrive close together share one
 * transaction (a unit is never split), which cuts the database round trips of many small units
 * (one MR with its children each) by an order of magnitude.
 */
export const stage = <E, R>(
  source: Stream.Stream<Unit & { readonly dropped?: number }, E, R>
): Effect.Effect<Totals, E | Staging.StagingError, R | Staging.Staging> =>
  Effect.gen(function*() {
    const staging = yield* Staging.Staging
    return yield* source.pipe(
      Stream.groupedWithin(coalesce.units, coalesce.within),
      Stream.runFoldEffect(() => emptyTotals, (acc, group) => {
        const unit = merge(group)
        return Effect.map(staging.stage(unit), (r) => addTotals(acc, { ...r, dropped: unit.dropped, units: group.length }))
      })
    )
  })
