import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import * as HealthServer from "../src/HealthServer.ts"
import * as Prometheus from "../src/Prometheus.ts"

describe("HealthServer", () => {
  it.live("serves /healthz, /readyz and Prometheus /metrics on 127.0.0.1", () =>
    Effect.scoped(Effect.gen(function*() {
      let stopping = false
      let dbOk = true
      const server = yield* HealthServer.make({ host: "127.0.0.1", port: 0 }, {
        live: Effect.sync(() => !stopping),
        ready: Effect.sync(() => ({ ok: dbOk, detail: dbOk ? "ready" : "database not ready" }))
      })
      const counter = Metric.counter("mhq_test_requests_total", { description: "test counter" })
      yield* Metric.update(Metric.withAttributes(counter, { endpoint: "GET /projects/:id", status: "200" }), 3)
      const get = (p: string) => Effect.promise(() => fetch(`${server.url}${p}`).then(async (r) => ({ status: r.status, body: await r.text() })))
      assert.deepStrictEqual(yield* get("/healthz"), { status: 200, body: "ok\n" })
      assert.deepStrictEqual(yield* get("/readyz"), { status: 200, body: "ready\n" })
      const metrics = yield* get("/metrics")
      assert.strictEqual(metrics.status, 200)
      assert.include(metrics.body, "# TYPE mhq_test_requests_total counter")
      assert.include(metrics.body, `mhq_test_requests_total{endpoint="GET /projects/:id",status="200"} 3`)
      dbOk = false
      stopping = true
      assert.strictEqual((yield* get("/readyz")).status, 503)
      assert.strictEqual((yield* get("/healthz")).status, 503)
      assert.strictEqual((yield* get("/other")).status, 404)
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    })))

  it("renders gauges, histograms and escapes label values", () => {
    const text = Prometheus.render([
      { id: "g", type: "Gauge", description: undefined, attributes: { path: "a\"b" }, state: { value: 1.5 } },
      { id: "h", type: "Histogram", description: "d", attributes: undefined, state: { buckets: [[0.1, 1], [1, 2]], count: 2, min: 0, max: 1, sum: 0.6 } }
    ] as never)
    assert.include(text, `g{path="a\\"b"} 1.5`)
    assert.include(text, `h_bucket{le="0.1"} 1`)
    assert.include(text, `h_bucket{le="+Inf"} 2`)
    assert.include(text, "h_count 2")
  })
})
