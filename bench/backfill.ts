/**
 * bench/backfill: a first (backfill) fetch of the simulated GitLab by the real product binary —
 * `node dist/mhq-sync.mjs fetch`, configured through the environment like a user would
 * (GITLAB_GROUPS = the sim's top-level groups) — into a fresh database on the local PostgreSQL
 * server; then an incremental `fetch` with no changes on the same database.
 *
 * Measured: wall time (spawn to exit, so process start and migrations are included), requests
 * (counted by the sim, which runs in its own process: `dist/sim-gitlab.mjs`), the latency-bound
 * limit (requests x latency / concurrency) and the ratio, and the agent process's peak RSS
 * (/proc/<pid>/status VmHWM, VmRSS sampled every 50 ms).
 *
 *   npm run build && node dist/bench/backfill.mjs [--projects 23] [--mrs 500] [--latency 20] [--concurrency 4]
 *
 * The sim archives every 7th project and the agent skips archived projects, so 23 projects give
 * 20 synced projects (23 x 500 -> 10,000 MRs synced). The request budget is lifted
 * (GITLAB_REQUESTS_PER_MINUTE=100000): the bench measures how well the agent keeps its
 * `concurrency` request slots busy, not the politeness pacing.
 */
import { parseArgs } from "node:util"
import {
  agentEnv, fmtMb, fmtS, freshServerDatabase, isMain, log, printTable, type Sim, spawnAgent, stagedFromFetchOutput, startSim,
  statsDelta, tempDir
} from "./util.ts"
import * as fs from "node:fs"

export interface FetchResult {
  readonly wallMs: number
  readonly exitCode: number | null
  readonly requests: number
  readonly byRoute: Readonly<Record<string, number>>
  readonly non200: number
  readonly peakRss: number
  readonly meanRss: number
  readonly lastRss: number
  /** CPU time of the agent process (user + system), as of its last sample before exit. */
  readonly cpuMs: number
  readonly staged: ReturnType<typeof stagedFromFetchOutput>
}

/** One `mhq-sync fetch` against the sim into `databaseUrl`. */
export const fetchOnce = async (sim: Sim, databaseUrl: string, concurrency: number): Promise<FetchResult> => {
  const cwd = tempDir("mhq-bench-fetch-")
  try {
    const before = await sim.stats()
    const agent = spawnAgent(["fetch"], agentEnv({ sim, concurrency, databaseUrl }), cwd)
    const { at, code } = await agent.exited
    const delta = statsDelta(before, await sim.stats())
    return {
      wallMs: at - agent.spawnedAt,
      exitCode: code,
      requests: delta.total,
      byRoute: delta.byRoute,
      non200: delta.non200,
      peakRss: agent.sampler.peak(),
      meanRss: agent.sampler.meanRss(),
      lastRss: agent.sampler.lastRss,
      cpuMs: agent.sampler.cpuMs,
      staged: stagedFromFetchOutput(agent.stdout)
    }
  } finally {
    fs.rmSync(cwd, { recursive: true, force: true })
  }
}

export interface BackfillResult {
  readonly sim: { readonly projects: number; readonly activeProjects: number; readonly mrsPerProject: number; readonly latency: number }
  readonly mrsSynced: number
  readonly concurrency: number
  readonly backfill: FetchResult
  readonly limitMs: number
  readonly ratio: number
  readonly incremental?: FetchResult | undefined
}

/** Backfill (and optionally an incremental run right after) on a fresh server database. */
export const backfill = async (sim: Sim, o: { readonly concurrency: number; readonly incremental?: boolean; readonly label: string }): Promise<BackfillResult> => {
  const db = freshServerDatabase(o.label)
  try {
    log(`backfill ${o.label}: ${sim.activeProjects} projects x ${sim.mrsPerProject} MRs, latency ${sim.latency} ms, concurrency ${o.concurrency} …`)
    const first = await fetchOnce(sim, db.url, o.concurrency)
    const limitMs = (first.requests * sim.latency) / o.concurrency
    log(`  ${fmtS(first.wallMs)}, ${first.requests} requests, limit ${fmtS(limitMs)}, ratio ${(first.wallMs / limitMs).toFixed(2)}, peak RSS ${fmtMb(first.peakRss)}, exit ${first.exitCode}`)
    let incremental: FetchResult | undefined
    if (o.incremental) {
      log(`incremental fetch (no changes) on the same database …`)
      incremental = await fetchOnce(sim, db.url, o.concurrency)
      log(`  ${fmtS(incremental.wallMs)}, ${incremental.requests} requests ${JSON.stringify(incremental.byRoute)}`)
    }
    return {
      sim: { projects: sim.projects, activeProjects: sim.activeProjects, mrsPerProject: sim.mrsPerProject, latency: sim.latency },
      mrsSynced: sim.activeProjects * sim.mrsPerProject,
      concurrency: o.concurrency,
      backfill: first,
      limitMs,
      ratio: first.wallMs / limitMs,
      incremental
    }
  } finally {
    db.drop()
  }
}

if (isMain("backfill")) {
  const { values } = parseArgs({
    options: {
      projects: { type: "string", default: "23" },
      mrs: { type: "string", default: "500" },
      latency: { type: "string", default: "20" },
      concurrency: { type: "string", default: "4" }
    }
  })
  const sim = await startSim({ projects: Number(values.projects), mrs: Number(values.mrs), latency: Number(values.latency) })
  try {
    const r = await backfill(sim, { concurrency: Number(values.concurrency), incremental: true, label: "backfill" })
    printTable(`backfill by dist/mhq-sync.mjs fetch: ${r.sim.activeProjects} projects x ${r.sim.mrsPerProject} MRs, ${r.sim.latency} ms latency, concurrency ${r.concurrency}, server database`, [{
      "wall time": fmtS(r.backfill.wallMs),
      "requests": r.backfill.requests,
      "latency-bound limit": fmtS(r.limitMs),
      "ratio": r.ratio.toFixed(2),
      "peak RSS": fmtMb(r.backfill.peakRss),
      "mean RSS": fmtMb(r.backfill.meanRss),
      "records staged": r.backfill.staged.inserted,
      "incremental requests": r.incremental?.requests ?? ""
    }])
    console.log("requests by route:", r.backfill.byRoute)
  } finally {
    await sim.stop()
  }
}
