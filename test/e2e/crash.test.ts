/**
 * Scenario 3 of the e2e suite (issue 6): `kill -9` at 20 seeded random moments, alternating between
 * the fetch and the send phase, restarting `mhq-sync sync` each time on the same embedded database
 * (so every restart also recovers the orphaned postgres the killed agent left running). Between
 * runs the sim changes (new notes, merges, approvals, pipelines), but only MRs whose current
 * version has fully arrived are changed, so every version that ever existed must arrive.
 * At the end the receiver must hold exactly every version, each in exactly one batch id (a batch
 * the killed agent had posted may arrive again under the same id: the receiver de-dups it).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { ReferenceReceiver, SimGitlab } from "@mhq-sync/testkit"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Agent, captured, cleanup, workspaces, Workspace } from "./support/agent.ts"
import { ensureBuilt } from "./support/build.ts"
import { expectedRecords, identityOf, versionOf, type WireLike } from "./support/expected.ts"
import { type Canary, databaseSecrets, findLeaks, plaintextCanaries } from "./support/leaks.ts"
import { type Forwarder, startDelayingForwarder } from "./support/proxy.ts"
import { describeDifference, difference, received } from "./support/received.ts"
import { seeded } from "./support/rng.ts"
import { agentEnv, expectationOptions, secretsOf } from "./support/setup.ts"

let gitlab: SimGitlab.Handle
let receiver: ReferenceReceiver.Handle
let slowMhq: Forwarder
let ws: Workspace
/** Secrets and texts of the extra worlds some tests start (scenario 7 checks them too). */
const moreCanaries: Array<Canary> = []

beforeAll(async () => {
  await ensureBuilt()
  gitlab = await SimGitlab.start({
    seed: 33,
    projects: 5,
    mrsPerProject: 24,
    pipelinesPerProject: 6,
    deploymentsPerProject: 3,
    bigNotesMr: false,
    archivedEvery: 0,
    faults: { latencyMs: 12 }
  })
  receiver = await ReferenceReceiver.start()
  // A slightly slow MHQ, so a send phase lasts long enough to be hit.
  slowMhq = await startDelayingForwarder(receiver.url, 25)
  ws = new Workspace("crash", agentEnv(gitlab, { ...receiver, url: slowMhq.url }, {
    GITLAB_CONCURRENCY: "2",
    MHQ_BATCH_MAX_RECORDS: "25"
  }))
})

afterAll(async () => {
  await cleanup()
  await slowMhq?.close()
  await gitlab?.stop()
  await receiver?.close()
})

type Phase = "startup" | "fetch" | "send" | "exited"

const phaseOf = (agent: Agent): Phase => {
  if (agent.exit !== undefined) return "exited"
  const m = agent.messages
  if (m.some((x) => x.startsWith("send cycle:"))) return "exited"
  if (m.some((x) => /^fetch cycle \S+ finished/.test(x))) return "send"
  if (m.some((x) => /^fetch cycle \S+ started/.test(x))) return "fetch"
  return "startup"
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The embedded postgres a killed agent left running in its data directory, if any. */
const orphanedPostgres = (dataDir: string): boolean => {
  const pidFile = path.join(dataDir, "pg", "postmaster.pid")
  if (!fs.existsSync(pidFile)) return false
  try {
    process.kill(Number(fs.readFileSync(pidFile, "utf8").split("\n")[0]), 0)
    return true
  } catch {
    return false
  }
}

describe("e2e: crashes", () => {
  it("3. kill -9 at 20 random moments over fetch and send, restarting each time: nothing lost or altered, each version in one batch", async () => {
    const rng = seeded(20261204)
    const options = expectationOptions(gitlab)
    const history = new Map<string, WireLike>(expectedRecords(gitlab, options))
    const kills: Array<{ readonly target: "fetch" | "send"; readonly phase: Phase; readonly afterMs: number }> = []
    let orphans = 0
    // Phase lengths seen so far (ms); kill moments are drawn within them.
    const seen = { fetch: 4000, send: 400 }
    let attempts = 0
    let mutations = 0

    const mutate = () => {
      const have = received(receiver).versions
      const current = expectedRecords(gitlab, options)
      const incomplete = new Set<string>()
      for (const [v, r] of current) {
        if (have.has(v)) continue
        if (r.kind === "merge_request" || r.kind === "approval" || r.kind === "diff_stat") incomplete.add(`${r.project_id}:${r.key}`)
        if (r.kind === "note" || r.kind === "commit") incomplete.add(`${r.project_id}:${r.key.split(":")[0]}`)
      }
      const candidates = gitlab.projects().flatMap((p) => gitlab.mergeRequests(p.id).map((mr) => ({ p: p.id, mr }))).filter((c) => !incomplete.has(`${c.p}:${c.mr.iid}`))
      gitlab.setNow(Date.now())
      for (let k = 0; k < 3 && candidates.length > 0; k++) {
        const c = candidates.splice(rng.int(0, candidates.length - 1), 1)[0]!
        const opened = c.mr.state === "opened"
        const reviewer = c.mr.reviewers[0]
        gitlab.touchMergeRequest(c.p, c.mr.iid, {
          note: `crash-test comment ${++mutations}: please double-check the retry budget before merging`,
          ...(opened && reviewer !== undefined && rng.next() < 0.5 ? { approveBy: reviewer.id } : {}),
          ...(opened && rng.next() < 0.3 ? { merge: true } : {})
        })
      }
      gitlab.addPipelines(rng.pick(gitlab.projects()).id, 2)
      for (const [v, r] of expectedRecords(gitlab, options)) history.set(v, r)
    }

    while (kills.length < 20) {
      expect(++attempts, `kills so far: ${JSON.stringify(kills)}`).toBeLessThanOrEqual(32)
      if (attempts > 1) mutate()
      const target = kills.length % 2 === 0 ? "fetch" : "send"
      const agent = ws.spawn(["sync"])
      const anchor = target === "fetch" ? /^fetch cycle \S+ started/ : /^fetch cycle \S+ finished/
      await agent.waitForMessage((m) => anchor.test(m), 60_000)
      const anchoredAt = Date.now()
      // Within the part of the phase that is surely still running.
      const delay = Math.round(rng.next() * seen[target] * 0.85)
      await sleep(delay)
      const phase = phaseOf(agent)
      agent.kill("SIGKILL")
      const exit = await agent.wait(10_000)
      if (exit.signal === "SIGKILL") {
        kills.push({ target, phase, afterMs: delay })
        // The killed agent's postgres keeps running: the next start must stop and reuse it.
        if (orphanedPostgres(path.join(ws.cwd, "data"))) orphans++
      } else {
        expect(exit.code, agent.output).toBe(0) // finished before the kill: no kill, try again
      }
      // Learn how long the phases last (from this run's log times) for the next draws.
      const times = agent.lines.filter((l) => l.text.startsWith("{")).map((l) => ({ at: l.at, m: String((JSON.parse(l.text) as { message: unknown }).message) }))
      const fetchEnd = times.find((t) => /^fetch cycle \S+ finished/.test(t.m))?.at
      const sendEnd = times.find((t) => t.m.startsWith("send cycle:"))?.at
      if (target === "fetch" && fetchEnd !== undefined) seen.fetch = Math.max(200, fetchEnd - anchoredAt)
      if (target === "send" && fetchEnd !== undefined && sendEnd !== undefined) seen.send = Math.max(50, sendEnd - fetchEnd)
    }
    expect(kills.filter((k) => k.phase === "fetch").length, JSON.stringify(kills)).toBeGreaterThanOrEqual(6)
    expect(kills.filter((k) => k.phase === "send").length, JSON.stringify(kills)).toBeGreaterThanOrEqual(6)
    expect(orphans).toBeGreaterThanOrEqual(15)

    // Restart once more and let it finish.
    const { agent, exit } = await ws.run(["sync"], { timeoutMs: 120_000 })
    expect(exit.code, agent.output).toBe(0)

    const got = received(receiver)
    const status = await ws.statusJson()
    const diff = difference(history, got.versions)
    // Nothing extra, nothing altered, no version in two batch ids (a re-post of a batch the killed
    // agent had sent keeps its id and is de-duplicated by the receiver), nothing failed, and every
    // staged record is in the outbox.
    expect(diff.extra).toEqual([])
    expect(diff.different).toEqual([])
    expect(got.inSeveralBatches).toEqual([])
    expect(got.conflicting).toEqual([])
    expect(status.batches.failed).toBe(0)
    expect(status.undelivered).toBe(0)
    // Everything arrived: a batch the killed agent had claimed is free as soon as its session is
    // gone (see 3b), so nothing is left pending.
    expect(status.batches.pending).toBe(0)
    expect(diff.missing, describeDifference(diff)).toEqual([])
    // The newest version of every identity is the sim's current state.
    const now = [...expectedRecords(gitlab, options).values()]
    const newest = new Map<string, string>()
    for (const r of got.versions.values()) {
      const id = identityOf(r)
      const cur = newest.get(id)
      if (cur === undefined || Date.parse(r.updated_at) > Date.parse(cur)) newest.set(id, r.updated_at)
    }
    expect([...newest].map(([id, at]) => `${id}@${new Date(at).toISOString()}`).sort()).toEqual(now.map(versionOf).sort())
    console.log(`crash test: ${kills.length} kills in ${attempts} attempts (${kills.map((k) => `${k.phase}+${k.afterMs}ms`).join(", ")}); ` +
      `${history.size} versions expected, ${got.versions.size} received in ${got.batches} batches, ${receiver.duplicates} re-posts of a batch id; ` +
      `orphaned postgres recovered ${orphans} times`)
  }, 240_000)

  /**
   * A batch claimed by an agent that dies (kill -9, OOM, power loss) must not wait for its lease:
   * claims are tied to the claimer's database session (Staging.registerOwner), so the restarted
   * agent takes it over at once.
   */
  it("3b. a batch in flight when the agent is killed is delivered by the next run (not after a 300 s lease)", async () => {
    const small = await SimGitlab.start({ seed: 34, projects: 1, mrsPerProject: 3, pipelinesPerProject: 2, deploymentsPerProject: 1, bigNotesMr: false, archivedEvery: 0 })
    const mhq = await ReferenceReceiver.start()
    const hanging = await startDelayingForwarder(mhq.url, 120_000)
    moreCanaries.push(...secretsOf(small, mhq), ...plaintextCanaries(small))
    try {
      const lease = new Workspace("lease", agentEnv(small, { ...mhq, url: hanging.url }, { MHQ_BATCH_MAX_RECORDS: "500" }))
      const first = lease.spawn(["sync"])
      // Killed while its first batch POST is in flight (the forwarder holds it).
      const deadline = Date.now() + 60_000
      while (hanging.count() === 0 && first.exit === undefined && Date.now() < deadline) await sleep(20)
      expect(hanging.count(), first.output).toBeGreaterThan(0)
      first.kill("SIGKILL")
      expect((await first.wait(10_000)).signal).toBe("SIGKILL")
      hanging.setDelay(0)
      const { agent, exit } = await lease.run(["sync"])
      expect(exit.code, agent.output).toBe(0)
      const expected = expectedRecords(small, expectationOptions(small))
      const d = difference(expected, received(mhq).versions)
      const status = await lease.statusJson()
      expect({ pending: status.batches.pending, missing: d.missing.length }).toEqual({ pending: 0, missing: 0 })
    } finally {
      await hanging.close()
      await mhq.close()
      await small.stop()
    }
  }, 120_000)

  it("7. no token, secret, private key or record body in any log line of these runs", () => {
    expect(captured.length).toBeGreaterThan(100)
    expect(findLeaks(captured, [...secretsOf(gitlab, receiver), ...databaseSecrets(workspaces), ...plaintextCanaries(gitlab), ...moreCanaries])).toEqual([])
  })
})
