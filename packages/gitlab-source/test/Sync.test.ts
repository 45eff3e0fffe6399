import { assert, layer } from "@effect/vitest"
import { Staging } from "@mhq-sync/core"
import { SimGitlab, TestDatabase } from "@mhq-sync/testkit"
import { Effect, Option } from "effect"
import { Sync } from "../src/index.ts"
import { captureLogs, configOf, fast, graphqlCount, routeCount } from "./helpers.ts"

const p0 = SimGitlab.projectIdOf(0)
const p1 = SimGitlab.projectIdOf(1)
const p2 = SimGitlab.projectIdOf(2)
const lists = ["/projects/:id/merge_requests", "/projects/:id/pipelines", "/projects/:id/deployments"]
const children = [
  "/projects/:id/merge_requests/:iid/notes",
  "/projects/:id/merge_requests/:iid/approvals",
  "/projects/:id/merge_requests/:iid/commits",
  "/projects/:id/merge_requests/:iid/diffs"
]

const recordsOf = (instance: string, kind: string, projectId: number) =>
  Effect.flatMap(Staging.Staging, (s) => s.records({ instance, kind, projectId }))

layer(TestDatabase.staging("server"), { timeout: "120 seconds", excludeTestServices: true })("Sync", (it) => {
  it.effect("backfill: every entity decoded, minimised and staged; >100 notes on one MR all fetched; run log written", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 2, mrsPerProject: 6 })
      const config = configOf(sim, { projects: [p0], privacy: { emails: "hash", names: "keep" } })
      const report = yield* Sync.run(config, { client: fast })
      assert.strictEqual(report.status, "ok")
      assert.strictEqual(report.projects.length, 1)
      const pr = report.projects[0]!
      assert.deepStrictEqual(pr.errors, [])
      const i = config.url

      // merge requests
      const mrs = yield* recordsOf(i, "merge_request", p0)
      assert.strictEqual(mrs.length, 6)
      const gl = sim.mergeRequests(p0).find((m) => m.iid === 1)!
      const mr1 = mrs.find((r) => r.key === "1")!.data as Record<string, unknown>
      assert.strictEqual(mr1["title"], gl.title)
      assert.strictEqual(mr1["state"], gl.state)
      assert.strictEqual(mr1["author_username"], gl.author.username)
      assert.deepStrictEqual(mr1["reviewer_usernames"], gl.reviewers.map((r) => r.username))
      assert.strictEqual(mr1["updated_at"], gl.updated_at)
      assert.notProperty(mr1, "description")

      // notes: all pages, bodies only for system notes
      const notes = (yield* recordsOf(i, "note", p0)).filter((r) => r.key.startsWith("1:"))
      const glNotes = sim.notes(p0, 1)
      assert.isAbove(glNotes.length, 100)
      assert.strictEqual(notes.length, glNotes.length)
      for (const n of notes) {
        const d = n.data as Record<string, unknown>
        const g = glNotes.find((x) => x.id === d["id"])!
        assert.strictEqual(d["body"], g.system ? g.body : null)
      }
      assert.isTrue(notes.some((n) => (n.data as any).system && (n.data as any).body !== null))

      // approvals
      const appr = (yield* recordsOf(i, "approval", p0)).find((r) => r.key === "1")!.data as any
      assert.deepStrictEqual(appr.approved_by.map((a: any) => a.username), sim.approvals(p0, 1).approved_by.map((a) => a.user.username))

      // commits: privacy applied, no message
      const commits = (yield* recordsOf(i, "commit", p0)).filter((r) => r.key.startsWith("1:"))
      assert.strictEqual(commits.length, sim.commits(p0, 1).length)
      for (const c of commits) {
        assert.match((c.data as any).author_email, /^sha256:/)
        assert.isString((c.data as any).author_name)
        assert.notProperty(c.data as object, "message")
      }

      // diff stats (GitLab's diffStatsSummary, equal to counting the diffs)
      const stat = (yield* recordsOf(i, "diff_stat", p0)).find((r) => r.key === "1")!.data as any
      const diffs = sim.diffs(p0, 1)
      const want = diffs.map((d) => SimGitlab.diffLineCounts(d.diff)).reduce((a, b) => ({ additions: a.additions + b.additions, deletions: a.deletions + b.deletions }), { additions: 0, deletions: 0 })
      assert.deepStrictEqual({ additions: stat.additions, deletions: stat.deletions, files: stat.files_changed }, { ...want, files: diffs.length })
      assert.notInclude(JSON.stringify(stat), "@@")

      // pipelines with detail-only fields; deployments
      const pipelines = yield* recordsOf(i, "pipeline", p0)
      assert.strictEqual(pipelines.length, sim.pipelines(p0).length)
      for (const p of pipelines) {
        const g = sim.pipelines(p0).find((x) => String(x.id) === p.key)!
        assert.strictEqual((p.data as any).duration, g.duration ?? null)
        assert.strictEqual((p.data as any).started_at, g.started_at ?? null)
      }
      const deployments = yield* recordsOf(i, "deployment", p0)
      assert.strictEqual(deployments.length, sim.deployments(p0).length)
      const d0 = sim.deployments(p0)[0]!
      assert.strictEqual((deployments.find((d) => d.key === String(d0.id))!.data as any).environment, d0.environment.name)

      const project = yield* recordsOf(i, "project", p0)
      assert.strictEqual((project[0]!.data as any).path_with_namespace, sim.projects()[0]!.pathWithNamespace)

      // counts + run log
      assert.strictEqual(pr.counts["merge_request"], 6)
      assert.strictEqual(pr.requests, sim.stats().total - 1) // minus the resolution request
      const staging = yield* Staging.Staging
      const runs = yield* staging.runs({ instance: i, projectId: p0 })
      assert.strictEqual(runs.length, 1)
      assert.strictEqual(runs[0]!.status, "ok")
      assert.strictEqual(runs[0]!.counts!["note"], pr.counts["note"])
      assert.strictEqual(runs[0]!.cycleId, report.cycleId)
      const cursor = yield* staging.cursor({ instance: i, projectId: p0, kind: "merge_request" })
      assert.isTrue(Option.isSome(cursor))
    }))

  it.effect("second run without changes: exactly one list request per (project, entity), nothing staged", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 3, mrsPerProject: 5 })
      const config = configOf(sim, { projects: [p0, p1, p2] })
      yield* Sync.run(config, { client: fast })
      sim.resetStats()
      const report = yield* Sync.run(config, { client: fast })
      assert.strictEqual(report.status, "ok")
      for (const r of lists) assert.strictEqual(routeCount(sim, r), 3, r)
      for (const r of [...children, "/projects/:id/pipelines/:pipeline_id", "/projects/:id/deployments/:deployment_id"]) {
        assert.strictEqual(routeCount(sim, r), 0, r)
      }
      assert.strictEqual(graphqlCount(sim), 0)
      for (const p of report.projects) {
        assert.strictEqual(p.staged.inserted + p.staged.updated, 0)
        assert.strictEqual(p.requests, 3)
      }
    }))

  it.effect("changing 3 MRs re-fetches only those 3 MRs' children, staged with their MR", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 2, mrsPerProject: 8 })
      const config = configOf(sim, { projects: [p0, p1] })
      yield* Sync.run(config, { client: fast })
      sim.advanceNow(60_000)
      sim.touchMergeRequest(p0, 3, { note: "looks good" })
      sim.touchMergeRequest(p0, 5, { approveBy: 3 })
      sim.touchMergeRequest(p1, 2, { merge: true })
      sim.resetStats()
      const report = yield* Sync.run(config, { client: fast })
      assert.strictEqual(report.status, "ok")
      const fetched = sim.stats().log.filter((e) => e.route.endsWith("/notes")).map((e) => e.path.split("?")[0]).sort()
      assert.deepStrictEqual(fetched, [`/projects/${p0}/merge_requests/3/notes`, `/projects/${p0}/merge_requests/5/notes`, `/projects/${p1}/merge_requests/2/notes`])
      for (const r of children.slice(0, 2)) assert.strictEqual(routeCount(sim, r), 3, r)
      // commits and diff stats: one GraphQL request per project with changed MRs
      for (const r of children.slice(2)) assert.strictEqual(routeCount(sim, r), 0, r)
      assert.strictEqual(graphqlCount(sim), 2)
      const notes = (yield* recordsOf(config.url, "note", p0)).filter((r) => r.key.startsWith("3:"))
      assert.strictEqual(notes.length, sim.notes(p0, 3).length)
      const mr = (yield* recordsOf(config.url, "merge_request", p1)).find((r) => r.key === "2")!
      assert.strictEqual((mr.data as any).state, "merged")
    }))

  it.effect("a malformed record is quarantined (raw JSON + error + origin); its neighbours are staged", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 5 })
      const sha = sim.commits(p0, 3)[0]!.id
      sim.setFaults({ wrongType: [{ projectId: p0, kind: "merge_request", id: 2 }, { projectId: p0, kind: "commit", id: sha }] })
      const config = configOf(sim, { projects: [p0] })
      const report = yield* Sync.run(config, { client: fast })
      const mrs = yield* recordsOf(config.url, "merge_request", p0)
      assert.deepStrictEqual(mrs.map((r) => r.key).sort(), ["1", "3", "4", "5"])
      const commits = (yield* recordsOf(config.url, "commit", p0)).filter((r) => r.key.startsWith("3:"))
      assert.strictEqual(commits.length, sim.commits(p0, 3).length - 1)
      const q = yield* Effect.flatMap(Staging.Staging, (s) => s.quarantined())
      const mine = q.filter((e) => e.instance === config.url)
      assert.strictEqual(mine.length, 2)
      const mrQ = mine.find((e) => e.kind === "merge_request")!
      assert.include(mrQ.raw, `"id":"abc"`)
      assert.include(mrQ.origin, "/merge_requests")
      assert.include(mrQ.error, "Expected")
      assert.strictEqual(report.projects[0]!.counts["quarantined"], 2)
    }))

  it.effect("a truncated page is retried, quarantined with a warning; the MR is skipped until it can be fetched whole", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 2, mrsPerProject: 4 })
      sim.setFaults({ truncateJson: [`/projects/${p0}/merge_requests/2/notes`] })
      const config = configOf(sim, { projects: [p0, p1] })
      const staging = yield* Staging.Staging
      const r1 = yield* Sync.run(config, { client: fast })
      const pr = r1.projects.find((p) => p.projectId === p0)!
      assert.isTrue(pr.warnings.some((w) => w.includes("malformed JSON")))
      assert.deepStrictEqual((yield* recordsOf(config.url, "merge_request", p0)).map((r) => r.key).sort(), ["1", "3", "4"])
      assert.isTrue(Option.isNone(yield* staging.cursor({ instance: config.url, projectId: p0, kind: "merge_request" })))
      assert.isTrue(Option.isSome(yield* staging.cursor({ instance: config.url, projectId: p0, kind: "pipeline" })))
      assert.strictEqual(r1.projects.find((p) => p.projectId === p1)!.status, "ok")
      assert.isTrue((yield* staging.quarantined()).some((e) => e.instance === config.url && e.kind === "note"))

      sim.setFaults({ truncateJson: undefined })
      yield* Sync.run(config, { client: fast })
      assert.deepStrictEqual((yield* recordsOf(config.url, "merge_request", p0)).map((r) => r.key).sort(), ["1", "2", "3", "4"])
      assert.isTrue(Option.isSome(yield* staging.cursor({ instance: config.url, projectId: p0, kind: "merge_request" })))
    }))

  it.effect("CE approvals (403/404) and disabled CI are skipped with counted warnings; everything else syncs", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 2, mrsPerProject: 4, projectFlags: { [p0]: { ce: 404, ciDisabled: true } } })
      const config = configOf(sim, { projects: [p0, p1] })
      const report = yield* Sync.run(config, { client: fast })
      const pr = report.projects.find((p) => p.projectId === p0)!
      assert.strictEqual(pr.status, "ok")
      assert.strictEqual(pr.warnings.length, 3) // approvals, pipelines, deployments
      assert.isTrue(pr.warnings.some((w) => w.startsWith("approval")))
      assert.strictEqual(routeCount(sim, "/projects/:id/merge_requests/:iid/approvals"), 1 + 4) // p0 stops asking after the first 404
      assert.strictEqual(pr.counts["merge_request"], 4)
      assert.strictEqual(pr.counts["approval"], undefined)
      const run = (yield* Effect.flatMap(Staging.Staging, (s) => s.runs({ instance: config.url, projectId: p0 })))[0]!
      assert.strictEqual(run.warnings!.length, 3)
    }))

  it.effect("one project's failure does not block the others", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 3, mrsPerProject: 3, faults: { hang: [`/projects/${p1}/merge_requests`] } })
      const config = configOf(sim, { projects: [p0, p1, p2], requestTimeout: 200 })
      const report = yield* Sync.run(config, { client: { ...fast, retries: 1 } })
      assert.strictEqual(report.status, "partial")
      const by = (id: number) => report.projects.find((p) => p.projectId === id)!
      assert.strictEqual(by(p0).status, "ok")
      assert.strictEqual(by(p2).status, "ok")
      assert.strictEqual(by(p1).status, "partial")
      assert.include(by(p1).errors[0]!, "no complete response")
      assert.strictEqual(by(p1).counts["pipeline"], sim.pipelines(p1).length) // its other entities still synced
    }))

  it.effect("401 mid-run stops the instance at once with the clear message; no token in any log line", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 4, mrsPerProject: 20, faults: { latencyMs: 5, errorRate: 0.05 } })
      const logs = captureLogs()
      const config = configOf(sim, { projects: [p0, p1, p2, SimGitlab.projectIdOf(3)], concurrency: 2 })
      yield* Effect.forkChild(Effect.sleep("150 millis").pipe(Effect.andThen(Effect.sync(() => sim.revokeToken()))))
      const report = yield* Sync.run(config, { client: fast, projectConcurrency: 1 }).pipe(Effect.provide(logs.layer))
      assert.strictEqual(report.status, "failed")
      assert.isTrue(report.errors.some((e) => e.includes("token invalid, expired or revoked")))
      const log = sim.stats().log
      const first401 = log.findIndex((e) => e.status === 401)
      assert.isAtLeast(first401, 0)
      assert.isAtMost(log.length - first401, config.concurrency) // only what was already in flight
      const runs = yield* Effect.flatMap(Staging.Staging, (s) => s.runs({ instance: config.url }))
      assert.isTrue(runs.every((r) => r.status !== "running"))
      assert.isTrue(runs.some((r) => r.status === "failed"))
      assert.isAbove(logs.lines.length, 0)
      assert.isFalse(logs.lines.some((l) => l.includes(sim.token)))
      assert.isFalse(JSON.stringify(report).includes(sim.token))
    }))
})
