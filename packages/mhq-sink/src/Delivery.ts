/**
 * Ships the staging outbox to MHQ: packs new records into batches, claims due batches (SKIP LOCKED
 * leases, so several senders never share one), seals, signs and POSTs them, and records the
 * outcome. 2xx/409 delivered; 413 split in two; 408/425/429/5xx/network retried with the shared
 * backoff (honouring Retry-After) until `maxAge` after the first attempt; any other 4xx failed at
 * once. Failed batches stay staged; only a replay sends them again.
 */
import { Backoff, Staging, Uuid } from "@mhq-sync/core"
import { Clock, Context, Duration, Effect, Layer, Schema } from "effect"
import * as Sealing from "./Sealing.ts"
import * as SinkConfig from "./SinkConfig.ts"
import * as Webhook from "./Webhook.ts"
import * as WireProtocol from "./WireProtocol.ts"

/** What one pass did. */
export interface Report {
  /** Batches created from newly staged records by this pass. */
  readonly packed: number
  /** Records too big for any batch, quarantined while packing. */
  readonly quarantined: number
  readonly delivered: number
  readonly retried: number
  readonly failed: number
  readonly split: number
  /** Request body bytes of delivered batches. */
  readonly bytes: number
  /** Records in delivered batches. */
  readonly records: number
}

export const emptyReport: Report = { packed: 0, quarantined: 0, delivered: 0, retried: 0, failed: 0, split: 0, bytes: 0, records: 0 }

export const addReports = (a: Report, b: Report): Report => ({
  packed: a.packed + b.packed,
  quarantined: a.quarantined + b.quarantined,
  delivered: a.delivered + b.delivered,
  retried: a.retried + b.retried,
  failed: a.failed + b.failed,
  split: a.split + b.split,
  bytes: a.bytes + b.bytes,
  records: a.records + b.records
})

export type Outcome =
  | { readonly _tag: "Delivered"; readonly status: number; readonly bytes: number; readonly records: number }
  | { readonly _tag: "Split"; readonly halves: ReadonlyArray<string> }
  | { readonly _tag: "Retry"; readonly error: string; readonly delayMs: number }
  | { readonly _tag: "Failed"; readonly error: string }

export type DeliveryError = Staging.StagingError | Staging.BatchNotFound

export interface Service {
  /** Packs (unless `pack: false`), then delivers every due batch; returns what happened. */
  readonly sendPending: (options?: { readonly pack?: boolean | undefined }) => Effect.Effect<Report, Staging.StagingError>
  /**
   * `sendPending`, then keeps sending retries as they fall due until no batch is pending or
   * `timeout` (default 5 minutes) has passed.
   */
  readonly drain: (options?: { readonly timeout?: Duration.Input | undefined; readonly pack?: boolean | undefined }) => Effect.Effect<Report, Staging.StagingError>
  /** Sends one batch again: same id, same records, `mhq-replay: 1` (also for failed batches). */
  readonly replayBatch: (id: string) => Effect.Effect<Report, DeliveryError>
  /** New replay batches of the current content of records staged since `since`, then sends them. */
  readonly replaySince: (since: Date, options?: { readonly kind?: string | undefined }) => Effect.Effect<Report, Staging.StagingError>
  /** Seals, signs and posts one claimed batch and records the outcome. */
  readonly deliver: (batch: Staging.Batch) => Effect.Effect<Outcome, DeliveryError>
}

export class Delivery extends Context.Service<Delivery, Service>()("@mhq-sync/mhq-sink/Delivery") {}

/** Body of a batch POST (exact bytes that are signed). */
export const encodeBatchBody = (envelope: WireProtocol.BatchEnvelope): string =>
  JSON.stringify(Schema.encodeSync(WireProtocol.BatchEnvelope)(envelope))

export const errorBodyBytes = 500

export interface MakeOptions {
  /** Longest single pass of `sendPending` before it returns (retries due later wait for the next). */
  readonly maxPassDuration?: Duration.Input | undefined
}

export const make = (options: MakeOptions = {}) =>
  Effect.gen(function*() {
    const settings = yield* SinkConfig.SinkConfig
    const staging = yield* Staging.Staging
    const webhook = yield* Webhook.Webhook
    const owner = `delivery-${Uuid.v7()}`
    // Our claims last as long as this process: a successor takes over a crashed sender's batches at once.
    yield* staging.registerOwner(owner)
    const maxPassMs = Duration.toMillis(Duration.fromInputUnsafe(options.maxPassDuration ?? "10 minutes"))
    const maxAgeMs = Duration.toMillis(settings.maxAge)

    const retryOrFail = (batch: Staging.Batch, error: string, retryAfterMs: number | undefined) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const age = now - (batch.firstAttemptAt?.getTime() ?? now)
        if (age >= maxAgeMs) {
          const message = `gave up after ${Duration.format(Duration.millis(age))} of retries; last error: ${error}`
          yield* staging.markFailed(batch.id, message)
          yield* Effect.logError("batch failed: retries exhausted", { batch_id: batch.id, kind: batch.kind, attempts: batch.attempts, error })
          return { _tag: "Failed", error: message } as const
        }
        const backoff = Duration.toMillis(Backoff.delay(batch.attempts - 1, settings.backoff))
        const delayMs = Math.min(Math.max(backoff, retryAfterMs ?? 0), maxAgeMs - age)
        yield* staging.markRetry(batch.id, error, delayMs)
        yield* Effect.logWarning("batch will be retried", { batch_id: batch.id, kind: batch.kind, attempts: batch.attempts, error, delay_ms: delayMs })
        return { _tag: "Retry", error, delayMs } as const
      })

    const deliver = (batch: Staging.Batch): Effect.Effect<Outcome, DeliveryError> =>
      Effect.gen(function*() {
        const records = yield* staging.batchRecords(batch.id)
        const sealed = yield* Effect.result(Sealing.sealEffect(records, settings.publicKey))
        if (sealed._tag === "Failure") return yield* retryOrFail(batch, `sealing failed: ${sealed.failure.message}`, undefined)
        const body = encodeBatchBody({
          type: "batch",
          version: WireProtocol.version,
          id: batch.id,
          client_id: settings.clientId,
          agent_version: settings.agentVersion,
          instance: batch.instance,
          kind: batch.kind,
          record_count: records.length,
          created_at: batch.createdAt.toISOString(),
          encryption: WireProtocol.encryption,
          compression: WireProtocol.compression,
          ciphertext: sealed.success.ciphertext
        })
        const response = yield* Effect.result(webhook.post({ id: batch.id, body, replay: batch.replay }))
        if (response._tag === "Failure") return yield* retryOrFail(batch, response.failure.message, undefined)
        const { status } = response.success
        switch (Webhook.classify(status)) {
          case "delivered": {
            yield* staging.markDelivered(batch.id)
            yield* Effect.logInfo("batch delivered", { batch_id: batch.id, kind: batch.kind, records: records.length, status, replay: batch.replay })
            return { _tag: "Delivered", status, bytes: Buffer.byteLength(body), records: records.length } as const
          }
          case "split": {
            const halves = yield* staging.split(batch.id)
            if (halves.length === 0) {
              yield* Effect.logError("batch failed: a single record is too large for the receiver (413)", { batch_id: batch.id, kind: batch.kind })
              return { _tag: "Failed", error: "413 for a single-record batch" } as const
            }
            yield* Effect.logWarning("batch too large for the receiver (413): split in two", { batch_id: batch.id, kind: batch.kind, records: records.length, halves: halves.map((h) => h.id) })
            return { _tag: "Split", halves: halves.map((h) => h.id) } as const
          }
          case "retry":
            return yield* retryOrFail(batch, `HTTP ${status}`, response.success.retryAfterMs)
          case "failed": {
            const error = `HTTP ${status}: ${Webhook.truncateBytes(response.success.body, errorBodyBytes)}`
            yield* staging.markFailed(batch.id, error)
            yield* Effect.logError("batch failed: rejected by the receiver", { batch_id: batch.id, kind: batch.kind, status })
            return { _tag: "Failed", error } as const
          }
        }
      }).pipe(Effect.annotateLogs({ component: "mhq-delivery" }))

    const toReport = (outcome: Outcome): Report => {
      switch (outcome._tag) {
        case "Delivered":
          return { ...emptyReport, delivered: 1, bytes: outcome.bytes, records: outcome.records }
        case "Split":
          return { ...emptyReport, split: 1 }
        case "Retry":
          return { ...emptyReport, retried: 1 }
        case "Failed":
          return { ...emptyReport, failed: 1 }
      }
    }

    const sendDue = Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      let report = emptyReport
      // A receiver that asked us to wait (429/5xx/unreachable) gets no more batches in this pass:
      // the others keep their schedule instead of all being posted to a server that is down.
      let backOff = false
      const worker = Effect.gen(function*() {
        while (!backOff && (yield* Clock.currentTimeMillis) - started < maxPassMs) {
          const claimed = yield* staging.claim({ owner, limit: 1, leaseSeconds: settings.leaseSeconds })
          const batch = claimed[0]
          if (batch === undefined) return
          const outcome = yield* deliver(batch).pipe(
            Effect.catchTag("BatchNotFound", () => Effect.succeed<Outcome>({ _tag: "Failed", error: "batch vanished" }))
          )
          report = addReports(report, toReport(outcome))
          if (outcome._tag === "Retry") backOff = true
        }
      })
      yield* Effect.forEach(Array.from({ length: settings.concurrency }), () => worker, { concurrency: "unbounded", discard: true })
      return report
    })

    const sendPending = (opts: { readonly pack?: boolean | undefined } = {}) =>
      Effect.gen(function*() {
        const packed = opts.pack === false ? undefined : yield* staging.pack(settings.limits)
        if (packed && packed.quarantined > 0) {
          yield* Effect.logWarning("records too large for any batch were quarantined", { quarantined: packed.quarantined, max_bytes: settings.limits.maxBytes })
        }
        const sent = yield* sendDue
        return { ...sent, packed: packed?.batches ?? 0, quarantined: packed?.quarantined ?? 0 }
      }).pipe(Effect.withLogSpan("mhq-send"))

    const nextDueInMs = Effect.gen(function*() {
      const pending = yield* staging.batches({ status: "pending" })
      if (pending.length === 0) return undefined
      const now = yield* Clock.currentTimeMillis
      return Math.max(0, Math.min(...pending.map((b) => b.nextAttemptAt.getTime())) - now)
    })

    const drain = (opts: { readonly timeout?: Duration.Input | undefined; readonly pack?: boolean | undefined } = {}) =>
      Effect.gen(function*() {
        const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(Duration.fromInputUnsafe(opts.timeout ?? "5 minutes"))
        let report = yield* sendPending({ pack: opts.pack })
        while (true) {
          const wait = yield* nextDueInMs
          const now = yield* Clock.currentTimeMillis
          if (wait === undefined || now + wait > deadline) return report
          // Clock skew between us and the database: never spin faster than 10 ms.
          yield* Effect.sleep(Duration.millis(Math.max(10, wait)))
          report = addReports(report, yield* sendPending({ pack: false }))
        }
      })

    const replayBatch = (id: string) =>
      Effect.gen(function*() {
        yield* staging.replayBatch(id)
        yield* Effect.logInfo("batch queued for replay", { batch_id: id })
        return yield* sendPending({ pack: false })
      })

    const replaySince = (since: Date, opts: { readonly kind?: string | undefined } = {}) =>
      Effect.gen(function*() {
        const packed = yield* staging.rebatchSince(since, { kind: opts.kind, limits: settings.limits })
        yield* Effect.logInfo("records re-batched for replay", { since: since.toISOString(), kind: opts.kind ?? "*", batches: packed.batches, records: packed.records })
        const sent = yield* sendPending({ pack: false })
        return { ...sent, packed: packed.batches, quarantined: sent.quarantined + packed.quarantined }
      })

    return Delivery.of({ sendPending, drain, replayBatch, replaySince, deliver })
  })

/** Needs SinkConfig, Staging and Webhook. */
export const layer = (options: MakeOptions = {}) => Layer.effect(Delivery, make(options))
