/** Shared test fixtures: sim-backed configs, fast retry options, captured logs. */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type { SimGitlab } from "@mhq-sync/testkit"
import { Cause, Effect, Layer, Logger } from "effect"
import { GitlabClient, InstanceConfig } from "../src/index.ts"

export const fast: GitlabClient.Options = { backoff: { base: "10 millis", cap: "50 millis" }, retries: 5, malformedRetries: 2 }

export const configOf = (sim: SimGitlab.Handle, extra: { readonly [k: string]: unknown } = {}) =>
  InstanceConfig.make({ url: sim.url, token: sim.token, requestsPerMinute: 1_000_000, ...extra })

/** A logger layer that records every line (message + cause) into `lines`. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make((o) => {
    lines.push(`${o.logLevel} ${typeof o.message === "string" ? o.message : JSON.stringify(o.message)} ${Cause.pretty(o.cause)}`)
  })
  return { lines, layer: Logger.layer([logger]) as Layer.Layer<never> }
}

/** A self-signed certificate for 127.0.0.1 in a temp dir (removed with the scope). */
export const selfSigned = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mhq-tls-"))
    const key = path.join(dir, "key.pem")
    const cert = path.join(dir, "cert.pem")
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"
    ], { stdio: "ignore" })
    return { dir, key, cert, keyPem: fs.readFileSync(key), certPem: fs.readFileSync(cert) }
  }),
  ({ dir }) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

export const routeCount = (sim: SimGitlab.Handle, route: string) => sim.stats().byRoute[`GET ${route}`] ?? 0

interface ProxyHooks {
  /** Answers a path (without query) with this status instead of forwarding it. */
  readonly intercept?: ((path: string) => number | undefined) | undefined
  /** Replaces the 200 JSON answers of `POST /api/graphql`: gets the parsed body, returns what to send. */
  readonly rewriteGraphql?: ((body: any) => { readonly status: number; readonly body: unknown }) | undefined
}

const writeJson = (res: http.ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  res.end(text)
}

/** A pass-through HTTP proxy in front of the sim (Link headers rewritten to its origin), with hooks. Closed with the scope. */
const simProxy = (sim: SimGitlab.Handle, hooks: ProxyHooks) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ readonly url: string; readonly server: http.Server }>((resolve, reject) => {
        const target = new URL(sim.url)
        let origin = ""
        const server = http.createServer((req, res) => {
          const path = (req.url ?? "/").split("?")[0]!
          const status = hooks.intercept?.(path)
          if (status !== undefined) return writeJson(res, status, { message: status === 404 ? "404 Not found" : "403 Forbidden" })
          const rewrite = req.method === "POST" && path === "/api/graphql" ? hooks.rewriteGraphql : undefined
          const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (up) => {
            if (rewrite !== undefined && up.statusCode === 200) {
              const chunks: Array<Buffer> = []
              up.on("data", (c: Buffer) => chunks.push(c))
              up.on("end", () => {
                const out = rewrite(JSON.parse(Buffer.concat(chunks).toString("utf8")))
                writeJson(res, out.status, out.body)
              })
              return
            }
            const headers = { ...up.headers }
            if (typeof headers.link === "string") headers.link = headers.link.split(target.origin).join(origin)
            res.writeHead(up.statusCode ?? 502, headers)
            up.pipe(res)
          })
          upstream.on("error", () => res.destroy())
          req.pipe(upstream)
        })
        server.once("error", reject)
        server.listen(0, "127.0.0.1", () => {
          origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
          resolve({ url: origin, server })
        })
      })
    ),
    ({ server }) => Effect.promise(() => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    }))
  )

/**
 * A proxy that answers chosen API paths itself (the sim can only fail whole routes or projects,
 * not one MR's endpoint). `intercept` sees the path without query and returns a status to answer
 * with, or undefined to forward.
 */
export const interceptingProxy = (sim: SimGitlab.Handle, intercept: (path: string) => number | undefined) => simProxy(sim, { intercept })

/** A proxy that lets `rewrite` change (or replace) the JSON answers of `POST /api/graphql`. */
export const graphqlProxy = (sim: SimGitlab.Handle, rewrite: (body: any) => { readonly status: number; readonly body: unknown }) =>
  simProxy(sim, { rewriteGraphql: rewrite })

export const graphqlCount = (sim: SimGitlab.Handle) => sim.stats().byRoute["POST /graphql"] ?? 0
