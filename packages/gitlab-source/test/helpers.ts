/** Shared test fixtures: sim-backed configs, fast retry options, captured logs. */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
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
