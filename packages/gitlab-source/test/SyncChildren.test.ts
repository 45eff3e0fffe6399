/**
 * 403/404 on one MR's child endpoint: "endpoint not offered" only while the endpoint has never
 * answered for the project; afterwards it concerns that MR alone.
 */
import { assert, layer } from "@effect/vitest"
import { Staging } from "@mhq-sync/core"
import { SimGitlab, TestDatabase } from "@mhq-sync/testkit"
import { Effect, Option } from "effect"
import { Sync } from "../src/index.ts"
import { configOf, fast, interceptingProxy } from "./helpers.ts"

const pid = SimGitlab.projectIdOf(0)
const childEndpoints = ["notes", "approvals", "commits", "diffs"]

/** iids of the sim's project in list order (oldest change first). */
const listOrder = (sim: SimGitlab.Handle) =>
  [...sim.mergeRequests(pid)].sort((a, b) => Date.parse(a.updated_at) - Date.parse(b.updated_at) || a.id - b.id).map((m) => m.iid)

const recordsOf = (instance: string, kind: string) => Effect.flatMap(Staging.Staging, (s) => s.records({ instance, kind, projectId: pid }))
const mrCursor = (instance: string) => Effect.flatMap(Staging.Staging, (s) => s.cursor({ instance, projectId: pid, kind: "merge_request" }))

layer(TestDatabase.staging("server"), { timeout: "120 seconds", excludeTestServices: true })("Sync: one MR's child endpoint failing", (it) => {
  it.effect("a 403 on one MR's notes after notes answered for others: that MR is not staged, retried next run; the rest keep their notes", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 6, bigNotesMr: false })
      const order = listOrder(sim)
      const target = order[order.length - 1]!
      let failing = true
      const proxy = yield* interceptingProxy(sim, (path) =>
        failing && path === `/api/v4/projects/${pid}/merge_requests/${target}/notes` ? 403 : undefined)
      // concurrency 1: the MRs listed first have answered for notes before the target is fetched
      const config = configOf(sim, { url: proxy.url, projects: [pid], concurrency: 1 })

      const r1 = yield* Sync.run(config, { client: fast })
      const p1 = r1.projects[0]!
      assert.strictEqual(p1.status, "partial")
      assert.isTrue(p1.errors.some((e) => e.includes(`note of MR !${target}`)), p1.errors.join("\n"))
      assert.deepStrictEqual((yield* recordsOf(config.url, "merge_request")).map((r) => Number(r.key)).sort(), order.filter((i) => i !== target).sort())
      const notes = yield* recordsOf(config.url, "note")
      for (const iid of order.filter((i) => i !== target)) {
        assert.strictEqual(notes.filter((n) => n.key.startsWith(`${iid}:`)).length, sim.notes(pid, iid).length, `notes of !${iid}`)
      }
      assert.isFalse(p1.warnings.some((w) => w.startsWith("note:")), "notes are not switched off for the project")
      assert.isTrue(Option.isNone(yield* mrCursor(config.url)), "the cursor does not pass the incomplete MR")

      failing = false
      const r2 = yield* Sync.run(config, { client: fast })
      assert.strictEqual(r2.projects[0]!.status, "ok")
      assert.strictEqual((yield* recordsOf(config.url, "merge_request")).length, order.length)
      assert.strictEqual((yield* recordsOf(config.url, "note")).filter((n) => n.key.startsWith(`${target}:`)).length, sim.notes(pid, target).length)
      assert.isTrue(Option.isSome(yield* mrCursor(config.url)))
    }))

  it.effect("an MR deleted after it was listed (404 on it and its children) is skipped with a warning, also as the first probe", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 6, bigNotesMr: false })
      const order = listOrder(sim)
      const gone = [order[0]!, order[order.length - 1]!]
      const goneBase = gone.map((iid) => `/api/v4/projects/${pid}/merge_requests/${iid}`)
      const proxy = yield* interceptingProxy(sim, (path) =>
        goneBase.some((b) => path === b || childEndpoints.some((c) => path === `${b}/${c}`)) ? 404 : undefined)
      const config = configOf(sim, { url: proxy.url, projects: [pid], concurrency: 1 })

      const report = yield* Sync.run(config, { client: fast })
      const pr = report.projects[0]!
      assert.strictEqual(pr.status, "ok", pr.errors.join("\n"))
      for (const iid of gone) assert.isTrue(pr.warnings.some((w) => w.includes(`MR !${iid}`) && w.includes("no longer exists")), pr.warnings.join("\n"))
      assert.isFalse(pr.warnings.some((w) => /^(note|approval|commit|diff_stat): skipped/.test(w)), "no endpoint switched off")
      const kept = order.filter((i) => !gone.includes(i))
      assert.deepStrictEqual((yield* recordsOf(config.url, "merge_request")).map((r) => Number(r.key)).sort(), [...kept].sort())
      const notes = yield* recordsOf(config.url, "note")
      const approvals = yield* recordsOf(config.url, "approval")
      for (const iid of kept) {
        assert.strictEqual(notes.filter((n) => n.key.startsWith(`${iid}:`)).length, sim.notes(pid, iid).length, `notes of !${iid}`)
        assert.isTrue(approvals.some((a) => a.key === String(iid)), `approvals of !${iid}`)
      }
      assert.isTrue(Option.isSome(yield* mrCursor(config.url)), "a deleted MR does not hold the cursor back")
    }))
})
