import { assert, describe, it } from "@effect/vitest"
import { SimGitlab } from "@mhq-sync/testkit"
import * as util from "node:util"
import { Effect, Inspectable, Stream } from "effect"
import { GitlabClient, InstanceConfig } from "../src/index.ts"
import { captureLogs, configOf, fast, selfSigned } from "./helpers.ts"

const pid = SimGitlab.projectIdOf(0)

describe("GitlabClient", () => {
  it.live("offset pagination fetches every page (250 notes on one MR), per_page=100, no totals needed", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 2 })
      const client = yield* GitlabClient.make(configOf(sim), fast)
      const pages = yield* Stream.runCollect(client.paginate(`/projects/${pid}/merge_requests/1/notes`, { sort: "asc" }))
      assert.strictEqual(pages.length, 3)
      assert.strictEqual(pages.flatMap((p) => p.items).length, sim.notes(pid, 1).length)
      assert.isAbove(sim.notes(pid, 1).length, 100)
      assert.isTrue(sim.stats().log.every((e) => e.path.includes("per_page=100")))
    }))

  it.live("keyset pagination follows Link rel=next", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 7, mrsPerProject: 1, groups: 1, subgroupsPerGroup: 1, archivedEvery: 0 })
      const client = yield* GitlabClient.make(configOf(sim), { ...fast, perPage: 3 })
      const group = sim.groups().find((g) => g.parentId === null)!
      const pages = yield* Stream.runCollect(client.paginate(`/groups/${group.id}/projects`, {
        include_subgroups: true, pagination: "keyset", order_by: "id", sort: "asc"
      }))
      const ids = pages.flatMap((p) => p.items.map((x) => (x as { id: number }).id))
      assert.deepStrictEqual(ids, sim.projects().map((p) => p.id).sort((a, b) => a - b))
      assert.isTrue(sim.stats().log.slice(1).every((e) => e.path.includes("id_after=")))
    }))

  it.live("a 429 storm pauses all requests for Retry-After (asserted from the sim's request log)", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1, faults: { storm429: { count: 2, retryAfterSeconds: 1 } } })
      const logs = captureLogs()
      const client = yield* GitlabClient.make(configOf(sim), fast)
      const res = yield* client.get("/version").pipe(Effect.provide(logs.layer))
      assert.strictEqual(res.status, 200)
      const log = sim.stats().log
      assert.deepStrictEqual(log.map((e) => e.status), [429, 429, 200])
      for (let i = 1; i < log.length; i++) assert.isAtLeast(log[i]!.at - log[i - 1]!.at, 950)
      assert.isTrue(logs.lines.some((l) => l.includes("429")))
    }))

  it.live("5xx bursts and connection-level failures are retried with backoff", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 20, faults: { errorRate: 0.3 } })
      const client = yield* GitlabClient.make(configOf(sim), { ...fast, retries: 8 })
      const results = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i + 1), (iid) =>
        client.get(`/projects/${pid}/merge_requests/${iid}/approvals`), { concurrency: 4 })
      assert.strictEqual(results.length, 20)
      const byStatus = sim.stats().byStatus
      assert.isAbove((byStatus["500"] ?? 0) + (byStatus["502"] ?? 0) + (byStatus["503"] ?? 0), 0)
      assert.strictEqual(byStatus["200"], 20)
    }))

  it.live("retries are capped: a permanently failing endpoint ends in RequestFailed naming URL and status", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1, faults: { errorRate: 1, errorStatuses: [503] } })
      const client = yield* GitlabClient.make(configOf(sim), { ...fast, retries: 2 })
      const e = yield* Effect.flip(client.get("/version"))
      assert.strictEqual(e._tag, "RequestFailed")
      assert.include(e.message, "/api/v4/version")
      assert.include(e.message, "503")
      assert.strictEqual(sim.stats().total, 3)
    }))

  it.live("401 is a fatal TokenRejected with a clear message; the token never appears in errors or logs", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1 })
      const logs = captureLogs()
      const client = yield* GitlabClient.make(configOf(sim, { token: "glpat-wrong-token-value" }), fast)
      const e = yield* Effect.flip(client.get("/version")).pipe(Effect.provide(logs.layer))
      assert.strictEqual(e._tag, "TokenRejected")
      assert.include(e.message, "token invalid, expired or revoked")
      assert.strictEqual(sim.stats().total, 1) // no retries on 401
      assert.notInclude(e.message, "glpat-wrong-token-value")
      assert.notInclude(JSON.stringify(e), "glpat-wrong-token-value")
      assert.isFalse(logs.lines.some((l) => l.includes("glpat-wrong-token-value")))
    }))

  it.live("oauth tokens go as Authorization: Bearer; relative roots work", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1, relativeRoot: "/gitlab" })
      assert.isTrue(sim.url.endsWith("/gitlab"))
      const client = yield* GitlabClient.make(configOf(sim, { authKind: "oauth", url: `${sim.url}/` }), fast)
      const res = yield* client.get(`/projects/${pid}`)
      assert.strictEqual((res.json as { id: number }).id, pid)
    }))

  it.live("403/404 on an endpoint become EntityUnavailable (no retries)", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1, projectFlags: { [pid]: { ce: 403 } } })
      const client = yield* GitlabClient.make(configOf(sim), fast)
      const e = yield* Effect.flip(client.get(`/projects/${pid}/merge_requests/1/approvals`))
      assert.strictEqual(e._tag, "EntityUnavailable")
      assert.strictEqual((e as GitlabClient.EntityUnavailable).status, 403)
      assert.strictEqual(sim.stats().total, 1)
    }))

  it.live("a truncated JSON page is retried, then reported as MalformedResponse with the raw body", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1, faults: { truncateJson: ["GET /projects/:id/merge_requests"] } })
      const client = yield* GitlabClient.make(configOf(sim), fast)
      const e = yield* Effect.flip(Stream.runCollect(client.paginate(`/projects/${pid}/merge_requests`)))
      assert.strictEqual(e._tag, "MalformedResponse")
      assert.isAbove((e as GitlabClient.MalformedResponse).raw.length, 0)
      assert.strictEqual(sim.stats().total, 3) // 1 + malformedRetries
    }))

  it.live("requests per minute: requests are spaced evenly by 60s / budget", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1 })
      const client = yield* GitlabClient.make(configOf(sim, { requestsPerMinute: 600 }), fast)
      yield* Effect.forEach(Array.from({ length: 6 }), () => client.get("/version"), { concurrency: 4 })
      const at = sim.stats().log.map((e) => e.at).sort((a, b) => a - b)
      // Slots are 100 ms apart; one late timer (a loaded machine) shortens the gap after it, so
      // each gap gets some slack while the whole series must keep the budget.
      for (let i = 1; i < at.length; i++) assert.isAtLeast(at[i]! - at[i - 1]!, 60)
      assert.isAtLeast(at[at.length - 1]! - at[0]!, (at.length - 1) * 100 - 25)
    }))

  it.live("slows down when RateLimit-Remaining runs low instead of running into 429s", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1, rateLimit: { requestsPerMinute: 20, periodSeconds: 1 } })
      const client = yield* GitlabClient.make(configOf(sim), fast)
      yield* Effect.forEach(Array.from({ length: 40 }), () => client.get("/version"), { concurrency: 4 })
      const s = sim.stats()
      assert.strictEqual(s.byStatus["200"], 40)
      assert.isAtMost(s.byStatus["429"] ?? 0, 8)
    }))

  it.live("timeouts are retried and end in a RequestFailed that says so", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1, faults: { hang: ["/version"] } })
      const client = yield* GitlabClient.make(configOf(sim, { requestTimeout: 150 }), { ...fast, retries: 1 })
      const e = yield* Effect.flip(client.get("/version"))
      assert.strictEqual(e._tag, "RequestFailed")
      assert.include(e.message, "no complete response within")
      assert.strictEqual(sim.stats().total, 2)
    }))

  it.live("self-signed TLS: works with caFile, fails clearly without, insecureSkipVerify works with a warning", () =>
    Effect.gen(function*() {
      const tls = yield* selfSigned
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1, tls: { key: tls.keyPem, cert: tls.certPem } })
      assert.isTrue(sim.url.startsWith("https://127.0.0.1:"))

      const withCa = yield* GitlabClient.make(configOf(sim, { caFile: tls.cert }), fast)
      assert.strictEqual((yield* withCa.get("/version")).status, 200)

      const without = yield* GitlabClient.make(configOf(sim), fast)
      const e = yield* Effect.flip(without.get("/version"))
      assert.strictEqual(e._tag, "TlsFailure")
      assert.include(e.message, "caFile")

      const logs = captureLogs()
      const insecure = yield* GitlabClient.make(configOf(sim, { insecureSkipVerify: true }), fast).pipe(Effect.provide(logs.layer))
      assert.strictEqual((yield* insecure.get("/version")).status, 200)
      assert.isTrue(logs.lines.some((l) => l.startsWith("Warn") && l.includes("insecureSkipVerify")))
      assert.isFalse(logs.lines.some((l) => l.includes(sim.token)))
    }))

  it.live("refuses to follow URLs outside the instance API", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 1, mrsPerProject: 1 })
      const client = yield* GitlabClient.make(configOf(sim), fast)
      const e = yield* Effect.flip(client.get("http://example.invalid/api/v4/version"))
      assert.strictEqual(e._tag, "RequestFailed")
      assert.strictEqual(sim.stats().total, 0)
    }))
})

describe("GitlabClient redaction", () => {
  const token = "glpat-do-not-show-me-123"
  const renderings = (request: unknown) => [
    JSON.stringify(request),
    util.inspect(request, { depth: 10 }),
    Inspectable.toStringUnknown(request),
    JSON.stringify(Inspectable.toJson(request))
  ]

  it.effect("a request built by the client renders without the token, for PRIVATE-TOKEN and Bearer", () =>
    Effect.gen(function*() {
      for (const authKind of ["private-token", "oauth"] as const) {
        const config = InstanceConfig.make({ url: "https://gitlab.example", token, authKind })
        const request = GitlabClient.authorizedGet(config, "https://gitlab.example/api/v4/version")
        const rendered = yield* GitlabClient.withRedaction(Effect.sync(() => renderings(request)))
        for (const r of rendered) assert.notInclude(r, token, `${authKind}: ${r}`)
        assert.include(rendered[0]!, "<redacted>")
        // captured by a logger inside the redacting scope, too
        const logs = captureLogs()
        yield* GitlabClient.withRedaction(Effect.logError("request", request)).pipe(Effect.provide(logs.layer))
        assert.isAbove(logs.lines.length, 0)
        assert.isFalse(logs.lines.some((l) => l.includes(token)), logs.lines.join("\n"))
      }
    }))

  it.effect("without it Effect's default list would show PRIVATE-TOKEN (why the client provides it)", () =>
    Effect.sync(() => {
      const config = InstanceConfig.make({ url: "https://gitlab.example", token })
      const request = GitlabClient.authorizedGet(config, "https://gitlab.example/api/v4/version")
      assert.include(JSON.stringify(request), token)
    }))
})

describe("GitlabClient.endpointOf", () => {
  it("turns request URLs into bounded endpoint templates for metrics", () => {
    const base = "https://gl.example/gitlab/api/v4"
    assert.strictEqual(GitlabClient.endpointOf(`${base}/projects/12/merge_requests/3/notes?page=2&per_page=100`, base), "/projects/:id/merge_requests/:id/notes")
    assert.strictEqual(GitlabClient.endpointOf(`${base}/projects/group%2Fsub%2Fp`, base), "/projects/:id")
    assert.strictEqual(GitlabClient.endpointOf(`${base}/groups/platform/projects`, base), "/groups/platform/projects")
    assert.strictEqual(GitlabClient.endpointOf(`${base}/version`, base), "/version")
  })
})
