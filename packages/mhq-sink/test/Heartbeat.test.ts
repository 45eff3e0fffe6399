import { assert, describe, it } from "@effect/vitest"
import { Staging } from "@mhq-sync/core"
import { ReferenceReceiver, TestDatabase } from "@mhq-sync/testkit"
import { Effect, Layer, Ref } from "effect"
import { TestClock } from "effect/testing"
import * as Commands from "../src/Commands.ts"
import * as Delivery from "../src/Delivery.ts"
import * as Heartbeat from "../src/Heartbeat.ts"
import * as SinkConfig from "../src/SinkConfig.ts"
import * as Webhook from "../src/Webhook.ts"
import { captureLogs, instance, manyRecords, sinkOptions } from "./fixtures.ts"

const stack = (
  rx: ReferenceReceiver.Handle,
  options: {
    readonly config?: Partial<SinkConfig.Options>
    readonly periodic?: boolean
    readonly extra?: Commands.Executors
    readonly details?: Heartbeat.DetailsProvider
  } = {}
) =>
  (options.periodic ? Heartbeat.layer({ details: options.details }) : Heartbeat.layerService({ details: options.details })).pipe(
    Layer.provideMerge(Commands.layer({ extra: options.extra })),
    Layer.provideMerge(Delivery.layer()),
    Layer.provideMerge(Webhook.layerLive),
    Layer.provideMerge(SinkConfig.layer(sinkOptions(rx, options.config))),
    Layer.provideMerge(TestDatabase.staging("server"))
  )

const live = <A>(f: () => Promise<A>) => TestClock.withLive(Effect.promise(f))

describe("Heartbeat", () => {
  it.live("sends a signed heartbeat with sealed details (no secrets) and reflects staging state", () =>
    Effect.gen(function*() {
      const rx = yield* ReferenceReceiver.make()
      yield* Effect.gen(function*() {
        const staging = yield* Staging.Staging
        yield* staging.stage({ records: manyRecords(3) })
        const runId = yield* staging.startRun({ cycleId: "cycle-1", instance, projectId: 12, projectPath: "acme/widgets" })
        yield* staging.finishRun(runId, { status: "ok", counts: { merge_request: 3 }, warnings: [], errors: [] })
        rx.scriptReply({ status: 400 }, { only: "batch" })
        yield* (yield* Delivery.Delivery).sendPending()

        const hb = yield* Heartbeat.Heartbeat
        const result = yield* hb.beat()
        assert.isTrue(result.ok)
        assert.strictEqual(rx.heartbeats.length, 1)
        const { envelope, details } = rx.heartbeats[0]!
        assert.strictEqual(envelope.type, "heartbeat")
        assert.strictEqual(envelope.version, 1)
        assert.strictEqual(envelope.client_id, "client-acme")
        assert.strictEqual(envelope.agent_version, "0.1.0-test")
        assert.strictEqual(envelope.status, "degraded") // one failed batch
        assert.strictEqual(envelope.id, result.id)
        assert.strictEqual(details.batches.failed, 1)
        assert.strictEqual(details.database.backend, "server")
        assert.isTrue(details.database.healthy)
        assert.strictEqual(details.last_cycles[0]!.cycle_id, "cycle-1")
        assert.strictEqual(details.last_cycles[0]!.project_id, 12)
        assert.strictEqual(details.next_fetch_at, "2030-01-01T00:00:00.000Z")
        assert.strictEqual(details.config.source, "gitlab")
        assert.strictEqual(details.config.client_id, "client-acme")
        const request = rx.requests.at(-1)!
        assert.strictEqual(request.headers["user-agent"], "mhq-sync/0.1.0-test")
        assert.notInclude(JSON.stringify(rx.heartbeats[0]), rx.secret)
        assert.notInclude(JSON.stringify(rx.heartbeats[0]), rx.privateKey)
        // heartbeat state is kept in agent_state
        assert.deepStrictEqual((yield* hb.stats).sent, 1)
      }).pipe(Effect.provide(stack(rx, {
        details: Effect.succeed({ nextFetchAt: new Date("2030-01-01T00:00:00Z"), config: { source: "gitlab" } })
      })))
    }))

  it.effect("keeps its schedule while the receiver is down; a failed beat is never fatal (TestClock)", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const rx = yield* ReferenceReceiver.make()
      rx.setReply({ status: 503 })
      yield* Effect.gen(function*() {
        const hb = yield* Heartbeat.Heartbeat
        const beats = (n: number) =>
          Effect.gen(function*() {
            yield* live(() => rx.waitFor((h) => h.requests.length >= n))
            while (((yield* hb.stats).sent + (yield* hb.stats).failed) < n) yield* live(() => new Promise((r) => setTimeout(r, 5)))
            yield* live(() => new Promise((r) => setTimeout(r, 100))) // let the fiber go back to sleep
          })
        yield* beats(1) // the first beat is immediate
        for (let n = 2; n <= 5; n++) {
          yield* TestClock.adjust("4 minutes")
          yield* live(() => new Promise((r) => setTimeout(r, 50)))
          assert.strictEqual(rx.requests.length, n - 1, "no beat before the interval")
          yield* TestClock.adjust("1 minute")
          yield* beats(n)
        }
        const down = yield* hb.stats
        assert.strictEqual(down.failed, 5)
        assert.strictEqual(down.consecutiveFailures, 5)
        assert.include(down.lastError!, "HTTP 503")
        rx.scriptReply("drop")
        yield* TestClock.adjust("5 minutes")
        yield* beats(6)
        assert.strictEqual((yield* hb.stats).failed, 6)
        // back up: the next scheduled beat arrives and reports the failures
        rx.setReply("accept")
        yield* TestClock.adjust("5 minutes")
        yield* beats(7)
        const up = yield* hb.stats
        assert.strictEqual(up.sent, 1)
        assert.strictEqual(up.consecutiveFailures, 0)
        assert.strictEqual(rx.heartbeats.length, 1)
        assert.strictEqual(rx.heartbeats[0]!.details.heartbeats.failed, 6)
      }).pipe(Effect.provide(stack(rx, { periodic: true }).pipe(Layer.provideMerge(logs.layer))))
      const text = logs.lines.join("\n")
      assert.include(text, "heartbeat failed")
      assert.notInclude(text, rx.secret)
      assert.notInclude(text, rx.privateKey)
      // the scope closed: a final "stopping" heartbeat was sent
      assert.strictEqual(rx.heartbeats.at(-1)!.envelope.status, "stopping")
    }))

  it.live("commands run once even when answers repeat them; outcomes are reported once; unknown ones ignored", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const rx = yield* ReferenceReceiver.make()
      const resyncs = yield* Ref.make(0)
      yield* Effect.gen(function*() {
        const staging = yield* Staging.Staging
        const hb = yield* Heartbeat.Heartbeat
        const commands = yield* Commands.Commands
        yield* staging.stage({
          records: manyRecords(2),
          cursors: [
            { instance, projectId: 12, kind: "merge_request", value: "2026-01-01" },
            { instance, projectId: 12, kind: "note", value: "2026-01-01" },
            { instance, projectId: 13, kind: "note", value: "2026-01-01" }
          ]
        })
        rx.scriptReply({ status: 400 }, { only: "batch" })
        yield* (yield* Delivery.Delivery).sendPending()
        const [failed] = yield* staging.batches({ status: "failed" })

        rx.queueCommands([
          { id: "c1", command: "reset_cursor", parameters: { project_id: 13, kind: "note" } },
          { id: "c2", command: "replay_batch", parameters: { batch_id: failed!.id } },
          { id: "c3", command: "resync_project", parameters: { project_id: 12 } },
          { id: "c4", command: "self_destruct", parameters: {} },
          { id: "c5", command: "replay_since", parameters: { since: "yesterday-ish" } },
          { id: "c6", command: "reset_cursor", parameters: { project_id: "not a number" } }
        ], { times: 3 })

        const first = yield* hb.beat()
        assert.strictEqual(first.commands, 6)
        yield* hb.awaitCommands
        const second = yield* hb.beat()
        assert.strictEqual(second.commands, 0) // repeated ids: stored once
        yield* hb.awaitCommands
        yield* hb.beat()
        yield* hb.awaitCommands
        yield* hb.beat()

        assert.strictEqual(yield* Ref.get(resyncs), 1)
        const byId = Object.fromEntries((yield* commands.list).map((c) => [c.id, c]))
        assert.strictEqual(byId.c1!.status, "done")
        assert.deepStrictEqual(byId.c1!.outcome, { cursors_reset: 1 })
        assert.strictEqual(byId.c2!.status, "done")
        assert.strictEqual(byId.c3!.status, "done")
        assert.strictEqual(byId.c4!.status, "ignored")
        assert.strictEqual(byId.c5!.status, "failed")
        assert.strictEqual(byId.c6!.status, "failed")
        assert.include(JSON.stringify(byId.c6!.outcome), "invalid parameters")
        assert.isTrue(Object.values(byId).every((c) => c.reportedAt !== null))

        // the replay went out exactly once, with the same id and mhq-replay: 1
        const replays = rx.requests.filter((r) => r.replay)
        assert.strictEqual(replays.length, 1)
        assert.strictEqual(replays[0]!.id, failed!.id)
        assert.strictEqual(rx.batches.length, 1)
        // cursors: c1 removed (13, note); the resync executor was the runner's
        const cursors = yield* staging.cursors()
        assert.deepStrictEqual(cursors.map((c) => `${c.projectId}:${c.kind}`), ["12:merge_request", "12:note"])

        // outcomes: reported by the second heartbeat, and only by it
        const reported = rx.heartbeats.map((h) => h.details.command_results.map((r) => `${r.id}:${r.status}`))
        assert.deepStrictEqual(reported[0], [])
        assert.deepStrictEqual(reported[1]!.sort(), ["c1:done", "c2:done", "c3:done", "c4:ignored", "c5:failed", "c6:failed"])
        assert.deepStrictEqual(reported[2], [])
        assert.deepStrictEqual(reported[3], [])
      }).pipe(Effect.provide(Layer.merge(stack(rx, {
        extra: { resync_project: () => Effect.as(Ref.update(resyncs, (n) => n + 1), { queued: true }) }
      }), logs.layer)))
      const text = logs.lines.join("\n")
      assert.include(text, "command ignored")
      assert.include(text, "self_destruct")
    }))

  it.live("a setting turns commands off: they are stored as ignored and reported, never run", () =>
    Effect.gen(function*() {
      const rx = yield* ReferenceReceiver.make()
      yield* Effect.gen(function*() {
        const staging = yield* Staging.Staging
        yield* staging.stage({ records: [], cursors: [{ instance, projectId: 1, kind: "note", value: "x" }] })
        rx.queueCommands([{ id: "d1", command: "reset_cursor", parameters: { project_id: 1 } }])
        const hb = yield* Heartbeat.Heartbeat
        yield* hb.beat()
        yield* hb.awaitCommands
        yield* hb.beat()
        assert.strictEqual((yield* staging.cursors()).length, 1)
        const [d1] = yield* (yield* Commands.Commands).list
        assert.strictEqual(d1!.status, "ignored")
        assert.deepStrictEqual(rx.heartbeats[1]!.details.command_results.map((r) => r.status), ["ignored"])
      }).pipe(Effect.provide(stack(rx, { config: { commandsEnabled: false } })))
    }))
})
