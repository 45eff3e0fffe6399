/**
 * Diff stats and commits read in batches over GraphQL: same records as the REST path, one request
 * per batch, and every gap (missing MR, null field, more than 100 commits, failing or unsupported
 * GraphQL) filled over REST for exactly the MRs concerned.
 */
import { assert, layer } from "@effect/vitest"
import { Staging } from "@mhq-sync/core"
import { SimGitlab, TestDatabase } from "@mhq-sync/testkit"
import { Effect } from "effect"
import { GitlabClient, MergeRequestDetails, Sync } from "../src/index.ts"
import { captureLogs, configOf, fast, graphqlCount, graphqlProxy, routeCount } from "./helpers.ts"

const pid = SimGitlab.projectIdOf(0)
const pid1 = SimGitlab.projectIdOf(1)
const commitsRoute = "/projects/:id/merge_requests/:iid/commits"
const diffsRoute = "/projects/:id/merge_requests/:iid/diffs"

const recordsOf = (instance: string, kind: string, projectId: number) =>
  Effect.flatMap(Staging.Staging, (s) => s.records({ instance, kind, projectId }))

/** Staged records of a project without the instance, comparable across two sims. */
const snapshot = (instance: string, projectId: number) =>
  Effect.gen(function*() {
    const out: Record<string, unknown> = {}
    for (const kind of ["merge_request", "note", "approval", "commit", "diff_stat"]) {
      for (const r of yield* recordsOf(instance, kind, projectId)) out[`${kind} ${r.key}`] = { updatedAt: r.updatedAt, data: r.data }
    }
    // web links name the sim's port
    return JSON.parse(JSON.stringify(out).split(instance).join("<gitlab>"))
  })

/** REST paths (without query) of `route` requests in the sim's log. */
const restPaths = (sim: SimGitlab.Handle, route: string) =>
  sim.stats().log.filter((e) => e.route === `GET ${route}`).map((e) => e.path.split("?")[0]).sort()

layer(TestDatabase.staging("server"), { timeout: "120 seconds", excludeTestServices: true })("MergeRequestDetails", (it) => {
  it.effect("fetch: diff stats as counted from the diffs, commits as REST gives them, for a batch of MRs in one request", () =>
    Effect.scoped(Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 8, bigNotesMr: false })
      const client = yield* GitlabClient.make(configOf(sim), fast)
      const project = sim.projects()[0]!
      const scope = { instance: client.instance, projectId: pid, projectPath: project.pathWithNamespace }
      const got = yield* MergeRequestDetails.fetch(client, scope, [1, 2, 3, 4, 5])
      assert.strictEqual(sim.stats().total, 1)
      assert.deepStrictEqual([...got.keys()].sort(), [1, 2, 3, 4, 5])
      for (const iid of [1, 2, 3, 4, 5]) {
        const d = got.get(iid)!
        const diffs = sim.diffs(pid, iid)
        const lines = diffs.map((x) => SimGitlab.diffLineCounts(x.diff)).reduce((a, b) => ({ additions: a.additions + b.additions, deletions: a.deletions + b.deletions }), { additions: 0, deletions: 0 })
        assert.deepStrictEqual(d.stat, { ...lines, files_changed: diffs.length, files_without_diff: 0 })
        const rest = sim.commits(pid, iid)
        assert.deepStrictEqual(
          d.commits!.items.map((c) => [c.id, c.authored_date, c.committed_date, c.created_at, c.author_name, c.author_email]),
          rest.map((c) => [c.id, new Date(c.authored_date).toISOString(), new Date(c.committed_date).toISOString(), new Date(c.created_at).toISOString(), c.author_name, c.author_email])
        )
        assert.deepStrictEqual(d.commits!.quarantine, [])
      }
      // A project path GitLab does not know: the batch fails, to be read over REST.
      const missing = yield* Effect.flip(MergeRequestDetails.fetch(client, { ...scope, projectPath: "nobody/nothing" }, [1]))
      assert.strictEqual(missing._tag, "GraphqlFailed")
    })))

  it.effect("sync: GraphQL and REST paths stage identical records; GraphQL sends one request per batch instead of two per MR", () =>
    Effect.gen(function*() {
      const now = Date.now()
      const viaGraphql = yield* SimGitlab.make({ projects: 2, mrsPerProject: 9, now })
      const viaRest = yield* SimGitlab.make({ projects: 2, mrsPerProject: 9, now })
      const g = configOf(viaGraphql, { projects: [pid, pid1], graphqlBatchSize: 4 })
      const r = configOf(viaRest, { projects: [pid, pid1], graphql: false })
      const rg = yield* Sync.run(g, { client: fast })
      const rr = yield* Sync.run(r, { client: fast })
      assert.strictEqual(rg.status, "ok")
      assert.strictEqual(rr.status, "ok")
      for (const p of [pid, pid1]) assert.deepStrictEqual(yield* snapshot(g.url, p), yield* snapshot(r.url, p))
      // 9 changed MRs per project in batches of 4: 3 requests per project, and no REST commits/diffs.
      assert.strictEqual(graphqlCount(viaGraphql), 6)
      assert.strictEqual(routeCount(viaGraphql, commitsRoute), 0)
      assert.strictEqual(routeCount(viaGraphql, diffsRoute), 0)
      assert.strictEqual(graphqlCount(viaRest), 0)
      assert.strictEqual(routeCount(viaRest, commitsRoute), 18)
      assert.isAtLeast(routeCount(viaRest, diffsRoute), 18)
      assert.strictEqual(viaGraphql.stats().total, viaRest.stats().total - routeCount(viaRest, commitsRoute) - routeCount(viaRest, diffsRoute) + 6)
    }))

  it.effect("gaps in the answer go to REST for exactly those MRs: missing MR, null diff stats, more than one page of commits", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 6, bigNotesMr: false })
      const proxy = yield* graphqlProxy(sim, (body) => {
        const nodes = body.data.project.mergeRequests.nodes as Array<any>
        return {
          status: 200,
          body: {
            data: {
              project: {
                mergeRequests: {
                  nodes: nodes.filter((n) => n.iid !== "2").map((n) =>
                    n.iid === "3" ? { ...n, diffStatsSummary: null }
                    : n.iid === "4" ? { ...n, commits: { ...n.commits, pageInfo: { hasNextPage: true } } }
                    : n
                  )
                }
              }
            }
          }
        }
      })
      const config = configOf(sim, { url: proxy.url, projects: [pid] })
      const report = yield* Sync.run(config, { client: fast })
      assert.strictEqual(report.status, "ok")
      assert.strictEqual(graphqlCount(sim), 1)
      assert.deepStrictEqual(restPaths(sim, commitsRoute), [`/projects/${pid}/merge_requests/2/commits`, `/projects/${pid}/merge_requests/4/commits`])
      assert.deepStrictEqual(restPaths(sim, diffsRoute).filter((p, i, a) => a.indexOf(p) === i), [`/projects/${pid}/merge_requests/2/diffs`, `/projects/${pid}/merge_requests/3/diffs`])
      const commits = yield* recordsOf(config.url, "commit", pid)
      const stats = yield* recordsOf(config.url, "diff_stat", pid)
      for (const iid of [1, 2, 3, 4, 5, 6]) {
        assert.strictEqual(commits.filter((c) => c.key.startsWith(`${iid}:`)).length, sim.commits(pid, iid).length, `commits of !${iid}`)
        assert.strictEqual((stats.find((s) => s.key === String(iid))!.data as any).files_changed, sim.diffs(pid, iid).length, `diff stat of !${iid}`)
      }
    }))

  it.effect("an instance without these GraphQL fields (older GitLab) or without GraphQL: one warning, then REST for the rest of the run", () =>
    Effect.gen(function*() {
      for (const mode of ["legacy", "disabled"] as const) {
        const logs = captureLogs()
        const sim = yield* SimGitlab.make({ projects: 2, mrsPerProject: 5, bigNotesMr: false, graphql: mode })
        const config = configOf(sim, { projects: [pid, pid1], concurrency: 1 })
        const report = yield* Sync.run(config, { client: fast, projectConcurrency: 1 }).pipe(Effect.provide(logs.layer))
        assert.strictEqual(report.status, "ok", mode)
        assert.strictEqual(graphqlCount(sim), 1, mode)
        assert.strictEqual(report.warnings.length, 1, mode)
        assert.match(report.warnings[0]!, mode === "legacy" ? /Field 'commits' doesn't exist on type 'MergeRequest'/ : /404/)
        assert.match(report.warnings[0]!, /read per MR over REST/)
        assert.strictEqual(logs.lines.filter((l) => l.includes("cannot answer the GraphQL query")).length, 1, mode)
        assert.strictEqual(routeCount(sim, commitsRoute), 10, mode)
        for (const p of [pid, pid1]) {
          assert.strictEqual((yield* recordsOf(config.url, "diff_stat", p)).length, 5, mode)
          assert.strictEqual((yield* recordsOf(config.url, "commit", p)).length, [1, 2, 3, 4, 5].reduce((n, iid) => n + sim.commits(p, iid).length, 0), mode)
        }
      }
    }))

  it.effect("a failing GraphQL request (5xx after retries) reads that batch over REST, with a warning; nothing is lost", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 5, bigNotesMr: false })
      let failures = 0
      const proxy = yield* graphqlProxy(sim, () => {
        failures++
        return { status: 502, body: { message: "502 Bad Gateway" } }
      })
      const config = configOf(sim, { url: proxy.url, projects: [pid] })
      const report = yield* Sync.run(config, { client: { ...fast, retries: 2 } })
      assert.strictEqual(report.status, "ok")
      assert.strictEqual(failures, 3) // 1 + 2 retries, then REST
      const pr = report.projects[0]!
      assert.isTrue(pr.warnings.some((w) => /GraphQL query for diff stats and commits failed.*read over REST/.test(w)), pr.warnings.join("\n"))
      assert.strictEqual(routeCount(sim, commitsRoute), 5)
      assert.strictEqual((yield* recordsOf(config.url, "diff_stat", pid)).length, 5)
    }))

  it.effect("a malformed commit in the GraphQL answer is quarantined alone; its MR and the other commits are staged", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 4, bigNotesMr: false })
      const bad = sim.commits(pid, 2)[0]!
      sim.setFaults({ wrongType: [{ projectId: pid, kind: "commit", id: bad.id }] })
      const config = configOf(sim, { projects: [pid] })
      const report = yield* Sync.run(config, { client: fast })
      assert.strictEqual(report.status, "ok")
      assert.strictEqual(routeCount(sim, commitsRoute), 0)
      const commits = (yield* recordsOf(config.url, "commit", pid)).filter((c) => c.key.startsWith("2:"))
      assert.strictEqual(commits.length, sim.commits(pid, 2).length - 1)
      const q = (yield* Effect.flatMap(Staging.Staging, (s) => s.quarantined())).filter((e) => e.instance === config.url)
      assert.strictEqual(q.length, 1)
      assert.strictEqual(q[0]!.kind, "commit")
      assert.include(q[0]!.origin, "/api/graphql")
      assert.include(q[0]!.raw, bad.id)
    }))

  it.effect("repository disabled: GraphQL answers null, one REST probe per endpoint says so, both kinds are skipped with one warning each", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 2, mrsPerProject: 7, bigNotesMr: false, projectFlags: { [pid]: { repositoryDisabled: true } } })
      const config = configOf(sim, { projects: [pid, pid1], graphqlBatchSize: 3 })
      const report = yield* Sync.run(config, { client: fast })
      assert.strictEqual(report.status, "ok")
      const p0 = report.projects.find((p) => p.projectId === pid)!
      assert.deepStrictEqual(p0.warnings.map((w) => w.split(":")[0]).sort(), ["commit", "diff_stat"])
      assert.deepStrictEqual(restPaths(sim, commitsRoute).filter((p) => p.includes(`/${pid}/`)).length, 1)
      assert.deepStrictEqual(restPaths(sim, diffsRoute).filter((p) => p.includes(`/${pid}/`)).length, 1)
      // p1: 7 MRs by 3 = 3 batches; p0: at most its 3 (batches not yet sent when the probes find out are skipped)
      assert.isAtLeast(graphqlCount(sim), 1 + 3)
      assert.isAtMost(graphqlCount(sim), 3 + 3)
      assert.strictEqual((yield* recordsOf(config.url, "merge_request", pid)).length, 7)
      assert.strictEqual((yield* recordsOf(config.url, "commit", pid)).length, 0)
      assert.strictEqual((yield* recordsOf(config.url, "diff_stat", pid1)).length, 7)
    }))

  it.effect("graphql: false never asks GraphQL", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 3, bigNotesMr: false })
      const report = yield* Sync.run(configOf(sim, { projects: [pid], graphql: false }), { client: fast })
      assert.strictEqual(report.status, "ok")
      assert.strictEqual(graphqlCount(sim), 0)
      assert.strictEqual(routeCount(sim, commitsRoute), 3)
    }))
})
