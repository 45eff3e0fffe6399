/**
 * Scenarios 4–6 of the e2e suite (issue 6): MHQ down for several send cycles, GitLab 429 storms
 * and 30% 5xx, malformed GitLab pages. Each against its own simulated GitLab, receiver and
 * embedded database; expectations computed independently from the sim's ground truth.
 */
import { ReferenceReceiver, SimGitlab } from "@mhq-sync/testkit"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { captured, cleanup, workspaces, Workspace } from "./support/agent.ts"
import { ensureBuilt } from "./support/build.ts"
import { expectedRecords, identityOf } from "./support/expected.ts"
import { type Canary, databaseSecrets, findLeaks, plaintextCanaries } from "./support/leaks.ts"
import { describeDifference, difference, received } from "./support/received.ts"
import { agentEnv, expectationOptions, secretsOf } from "./support/setup.ts"

const started: Array<{ stop: () => Promise<void> }> = []
const canaries: Array<Canary> = []

const world = async (options: SimGitlab.Options) => {
  const gitlab = await SimGitlab.start({ archivedEvery: 0, bigNotesMr: false, pipelinesPerProject: 6, deploymentsPerProject: 3, ...options })
  const receiver = await ReferenceReceiver.start()
  started.push({ stop: () => gitlab.stop() }, { stop: () => receiver.close() })
  canaries.push(...secretsOf(gitlab, receiver), ...plaintextCanaries(gitlab))
  return { gitlab, receiver }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

beforeAll(async () => {
  await ensureBuilt()
})

afterAll(async () => {
  await cleanup()
  for (const s of started) await s.stop()
})

describe("e2e: faults", () => {
  it("4. MHQ down for several send cycles, then up: everything delivered, no batch lost", async () => {
    const { gitlab, receiver } = await world({ seed: 44, projects: 4, mrsPerProject: 15 })
    const ws = new Workspace("down", agentEnv(gitlab, receiver, {
      MHQ_FETCH_INTERVAL: "1 hour",
      MHQ_SEND_INTERVAL: "1s",
      MHQ_HEARTBEAT_INTERVAL: "2s",
      MHQ_BATCH_MAX_RECORDS: "100"
    }))
    receiver.setReply({ status: 503 })
    const agent = ws.spawn(["run"])
    // Several send cycles while MHQ answers 503, then while connections are dropped.
    const sendCycles = () => agent.messages.filter((m) => m.startsWith("send cycle:"))
    await agent.waitUntil(() => sendCycles().length >= 3, 60_000)
    receiver.setReply("drop")
    const dropFrom = sendCycles().length
    await agent.waitUntil(() => sendCycles().length >= dropFrom + 2, 30_000)
    const whileDown = sendCycles()
    expect(receiver.batches.length).toBe(0)
    expect(whileDown.every((m) => /, 0 delivered /.test(m)), whileDown.join("\n")).toBe(true)
    expect(whileDown.some((m) => !/, 0 to retry/.test(m))).toBe(true)
    const refused = receiver.requests.filter((r) => r.status === 503 || r.status === "drop").length
    expect(refused).toBeGreaterThanOrEqual(5)

    receiver.setReply("accept")
    const expected = expectedRecords(gitlab, expectationOptions(gitlab))
    await receiver.waitFor((r) => r.records.length >= expected.size, 60_000).catch(() => undefined)
    agent.kill("SIGTERM")
    const exit = await agent.wait(15_000)
    expect(exit.code, agent.output.slice(-3000)).toBe(0)

    const got = received(receiver)
    expect(describeDifference(difference(expected, got.versions))).toBe("")
    expect(got.inSeveralBatches).toEqual([])
    const status = await ws.statusJson()
    expect(status.batches).toMatchObject({ pending: 0, failed: 0, split: 0 })
    expect(status.batches.delivered).toBe(got.batches)
    expect(status.undelivered).toBe(0)
    expect(status.failedBatches).toEqual([])
    // The daemon also told MHQ it was alive once it could, and said goodbye.
    expect(receiver.heartbeats.length).toBeGreaterThan(0)
    expect(receiver.heartbeats.at(-1)?.envelope.status).toBe("stopping")
  }, 120_000)

  it("5. 429 storms and 30% 5xx from GitLab: the run completes, the data is complete, waits follow Retry-After", async () => {
    const { gitlab, receiver } = await world({
      seed: 55,
      projects: 3,
      mrsPerProject: 10,
      // A storm right at the start (project resolution) …
      faults: { errorRate: 0.3, storm429: { count: 3, retryAfterSeconds: 2 }, latencyMs: 2 }
    })
    const ws = new Workspace("storm", agentEnv(gitlab, receiver))
    const agent = ws.spawn(["sync"])
    // … and another one in the middle of the MR fetch.
    await agent.waitForMessage((m) => m.includes("syncing 3 project(s)"), 60_000)
    await sleep(400)
    gitlab.setFaults({ storm429: { count: 5, retryAfterSeconds: 1 } })
    const exit = await agent.wait(120_000)
    expect(exit.code, agent.output.slice(-3000)).toBe(0)

    const expected = expectedRecords(gitlab, expectationOptions(gitlab))
    let got = received(receiver)
    // With 30% errors and 5 retries, one request in ~1,400 fails 6 times in a row: the product
    // then leaves that MR for the next run. Allow exactly one more run for that, and say so.
    let runs = 1
    let secondRun = Infinity
    if (difference(expected, got.versions).missing.length > 0) {
      expect(agent.output).toMatch(/failed after \d+ attempt\(s\)/)
      secondRun = Date.now()
      const again = await ws.run(["sync"], { timeoutMs: 120_000 })
      expect(again.exit.code, again.agent.output.slice(-3000)).toBe(0)
      got = received(receiver)
      runs++
    }
    expect(describeDifference(difference(expected, got.versions)), `after ${runs} run(s)`).toBe("")
    console.log(`storm test: complete after ${runs} sync run(s)`)
    expect(got.inSeveralBatches).toEqual([])

    const log = [...gitlab.stats().log].sort((a, b) => a.at - b.at)
    const limited = log.filter((e) => e.status === 429)
    const errors = log.filter((e) => e.status >= 500)
    expect(limited.length).toBe(3 + 5)
    expect(errors.length).toBeGreaterThan(10)
    // After a 429 with Retry-After N, the next request (other than ones already in flight when
    // the 429 was sent, i.e. arriving within 300 ms) comes N seconds later or more.
    const violations: Array<string> = []
    for (const e of limited) {
      const next = log.find((x) => x.at > e.at + 300)
      if (next !== undefined && next.at - e.at < e.retryAfter! * 1000 - 15) {
        violations.push(`429 (Retry-After ${e.retryAfter}) at +${e.at - log[0]!.at} ms, next request ${next.at - e.at} ms later: ${next.path}`)
      }
    }
    expect(violations).toEqual([])
    // Polite retries: within a run, no URL was tried more than 1 + 5 times for server errors.
    const perPath = new Map<string, number>()
    for (const e of errors) {
      const key = `${e.at < secondRun ? 1 : 2} ${e.path}`
      perPath.set(key, (perPath.get(key) ?? 0) + 1)
    }
    expect(Math.max(...perPath.values())).toBeLessThanOrEqual(6)
  }, 180_000)

  it("6. malformed pages (truncated JSON, wrong field types) are quarantined and reported by status, everything else arrives", async () => {
    const p = [0, 1, 2, 3].map(SimGitlab.projectIdOf)
    const { gitlab, receiver } = await world({ seed: 66, projects: 4, mrsPerProject: 12 })
    const instance = gitlab.url
    // A user comment of an MR of p1 (not !5, which is left out whole anyway).
    const noteMr = gitlab.mergeRequests(p[1]!).find((m) => m.iid !== 5 && gitlab.notes(p[1]!, m.iid).some((n) => !n.system))!
    const note = gitlab.notes(p[1]!, noteMr.iid).find((n) => !n.system)!
    const commit = gitlab.commits(p[3]!, 4)[0]!
    const pipeline = gitlab.pipelines(p[0]!)[0]!
    const deployment = gitlab.deployments(p[3]!)[0]!
    gitlab.setFaults({
      truncateJson: [`/projects/${p[0]}/merge_requests/3/notes`, `/projects/${p[2]}/pipelines`],
      wrongType: [
        { projectId: p[1]!, kind: "merge_request", id: 5 },
        { projectId: p[1]!, kind: "note", id: note.id },
        { projectId: p[3]!, kind: "commit", id: commit.id },
        { projectId: p[0]!, kind: "pipeline", id: pipeline.id },
        { projectId: p[3]!, kind: "deployment", id: deployment.id }
      ]
    })
    const ws = new Workspace("malformed", agentEnv(gitlab, receiver))
    const { agent, exit } = await ws.run(["sync"])
    expect(exit.code, agent.output.slice(-3000)).toBe(0)

    // What cannot arrive: an MR whose notes page is unreadable is staged with all its children or
    // not at all (so MR !3 of p0 and !5 of p1 are missing whole), the unreadable pipeline list of
    // p2 leaves all its pipelines out, and each record of the wrong type is left out alone.
    const id = (kind: string, projectId: number, key: string) => identityOf({ kind, instance, project_id: projectId, key })
    const expected = expectedRecords(gitlab, expectationOptions(gitlab), {
      mergeRequests: [`${p[0]}:3`, `${p[1]}:5`],
      identities: [
        id("note", p[1]!, `${noteMr.iid}:${note.id}`),
        id("commit", p[3]!, `4:${commit.id}`),
        id("pipeline", p[0]!, String(pipeline.id)),
        id("deployment", p[3]!, String(deployment.id)),
        ...gitlab.pipelines(p[2]!).map((x) => id("pipeline", p[2]!, String(x.id)))
      ]
    })
    const got = received(receiver)
    expect(describeDifference(difference(expected, got.versions))).toBe("")
    expect(got.inSeveralBatches).toEqual([])

    const status = await ws.statusJson()
    expect(status.quarantined).toBe(7)
    const byProject = Object.fromEntries(status.projects.map((x) => [x.projectId, x.quarantined]))
    expect(byProject).toEqual({ [p[0]!]: 2, [p[1]!]: 2, [p[2]!]: 1, [p[3]!]: 2 })
    expect(status.batches).toMatchObject({ pending: 0, failed: 0 })
    // The plain status names them too.
    const plain = await ws.run(["status"])
    expect(plain.exit.code).toBe(0)
    expect(plain.agent.stdout).toMatch(/quarantined: 7/)
  }, 120_000)

  it("7. no token, secret, private key or record body in any log line of these runs", () => {
    expect(captured.length).toBeGreaterThan(50)
    expect(findLeaks(captured, [...canaries, ...databaseSecrets(workspaces)])).toEqual([])
  })
})
