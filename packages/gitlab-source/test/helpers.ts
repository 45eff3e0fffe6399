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

/**
 * A pass-through HTTP proxy in front of the sim that answers chosen API paths itself (the sim can
 * only fail whole routes or projects, not one MR's endpoint). `intercept` sees the path without
 * query and returns a status to answer with, or undefined to forward. Link headers are rewritten
 * to the proxy's origin. Closed with the scope.
 */
export const interceptingProxy = (sim: SimGitlab.Handle, intercept: (path: string) => number | undefined) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ readonly url: string; readonly server: http.Server }>((resolve, reject) => {
        const target = new URL(sim.url)
        let origin = ""
        const server = http.createServer((req, res) => {
          const path = (req.url ?? "/").split("?")[0]!
          const status = intercept(path)
          if (status !== undefined) {
            const body = JSON.stringify({ message: status === 404 ? "404 Not found" : "403 Forbidden" })
            res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
            return res.end(body)
          }
          const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (up) => {
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
 * A proxy in front of the sim that forwards everything and lets `rewrite` change (or replace)
 * the JSON answers of `POST /api/graphql`: `rewrite` gets the parsed body and returns the
 * status and body to send. Closed with the scope.
 */
export const graphqlProxy = (sim: SimGitlab.Handle, rewrite: (body: any) => { readonly status: number; readonly body: unknown }) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ readonly url: string; readonly server: http.Server }>((resolve, reject) => {
        const target = new URL(sim.url)
        const server = http.createServer((req, res) => {
          const isGraphql = req.method === "POST" && (req.url ?? "").startsWith("/api/graphql")
          const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (up) => {
            if (!isGraphql || up.statusCode !== 200) {
              res.writeHead(up.statusCode ?? 502, up.headers)
              return up.pipe(res)
            }
            const chunks: Array<Buffer> = []
            up.on("data", (c: Buffer) => chunks.push(c))
            up.on("end", () => {
              const out = rewrite(JSON.parse(Buffer.concat(chunks).toString("utf8")))
              const body = JSON.stringify(out.body)
              res.writeHead(out.status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
              res.end(body)
            })
          })
          upstream.on("error", () => res.destroy())
          req.pipe(upstream)
        })
        server.once("error", reject)
        server.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }))
      })
    ),
    ({ server }) => Effect.promise(() => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    }))
  )

export const graphqlCount = (sim: SimGitlab.Handle) => sim.stats().byRoute["POST /graphql"] ?? 0
