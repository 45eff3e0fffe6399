/**
 * Scenario 8 of the e2e suite (issue 6): two `mhq-sync run` daemons on one PostgreSQL server
 * database (DATABASE_URL = a fresh database), against one simulated GitLab and one receiver, while
 * GitLab keeps changing. Each agent reaches GitLab through its own forward proxy (GITLAB_PROXY),
 * which tells their requests apart: per project, the two agents' requests never overlap in time
 * (no project fetched twice at once), and no batch is sent twice.
 */
import { ReferenceReceiver, SimGitlab, TestDatabase } from "@mhq-sync/testkit"
import { Effect, Exit, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { captured, cleanup, workspaces, Workspace } from "./support/agent.ts"
import { ensureBuilt } from "./support/build.ts"
import { expectedRecords, type WireLike } from "./support/expected.ts"
import { databaseSecrets, findLeaks, plaintextCanaries } from "./support/leaks.ts"
import { type GitlabProxy, type ProxiedRequest, startGitlabProxy } from "./support/proxy.ts"
import { describeDifference, difference, received } from "./support/received.ts"
import { seeded } from "./support/rng.ts"
import { agentEnv, expectationOptions, secretsOf } from "./support/setup.ts"

let gitlab: SimGitlab.Handle
let receiver: ReferenceReceiver.Handle
let proxies: Array<GitlabProxy> = []
let scope: Scope.Closeable
let databaseUrl: string

beforeAll(async () => {
  await ensureBuilt()
  scope = await Effect.runPromise(Scope.make())
  databaseUrl = (await Effect.runPromise(Scope.provide(TestDatabase.freshServerDatabase, scope))).url
  gitlab = await SimGitlab.start({
    seed: 88,
    projects: 5,
    mrsPerProject: 20,
    pipelinesPerProject: 6,
    deploymentsPerProject: 3,
    bigNotesMr: false,
    archivedEvery: 0,
    // Slow enough that a fetch lasts a few seconds: two unlocked agents would overlap.
    faults: { latencyMs: 10 }
  })
  receiver = await ReferenceReceiver.start()
  proxies = [await startGitlabProxy("A"), await startGitlabProxy("B")]
})

afterAll(async () => {
  await cleanup()
  for (const p of proxies) await p.close()
  await gitlab?.stop()
  await receiver?.close()
  if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The project a GitLab API path belongs to, if any. */
const projectOf = (path: string): number | undefined => {
  const m = /^\/api\/v4\/projects\/(\d+)(?:[/?]|$)/.exec(path)
  return m ? Number(m[1]) : undefined
}

describe("e2e: two agents, one database", () => {
  it("8. two agents on one Postgres database: no project fetched by both at once, no batch sent twice", async () => {
    const rng = seeded(8)
    const options = expectationOptions(gitlab)
    const history = new Map<string, WireLike>(expectedRecords(gitlab, options))
    const common = { DATABASE_URL: databaseUrl, MHQ_FETCH_INTERVAL: "2s", MHQ_SEND_INTERVAL: "1s", MHQ_HEARTBEAT_INTERVAL: "5s", MHQ_BATCH_MAX_RECORDS: "50" }
    const workspaces = proxies.map((proxy, i) =>
      new Workspace(`agent${"AB"[i]}`, agentEnv(gitlab, receiver, { ...common, GITLAB_PROXY: proxy.url, GITLAB_CONCURRENCY: "3" })))
    const agents = workspaces.map((ws) => ws.spawn(["run"]))

    // GitLab keeps changing while they run: each round, 2 MRs whose current version has fully
    // arrived get a note (some an approval or a merge), and a project gets a pipeline.
    const fetchCycles = () => agents.map((a) => a.messages.filter((m) => /^fetch cycle \S+ finished/.test(m)).length)
    const deadline = Date.now() + 60_000
    let rounds = 0
    while ((Math.min(...fetchCycles()) < 3 || rounds < 4) && Date.now() < deadline) {
      await sleep(1500)
      for (const a of agents) expect(a.exit, a.output.slice(-3000)).toBeUndefined()
      const have = received(receiver).versions
      const current = expectedRecords(gitlab, options)
      const pending = new Set<string>()
      for (const [v, r] of current) if (!have.has(v)) pending.add(`${r.project_id}:${r.key.split(":")[0]}`)
      const candidates = gitlab.projects().flatMap((p) => gitlab.mergeRequests(p.id).map((mr) => ({ p: p.id, mr }))).filter((c) => !pending.has(`${c.p}:${c.mr.iid}`))
      gitlab.setNow(Date.now())
      for (let k = 0; k < 2 && candidates.length > 0; k++) {
        const c = candidates.splice(rng.int(0, candidates.length - 1), 1)[0]!
        const reviewer = c.mr.reviewers[0]
        const opened = c.mr.state === "opened"
        gitlab.touchMergeRequest(c.p, c.mr.iid, {
          ...(opened && reviewer !== undefined && rng.next() < 0.5 ? { approveBy: reviewer.id } : {}),
          ...(opened && rng.next() < 0.3 ? { merge: true } : {})
        })
      }
      gitlab.addPipelines(rng.pick(gitlab.projects()).id, 1)
      for (const [v, r] of expectedRecords(gitlab, options)) history.set(v, r)
      rounds++
    }
    expect(Math.min(...fetchCycles()), `fetch cycles per agent: ${fetchCycles()}`).toBeGreaterThanOrEqual(2)

    // Let the last changes arrive, then stop both (SIGTERM: clean exit).
    const arrived = () => {
      const have = received(receiver).versions
      return [...history.keys()].every((v) => have.has(v))
    }
    for (const until = Date.now() + 40_000; !arrived() && Date.now() < until;) await sleep(250)
    for (const a of agents) a.kill("SIGTERM")
    for (const a of agents) expect((await a.wait(15_000)).code, a.output.slice(-3000)).toBe(0)

    // No project fetched by both at once: per project, no request of A overlaps one of B.
    const requests = proxies.flatMap((p) => p.requests)
    const byAgent = (agent: string) => requests.filter((r) => r.agent === agent)
    expect(byAgent("A").length).toBeGreaterThan(50)
    expect(byAgent("B").length).toBeGreaterThan(50)
    const overlaps: Array<string> = []
    for (const project of gitlab.projects().map((p) => p.id)) {
      const of = (agent: string) => byAgent(agent).filter((r) => projectOf(r.path) === project)
      const [a, b] = [of("A"), of("B")]
      expect(a.length + b.length).toBeGreaterThan(0)
      const overlap = (x: ProxiedRequest, y: ProxiedRequest) => x.start < (y.end || Infinity) && y.start < (x.end || Infinity)
      for (const x of a) for (const y of b) if (overlap(x, y)) overlaps.push(`project ${project}: A ${x.path} [${x.start}, ${x.end}] and B ${y.path} [${y.start}, ${y.end}]`)
    }
    expect(overlaps.slice(0, 5)).toEqual([])
    // Both agents did fetch MR lists (the lock made them take turns, it did not starve one).
    for (const agent of ["A", "B"]) expect(byAgent(agent).some((r) => /\/merge_requests\?/.test(r.path))).toBe(true)

    // No batch sent twice, every version exactly once.
    const got = received(receiver)
    expect(receiver.duplicates).toBe(0)
    expect(receiver.batches.every((b) => b.deliveries === 1)).toBe(true)
    expect(got.inSeveralBatches).toEqual([])
    expect(describeDifference(difference(history, got.versions))).toBe("")
    const status = await workspaces[0]!.statusJson()
    expect(status.batches).toMatchObject({ pending: 0, failed: 0 })
    expect(status.batches.delivered).toBe(receiver.batches.length)
    // Both sent some of them.
    const delivered = agents.map((a) => a.messages.filter((m) => m.startsWith("batch delivered")).length)
    console.log(`two agents: ${rounds} rounds of changes, fetch cycles ${fetchCycles()}, batches delivered by A/B ${delivered}, ` +
      `${history.size} versions, requests A/B ${byAgent("A").length}/${byAgent("B").length}`)
  }, 150_000)

  it("7. no token, secret, private key or record body in any log line of these runs", () => {
    expect(captured.length).toBeGreaterThan(50)
    expect(findLeaks(captured, [...secretsOf(gitlab, receiver), ...databaseSecrets(workspaces), ...plaintextCanaries(gitlab)])).toEqual([])
  })
})
