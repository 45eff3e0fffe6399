/**
 * `npm run bench` (= node scripts/build.mjs && node dist/bench/run.mjs): every benchmark of the
 * agent, measured in this one run, printed as ONE table on stdout (progress goes to stderr).
 * See bench/README.md for what each row means.
 *
 *   node dist/bench/run.mjs [--mrs-small 500] [--mrs-large 1500] [--projects 23] [--latency 20]
 *     [--concurrency 4] [--staging-records 100000] [--seal-records 100000] [--idle-wait 5]
 *     [--skip large,walker,coldstart,staging,seal]
 *
 * The product measured is the built binary `dist/mhq-sync.mjs`, spawned with env config; the
 * simulated GitLab runs in its own process (`dist/sim-gitlab.mjs`). Only 127.0.0.1 traffic.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { Sodium } from "@mhq-sync/mhq-sink"
import { ReferenceReceiver } from "@mhq-sync/testkit"
import { Effect } from "effect"
import { backfill, type BackfillResult } from "./backfill.ts"
import { measureSeal, record as sinkRecord } from "./sink.ts"
import { measure as measureStaging } from "./staging.ts"
import {
  agentEnv, descendants, dist, fmtInt, fmtMb, fmtS, freshServerDatabase, log, printTable, procMemory, procPss, productNodeFlags, type Sim, sleep,
  spawnAgent, startSim, stopChild, tempDir
} from "./util.ts"
import { walk, type WalkerResult } from "./walker.ts"

const { values } = parseArgs({
  options: {
    "mrs-small": { type: "string", default: "500" },
    "mrs-large": { type: "string", default: "1500" },
    projects: { type: "string", default: "23" },
    latency: { type: "string", default: "20" },
    concurrency: { type: "string", default: "4" },
    "staging-records": { type: "string", default: "100000" },
    "seal-records": { type: "string", default: "100000" },
    "idle-wait": { type: "string", default: "5" },
    skip: { type: "string", default: "" }
  }
})
const projects = Number(values.projects)
const latency = Number(values.latency)
const concurrency = Number(values.concurrency)
const skip = new Set(values.skip.split(",").map((s) => s.trim()).filter((s) => s !== ""))

for (const f of ["mhq-sync.mjs", "sim-gitlab.mjs"]) {
  if (!fs.existsSync(dist(f))) {
    console.error(`missing ${dist(f)}: run node scripts/build.mjs first (npm run bench does)`)
    process.exit(2)
  }
}

type Row = { readonly measure: string; readonly size: string; readonly result: string; readonly target: string; readonly notes: string }
const rows: Array<Row> = []
const row = (r: Row) => {
  rows.push(r)
  log(`row: ${r.measure} | ${r.size} | ${r.result} | ${r.target}`)
}
const check = (ok: boolean) => (ok ? "✓" : "✗")

// ---------------------------------------------------------------------------------------------
// Backfill, incremental, walker

const sizeOf = (r: BackfillResult) =>
  `${fmtInt(r.mrsSynced)} MRs (${r.sim.activeProjects}×${fmtInt(r.sim.mrsPerProject)})`

const backfillRow = (r: BackfillResult): Row => {
  const b = r.backfill
  return {
    measure: "backfill (mhq-sync fetch)",
    size: sizeOf(r),
    result: `${fmtS(b.wallMs)}, ${fmtInt(b.requests)} req, limit ${fmtS(r.limitMs)}, ratio ${r.ratio.toFixed(2)}, peak RSS ${fmtMb(b.peakRss)}`,
    target: `ratio ≤ 1.3 ${check(r.ratio <= 1.3)}; RSS < 150 MB ${check(b.peakRss < 150 * 1048576)}`,
    notes: `mean RSS ${fmtMb(b.meanRss)}, agent CPU ${(b.cpuMs / b.requests).toFixed(2)} ms/req, ${fmtInt(b.staged.inserted)} records staged, ${b.non200} non-200, exit ${b.exitCode}`
  }
}

const requestsOf = (byRoute: Readonly<Record<string, number>>, re: RegExp) =>
  Object.entries(byRoute).reduce((n, [k, v]) => (re.test(k) ? n + v : n), 0)

const simAndBackfill = async (mrs: number, label: string, extra: (sim: Sim, r: BackfillResult) => Promise<void>) => {
  const sim = await startSim({ projects, mrs, latency })
  try {
    const r = await backfill(sim, { concurrency, incremental: label === "small", label })
    row(backfillRow(r))
    await extra(sim, r)
    return r
  } finally {
    await sim.stop()
  }
}

const walkerRow = (name: string, w: WalkerResult, requests: number, agent: BackfillResult, compareRequests: number, what: string): Row => {
  const speed = w.wallMs / agent.backfill.wallMs
  return {
    measure: name,
    size: `${fmtInt(w.mergeRequests)} MRs (${w.projects} projects)`,
    result: `${fmtS(w.wallMs)}, ${fmtInt(requests)} req; mhq-sync is ${speed.toFixed(2)}× as fast, ${(compareRequests / requests).toFixed(2)}× the requests`,
    target: `faster ${check(speed > 1)}; no more requests ${check(compareRequests <= requests)}`,
    notes: `${what}; concurrency ${concurrency} like the agent, gitbeaker's rate limiter lifted; ${w.errors} failed calls`
  }
}

const small = await simAndBackfill(Number(values["mrs-small"]), "small", async (sim, r) => {
  const inc = r.incremental!
  const entities = 3 // merge_request (+ children), pipeline, deployment
  const perProjectEntity = inc.requests / (r.sim.activeProjects * entities)
  const routes = Object.entries(inc.byRoute).map(([k, v]) => `${k.replace(/^GET \/projects\/:id\//, "").replace(/^GET /, "")} ${v}`).join(", ")
  row({
    measure: "incremental, no changes (2nd fetch)",
    size: sizeOf(r),
    result: `${fmtInt(inc.requests)} req = ${perProjectEntity.toFixed(2)} per (project, entity); ${fmtS(inc.wallMs)}`,
    target: "",
    notes: `${r.sim.activeProjects} projects × ${entities} entities; ${routes}; ${inc.staged.inserted + inc.staged.updated} records staged`
  })
  if (skip.has("walker")) return
  // The plain walker on the same server (same data, same latency), in this process.
  const agentBy = r.backfill.byRoute
  const agentComparable = requestsOf(agentBy, /\/groups\/|\/merge_requests(\/:iid\/(notes|approvals|commits))?$|^POST \/graphql$/)
  for (const full of [false, true]) {
    log(`plain gitbeaker walker${full ? " (same data as the agent)" : ""} …`)
    const before = await sim.stats()
    const w = await walk({ url: sim.url, token: sim.token, groups: sim.topGroups, concurrency, full })
    const after = await sim.stats()
    const requests = after.total - before.total
    log(`  ${fmtS(w.wallMs)}, ${requests} requests, ${JSON.stringify(w)}`)
    row(full
      ? walkerRow("plain walker, same data as mhq-sync", w, requests, r, r.backfill.requests,
        "+ MR diffs, pipelines + each pipeline, deployments: everything the agent fetches; compared with all agent requests")
      : walkerRow("plain walker (@gitbeaker/rest)", w, requests, r, r.backfill.requests,
        `groups → MRs → notes, approvals, commits; compared with ALL agent requests, which also bring diff stats, pipelines and deployments (for the walker's data alone the agent sent ${fmtInt(agentComparable)}: lists, notes, approvals, GraphQL batches)`))
  }
})

let large: BackfillResult | undefined
if (!skip.has("large")) {
  large = await simAndBackfill(Number(values["mrs-large"]), "large", async () => {})
  const growth = large.mrsSynced / small.mrsSynced
  const rssGrowth = large.backfill.peakRss / small.backfill.peakRss
  row({
    measure: "RSS flat as data grows",
    size: `${growth.toFixed(1)}× the MRs`,
    result: `peak RSS ${fmtMb(small.backfill.peakRss)} → ${fmtMb(large.backfill.peakRss)} (${rssGrowth.toFixed(2)}×)`,
    target: `flat ${check(rssGrowth < 1.25)}`,
    notes: `mean RSS ${fmtMb(small.backfill.meanRss)} → ${fmtMb(large.backfill.meanRss)}; 100k MRs: --mrs-large 5000 (≈ 208k requests, 20+ min)`
  })
}

// ---------------------------------------------------------------------------------------------
// Cold start of the daemon to its first GitLab request, idle RSS after its first cycle

interface ColdStart {
  readonly firstRequestMs: number
  readonly cycleMs: number
  readonly idleRss: number
  readonly peakRss: number
  readonly postgresPss: number
  readonly stopMs: number
  readonly exitCode: number | null
}

const coldStart = async (sim: Sim, rx: ReferenceReceiver.Handle, cwd: string, databaseUrl: string | undefined): Promise<ColdStart> => {
  const env = agentEnv({
    sim,
    concurrency,
    databaseUrl,
    extra: {
      MHQ_WEBHOOK_URL: rx.url,
      MHQ_CLIENT_ID: "bench",
      MHQ_CLIENT_SECRET: rx.secret,
      MHQ_PUBLIC_KEY: rx.publicKey,
      MHQ_HTTP_LISTEN: "127.0.0.1:0" // the daemon as shipped serves /healthz and /metrics (ephemeral port here)
    }
  })
  const agent = spawnAgent(["run"], env, cwd)
  const cycle = await Promise.race([
    agent.waitForLog(/send cycle: \d+ batches packed/).then(() => Date.now()),
    agent.exited.then(({ code }) => Promise.reject(new Error(`mhq-sync run exited ${code} before its first cycle`))),
    sleep(300_000).then(() => Promise.reject(new Error("mhq-sync run: no send cycle within 5 minutes")))
  ])
  const stats = await sim.stats()
  const first = stats.log.find((e) => e.at >= agent.spawnedAt)
  await sleep(Number(values["idle-wait"]) * 1000)
  const idle = procMemory(agent.pid)
  const postgresPss = descendants(agent.pid).reduce((n, pid) => n + procPss(pid), 0)
  const stopAt = Date.now()
  const code = await stopChild(agent.child, "SIGTERM", 20_000)
  return {
    firstRequestMs: first ? first.at - agent.spawnedAt : NaN,
    cycleMs: cycle - agent.spawnedAt,
    idleRss: idle?.rss ?? NaN,
    peakRss: Math.max(agent.sampler.peak(), idle?.hwm ?? 0),
    postgresPss,
    stopMs: Date.now() - stopAt,
    exitCode: code
  }
}

const coldRow = (name: string, c: ColdStart, note: string): Row => ({
  measure: `cold start + idle: mhq-sync run, ${name}`,
  size: "6×30 MRs sim",
  result: `first request ${fmtInt(c.firstRequestMs)} ms; idle RSS ${fmtMb(c.idleRss)}`,
  target: "",
  notes: `first cycle done at ${fmtS(c.cycleMs)}, peak RSS ${fmtMb(c.peakRss)}${c.postgresPss > 0 ? `, embedded postgres PSS ${fmtMb(c.postgresPss)}` : ""}; SIGTERM → exit ${c.exitCode} in ${fmtInt(c.stopMs)} ms; ${note}`
})

if (!skip.has("coldstart")) {
  await Sodium.ready()
  const rx = await ReferenceReceiver.start()
  const sim = await startSim({ projects: 6, mrs: 30, latency, logLimit: 100_000 })
  try {
    log("cold start: mhq-sync run, server database …")
    const db = freshServerDatabase("coldstart")
    const cwd = tempDir("mhq-bench-run-")
    try {
      row(coldRow("server DB", await coldStart(sim, rx, cwd, db.url), "fresh database on 127.0.0.1:5432 (migrations included)"))
    } finally {
      db.drop()
      fs.rmSync(cwd, { recursive: true, force: true })
    }
    log("cold start: mhq-sync run, embedded database (first start, then restart) …")
    const home = tempDir("mhq-bench-embedded-")
    // mkdtemp makes 0700 dirs; as root the embedded cluster runs as the unprivileged 'postgres'
    // user, which must reach ./data (what the agent tells an operator to arrange, too).
    fs.chmodSync(home, 0o755)
    try {
      row(coldRow("embedded, first start", await coldStart(sim, rx, home, undefined), `default MHQ_DATA_DIR (./data in a temp dir): initdb included`))
      row(coldRow("embedded, restart", await coldStart(sim, rx, home, undefined), "same data dir (cluster exists)"))
    } finally {
      fs.rmSync(home, { recursive: true, force: true })
    }
  } finally {
    await sim.stop()
    await rx.close()
  }
}

// ---------------------------------------------------------------------------------------------
// Staging records/s and sealing MB/s (in this process)

if (!skip.has("staging")) {
  const total = Number(values["staging-records"])
  for (const backend of ["server", "embedded"] as const) {
    log(`staging ${total} records, ${backend} …`)
    const r = await Effect.runPromise(measureStaging(backend, total))
    const [insert, unchanged, pack] = r
    row({
      measure: `staging (${backend} DB)`,
      size: `${fmtInt(total)} records`,
      result: `${fmtInt(insert!.perSecond)} records/s`,
      target: "",
      notes: `insert ${insert!.seconds.toFixed(1)} s; unchanged re-stage ${fmtInt(unchanged!.perSecond)}/s; ${pack!.phase} ${fmtInt(pack!.perSecond)}/s`
    })
  }
}

if (!skip.has("seal")) {
  const total = Number(values["seal-records"])
  log(`sealing ${total} records …`)
  const records = Array.from({ length: total }, (_, i) => sinkRecord(i))
  const s = await measureSeal(records)
  row({
    measure: "sealing (gzip + sealed box)",
    size: `${fmtInt(total)} records, ${fmtMb(s.jsonBytes)} JSON`,
    result: `${s.sealMBps.toFixed(1)} MB/s of JSON`,
    target: "",
    notes: `batches of 500; gzip ${(s.jsonBytes / s.compressedBytes).toFixed(1)}×; receiver open+validate ${s.openMBps.toFixed(1)} MB/s`
  })
}

printTable(
  `mhq-sync benchmark — ${new Date().toISOString().slice(0, 16)}Z, node ${process.version}, node ${productNodeFlags.join(" ")} ${path.basename(dist("mhq-sync.mjs"))}; ` +
    `sim in its own process at ${latency} ms latency, request budget lifted, concurrency ${concurrency}, server database 127.0.0.1:5432 unless noted`,
  rows
)
process.exit(0)
