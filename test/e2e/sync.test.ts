/**
 * Scenarios 1 and 2 of the e2e suite (issue 6): a clean first run (backfill) with `mhq-sync sync`,
 * then an incremental run after 5% of the MRs changed and pipelines were added. The receiver must
 * hold exactly the independently computed set; the second delivery exactly the changed records.
 */
import { ReferenceReceiver, SimGitlab } from "@mhq-sync/testkit"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { captured, cleanup, workspaces, Workspace } from "./support/agent.ts"
import { ensureBuilt } from "./support/build.ts"
import { countByKind, expectedRecords, type WireLike } from "./support/expected.ts"
import { databaseSecrets, findLeaks, plaintextCanaries } from "./support/leaks.ts"
import { describeDifference, difference, received } from "./support/received.ts"
import { agentEnv, expectationOptions, secretsOf } from "./support/setup.ts"

let gitlab: SimGitlab.Handle
let receiver: ReferenceReceiver.Handle
let ws: Workspace

beforeAll(async () => {
  await ensureBuilt()
  gitlab = await SimGitlab.start({
    seed: 61,
    projects: 5,
    mrsPerProject: 20,
    pipelinesPerProject: 8,
    deploymentsPerProject: 4,
    bigNotesMr: { projectId: SimGitlab.projectIdOf(0), iid: 1, notes: 130 },
    archivedEvery: 0,
    // One CE-like project: approvals answer 403 and are skipped, everything else still arrives.
    projectFlags: { [SimGitlab.projectIdOf(3)]: { ce: 403 } }
  })
  receiver = await ReferenceReceiver.start()
  ws = new Workspace("sync", agentEnv(gitlab, receiver))
})

afterAll(async () => {
  await cleanup()
  await gitlab?.stop()
  await receiver?.close()
})

describe("e2e: backfill and incremental", () => {
  let before: Map<string, WireLike>

  it("1. a clean first run (sync) delivers exactly the minimised GitLab data", async () => {
    const { agent, exit } = await ws.run(["sync"])
    expect(exit.code, agent.output).toBe(0)
    before = expectedRecords(gitlab, expectationOptions(gitlab))
    const got = received(receiver)
    expect(describeDifference(difference(before, got.versions))).toBe("")
    expect(got.inSeveralBatches).toEqual([])
    expect(got.records).toBe(before.size)
    expect(receiver.duplicates).toBe(0)
    // The CE project really had no approvals to send, the others did.
    const kinds = countByKind(got.versions.values())
    expect(kinds).toEqual(countByKind(before.values()))
    expect(kinds["approval"]).toBe(4 * 20)
    expect(kinds["merge_request"]).toBe(5 * 20)
    expect(kinds["note"]).toBeGreaterThan(130)
    const status = await ws.statusJson()
    expect(status.batches).toMatchObject({ pending: 0, failed: 0 })
    expect(status.undelivered).toBe(0)
    expect(status.quarantined).toBe(0)
  })

  it("2. after 5% of MRs changed and pipelines were added, only the changed records are sent again", async () => {
    expect(before, "scenario 1 must have run").toBeDefined()
    const batchesBefore = receiver.batches.length
    // Mutations are stamped with the sim's clock: move it to now, after the first run's cursor.
    gitlab.setNow(Date.now())
    const touched = gitlab.touchMergeRequests("all", 0.05)
    expect(touched.length).toBe(5)
    const added = [
      ...gitlab.addPipelines(SimGitlab.projectIdOf(0), 3),
      ...gitlab.addPipelines(SimGitlab.projectIdOf(2), 2, "running")
    ]
    expect(added.length).toBe(5)
    const after = expectedRecords(gitlab, expectationOptions(gitlab))
    // The changed records: versions that did not exist before.
    const changed = new Map([...after].filter(([k]) => !before.has(k)))
    const kinds = countByKind(changed.values())
    expect(kinds["merge_request"]).toBe(5)
    expect(kinds["pipeline"]).toBe(5)
    expect(kinds["note"]).toBeGreaterThanOrEqual(5)

    gitlab.resetStats()
    const { agent, exit } = await ws.run(["sync"])
    expect(exit.code, agent.output).toBe(0)
    const second = received(receiver, batchesBefore)
    expect(describeDifference(difference(changed, second.versions))).toBe("")
    expect(second.records).toBe(changed.size)
    // Everything ever received is exactly the union of both states.
    const all = received(receiver)
    expect(describeDifference(difference(new Map([...before, ...after]), all.versions))).toBe("")
    expect(all.inSeveralBatches).toEqual([])
    expect(receiver.duplicates).toBe(0)
    // Incremental: children are fetched for the changed MRs only.
    const stats = gitlab.stats()
    expect(stats.byRoute["GET /projects/:id/merge_requests/:iid/notes"] ?? 0).toBe(5)
    // commits and diff stats: one GraphQL request per project with changed MRs, no REST per MR
    expect(stats.byRoute["POST /graphql"] ?? 0).toBe(new Set(touched.map((t) => t.projectId)).size)
    expect(stats.byRoute["GET /projects/:id/merge_requests/:iid/commits"] ?? 0).toBe(0)
    expect(stats.byRoute["GET /projects/:id/merge_requests/:iid/diffs"] ?? 0).toBe(0)
  })

  it("7. no token, secret, private key or record body in any log line of these runs", () => {
    expect(captured.length).toBeGreaterThan(20)
    const canaries = [...secretsOf(gitlab, receiver), ...databaseSecrets(workspaces), ...plaintextCanaries(gitlab)]
    expect(databaseSecrets(workspaces).length).toBe(1)
    expect(findLeaks(captured, canaries)).toEqual([])
    // The scan itself finds what it looks for, as is and JSON-escaped.
    const mr = gitlab.mergeRequests(SimGitlab.projectIdOf(1))[0]!
    const planted = [
      { agent: "self-test", stream: "stderr" as const, at: 0, text: JSON.stringify({ message: `request with ${gitlab.token}` }) },
      { agent: "self-test", stream: "stderr" as const, at: 0, text: JSON.stringify({ message: ["payload", { description: mr.description }] }) }
    ]
    expect(findLeaks(planted, canaries).map((l) => l.label)).toEqual(expect.arrayContaining(["GitLab token", `description of ${mr.project_id}!${mr.iid}`]))
  })
})
