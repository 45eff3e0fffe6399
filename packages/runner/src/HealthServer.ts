/**
 * The agent's own HTTP endpoint (default 127.0.0.1:9464): `/healthz` (the process is up and not
 * stopping), `/readyz` (the staging database answers), `/metrics` (Prometheus text). It listens
 * on loopback unless configured otherwise and serves nothing else.
 */
import * as http from "node:http"
import { Data, Effect, type Scope } from "effect"
import * as Prometheus from "./Prometheus.ts"

export class HealthServerError extends Data.TaggedError("HealthServerError")<{ readonly message: string }> {}

export interface Probes<R> {
  /** false once shutdown started: orchestrators stop routing / restart decisions. */
  readonly live: Effect.Effect<boolean, never, R>
  readonly ready: Effect.Effect<{ readonly ok: boolean; readonly detail: string }, never, R>
}

export const make = <R>(
  listen: { readonly host: string; readonly port: number },
  probes: Probes<R>
): Effect.Effect<{ readonly port: number; readonly url: string }, HealthServerError, Scope.Scope | R> =>
  Effect.gen(function*() {
    const context = yield* Effect.context<R>()
    const run = <A>(effect: Effect.Effect<A, never, R>) => Effect.runPromiseWith(context)(effect)
    const server = http.createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0]
      const send = (status: number, body: string, type = "text/plain; charset=utf-8") => {
        res.writeHead(status, { "content-type": type, "cache-control": "no-store" })
        res.end(body)
      }
      if (req.method !== "GET" && req.method !== "HEAD") return send(405, "method not allowed\n")
      if (path === "/healthz") {
        run(probes.live).then((ok) => send(ok ? 200 : 503, ok ? "ok\n" : "stopping\n"), () => send(500, "error\n"))
      } else if (path === "/readyz") {
        run(probes.ready).then((r) => send(r.ok ? 200 : 503, `${r.detail}\n`), () => send(500, "error\n"))
      } else if (path === "/metrics") {
        run(Prometheus.scrape).then((text) => send(200, text, "text/plain; version=0.0.4; charset=utf-8"), () => send(500, "error\n"))
      } else send(404, "not found\n")
    })
    const port = yield* Effect.acquireRelease(
      Effect.callback<number, HealthServerError>((resume) => {
        server.once("error", (e) =>
          resume(Effect.fail(new HealthServerError({
            message: `cannot listen on ${listen.host}:${listen.port} for /healthz and /metrics: ${e.message} — set http.listen (MHQ_HTTP_LISTEN) to another port, or "off"`
          }))))
        server.listen(listen.port, listen.host, () => resume(Effect.succeed((server.address() as { port: number }).port)))
      }),
      () => Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )
    const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host
    return { port, url: `http://${host}:${port}` }
  })
