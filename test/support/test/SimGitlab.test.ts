import { spawn, execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import * as https from "node:https"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as SimGitlab from "../src/SimGitlab.ts"

const NOW = Date.parse("2025-03-01T12:00:00.000Z")
const P0 = SimGitlab.projectIdOf(0)
const P1 = SimGitlab.projectIdOf(1)
const P2 = SimGitlab.projectIdOf(2)
const P3 = SimGitlab.projectIdOf(3)

const withSim = async <A>(options: SimGitlab.Options, f: (sim: SimGitlab.Handle) => Promise<A>): Promise<A> => {
  const sim = await SimGitlab.start(options)
  try {
    return await f(sim)
  } finally {
    await sim.stop()
  }
}

const get = (sim: SimGitlab.Handle, path: string, headers: Record<string, string> = { "PRIVATE-TOKEN": sim.token }) =>
  fetch(path.startsWith("http") ? path : `${sim.apiUrl}${path}`, { headers })

const getJson = async <A = unknown>(sim: SimGitlab.Handle, path: string): Promise<{ res: Response; body: A }> => {
  const res = await get(sim, path)
  return { res, body: (await res.json()) as A }
}

const nextLink = (res: Response): string | undefined => /<([^>]+)>; rel="next"/.exec(res.headers.get("link") ?? "")?.[1]

describe("SimGitlab (shared instance)", () => {
  let sim: SimGitlab.Handle
  beforeAll(async () => {
    sim = await SimGitlab.start({
      seed: 7,
      now: NOW,
      projects: 8,
      mrsPerProject: 30,
      projectFlags: { [P1]: { ce: 404 }, [P2]: { ce: 403, ciDisabled: true }, [P3]: { repositoryDisabled: true } }
    })
  })
  afterAll(() => sim.stop())

  it("serves version, token scopes and the current user", async () => {
    expect((await getJson<{ version: string }>(sim, "/version")).body.version).toBe("17.5.1-ee")
    const self = await getJson<{ scopes: Array<string>; active: boolean }>(sim, "/personal_access_tokens/self")
    expect(self.body.scopes).toContain("read_api")
    expect(self.body.active).toBe(true)
    expect((await getJson<{ username: string }>(sim, "/user")).body.username).toBe("mhq-sync-reader")
  })

  it("offset pagination: GitLab headers and Link rels", async () => {
    const first = await get(sim, `/projects/${P0}/merge_requests?state=all&per_page=7`)
    expect(first.headers.get("x-page")).toBe("1")
    expect(first.headers.get("x-per-page")).toBe("7")
    expect(first.headers.get("x-next-page")).toBe("2")
    expect(first.headers.get("x-prev-page")).toBe("")
    expect(first.headers.get("x-total")).toBe("30")
    expect(first.headers.get("x-total-pages")).toBe("5")
    const link = first.headers.get("link") ?? ""
    expect(link).toContain('page=2&per_page=7>; rel="next"')
    expect(link).toContain('page=1&per_page=7>; rel="first"')
    expect(link).toContain('page=5&per_page=7>; rel="last"')
    expect(link).not.toContain('rel="prev"')

    const seen: Array<number> = []
    let url: string | undefined = `${sim.apiUrl}/projects/${P0}/merge_requests?state=all&per_page=7`
    let last: Response | undefined
    while (url) {
      last = await get(sim, url)
      seen.push(...((await last.json()) as Array<{ iid: number }>).map((m) => m.iid))
      url = nextLink(last)
    }
    expect(last?.headers.get("x-next-page")).toBe("")
    expect(last?.headers.get("x-prev-page")).toBe("4")
    expect(last?.headers.get("link")).toContain('rel="prev"')
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))

    const big = await get(sim, `/projects/${P0}/merge_requests?per_page=1000`)
    expect(big.headers.get("x-per-page")).toBe("100")
  })

  it("orders merge requests by updated_at / created_at both ways", async () => {
    const asc = (await getJson<Array<{ updated_at: string }>>(sim, `/projects/${P0}/merge_requests?order_by=updated_at&sort=asc&per_page=100`)).body
    const times = asc.map((m) => Date.parse(m.updated_at))
    expect(times).toEqual([...times].sort((a, b) => a - b))
    const desc = (await getJson<Array<{ created_at: string }>>(sim, `/projects/${P0}/merge_requests?per_page=100`)).body
    const created = desc.map((m) => Date.parse(m.created_at))
    expect(created).toEqual([...created].sort((a, b) => b - a))
    for (const t of [...times, ...created]) {
      expect(t).toBeLessThanOrEqual(NOW)
      expect(t).toBeGreaterThan(NOW - 20 * SimGitlab.day)
    }
  })

  it("keyset pagination of group projects with id_after links", async () => {
    const top = sim.groups().find((g) => g.parentId === null)!
    const expected = sim.projects().filter((p) => p.groupIds.includes(top.id) || p.sharedWithGroupIds.includes(top.id)).map((p) => p.id)
    expect(expected.length).toBeGreaterThan(2)
    const ids: Array<number> = []
    let url: string | undefined = `${sim.apiUrl}/groups/${top.id}/projects?include_subgroups=true&pagination=keyset&order_by=id&sort=asc&per_page=2`
    let pages = 0
    while (url) {
      const res = await get(sim, url)
      pages++
      ids.push(...((await res.json()) as Array<{ id: number }>).map((p) => p.id))
      url = nextLink(res)
      if (url) expect(url).toMatch(/id_after=\d+/)
    }
    expect(ids).toEqual([...expected].sort((a, b) => a - b))
    expect(pages).toBeGreaterThanOrEqual(Math.ceil(expected.length / 2))

    const direct = (await getJson<Array<{ id: number }>>(sim, `/groups/${top.id}/projects?with_shared=false`)).body
    expect(direct.map((p) => p.id).sort()).toEqual(sim.projects().filter((p) => p.namespaceId === top.id).map((p) => p.id).sort())
    const unarchived = (await getJson<Array<{ archived: boolean }>>(sim, `/groups/${top.id}/projects?include_subgroups=true&archived=false`)).body
    expect(unarchived.every((p) => !p.archived)).toBe(true)
  })

  it("looks up projects and groups by URL-encoded path; unknown routes 404", async () => {
    const p = sim.projects()[4]!
    const byPath = await getJson<{ id: number; _links: unknown }>(sim, `/projects/${encodeURIComponent(p.pathWithNamespace)}`)
    expect(byPath.body.id).toBe(p.id)
    expect(byPath.body._links).toBeDefined()
    const g = sim.groups().find((x) => x.parentId !== null)!
    expect((await getJson<{ id: number }>(sim, `/groups/${encodeURIComponent(g.fullPath)}`)).body.id).toBe(g.id)
    const unknown = await getJson(sim, "/nope/really")
    expect(unknown.res.status).toBe(404)
    expect(unknown.body).toEqual({ message: "404 Not Found" })
    expect((await get(sim, "/projects/999999")).status).toBe(404)
    expect((await get(sim, `/projects/${P0}/merge_requests/9999`)).status).toBe(404)
  })

  it("MR children: notes (>100 on the big MR), approvals, commits, diffs", async () => {
    const pages: Array<number> = []
    const notes: Array<{ id: number; system: boolean; body: string }> = []
    let url: string | undefined = `${sim.apiUrl}/projects/${P0}/merge_requests/1/notes?per_page=100&sort=asc&order_by=created_at`
    while (url) {
      const res = await get(sim, url)
      expect(res.headers.get("x-total")).toBe("250")
      pages.push(Number(res.headers.get("x-page")))
      notes.push(...((await res.json()) as typeof notes))
      url = nextLink(res)
    }
    expect(pages).toEqual([1, 2, 3])
    expect(notes).toHaveLength(250)
    expect(notes.map((n) => n.id)).toEqual(sim.notes(P0, 1).map((n) => n.id))

    // over all MRs of the project: system notes of the documented kinds, approvals consistent with them
    const bodies = new Set<string>()
    for (let iid = 1; iid <= 30; iid++) {
      const ns = sim.notes(P0, iid)
      for (const n of ns) if (n.system) bodies.add(n.body.split("\n")[0]!.replace(/\d+ commits?/, "N commits"))
      const approvers = ns.filter((n) => n.system && n.body === "approved this merge request").map((n) => n.author.id)
      const approvals = (await getJson<SimGitlab.GlApprovals>(sim, `/projects/${P0}/merge_requests/${iid}/approvals`)).body
      expect(approvals.approved_by.map((a) => a.user.id).sort()).toEqual([...new Set(approvers)].sort())
      const mr = (await getJson<SimGitlab.GlMergeRequest>(sim, `/projects/${P0}/merge_requests/${iid}`)).body
      expect(mr.user_notes_count).toBe(ns.filter((n) => !n.system).length)
      if (ns.length > 0) expect(mr.updated_at).toBe(ns[ns.length - 1]!.created_at)
    }
    expect(bodies).toContain("approved this merge request")
    expect(bodies).toContain("added N commits")
    expect(bodies).toContain("marked this merge request as **ready**")

    const commits = (await getJson<Array<SimGitlab.GlCommit>>(sim, `/projects/${P0}/merge_requests/2/commits`)).body
    expect(commits.length).toBeGreaterThan(0)
    expect(commits[0]!.author_email).toMatch(/@/)
    expect(commits[0]!.id).toBe((await getJson<{ sha: string }>(sim, `/projects/${P0}/merge_requests/2`)).body.sha)

    const diffs = (await getJson<Array<SimGitlab.GlDiff>>(sim, `/projects/${P0}/merge_requests/2/diffs`)).body
    expect(diffs).toEqual(sim.diffs(P0, 2))
    const counted = diffs.map((d) => SimGitlab.diffLineCounts(d.diff))
    expect(counted.some((c) => c.additions + c.deletions > 0)).toBe(true)
  })

  it("project flags: CE approvals 404/403, CI disabled 403, repository disabled 404", async () => {
    expect((await get(sim, `/projects/${P1}/merge_requests/1/approvals`)).status).toBe(404)
    expect((await get(sim, `/projects/${P2}/merge_requests/1/approvals`)).status).toBe(403)
    expect((await get(sim, `/projects/${P2}/pipelines`)).status).toBe(403)
    expect((await get(sim, `/projects/${P2}/deployments`)).status).toBe(403)
    expect((await get(sim, `/projects/${P3}/merge_requests/1/commits`)).status).toBe(404)
    expect((await get(sim, `/projects/${P3}/merge_requests/1/diffs`)).status).toBe(404)
    expect((await get(sim, `/projects/${P3}/merge_requests/1/notes`)).status).toBe(200)
  })

  it("pipelines: list omits timings, detail has them; some still running", async () => {
    const list = (await getJson<Array<SimGitlab.GlPipeline>>(sim, `/projects/${P0}/pipelines?per_page=100`)).body
    expect(list).toHaveLength(20)
    expect(list[0]).not.toHaveProperty("started_at")
    expect(list.map((p) => p.id)).toEqual([...list.map((p) => p.id)].sort((a, b) => b - a))
    expect(list.some((p) => p.status === "running")).toBe(true)
    expect(list.some((p) => p.status === "pending")).toBe(true)
    const done = list.find((p) => p.status === "success")!
    const detail = (await getJson<SimGitlab.GlPipeline>(sim, `/projects/${P0}/pipelines/${done.id}`)).body
    expect(detail.duration).toBe(Math.round((Date.parse(detail.finished_at!) - Date.parse(detail.started_at!)) / 1000))
  })

  it("deployments: updated_after needs order_by=updated_at; status filter", async () => {
    const bad = await getJson<{ message: string }>(sim, `/projects/${P0}/deployments?updated_after=2020-01-01T00:00:00Z`)
    expect(bad.res.status).toBe(400)
    expect(bad.body.message).toContain("must be paired")
    const ok = (await getJson<Array<SimGitlab.GlDeployment>>(sim, `/projects/${P0}/deployments?updated_after=2020-01-01T00:00:00Z&order_by=updated_at`)).body
    expect(ok).toHaveLength(10)
    const running = (await getJson<Array<SimGitlab.GlDeployment>>(sim, `/projects/${P0}/deployments?status=running`)).body
    expect(running.length).toBeGreaterThan(0)
    expect(running.every((d) => d.deployable.finished_at === null)).toBe(true)
  })

  it("auth: PRIVATE-TOKEN or Bearer; others 401", async () => {
    expect((await get(sim, "/version", { Authorization: `Bearer ${sim.token}` })).status).toBe(200)
    const wrong = await get(sim, "/version", { "PRIVATE-TOKEN": "glpat-wrong" })
    expect(wrong.status).toBe(401)
    expect(await wrong.json()).toEqual({ message: "401 Unauthorized" })
    expect((await get(sim, "/version", {})).status).toBe(401)
  })

  it("counts requests by route and status", async () => {
    sim.resetStats()
    await get(sim, `/projects/${P0}/merge_requests/3/notes`)
    await get(sim, `/projects/${P0}/merge_requests/4/notes`)
    await get(sim, "/version", {})
    await get(sim, "/nope")
    const s = sim.stats()
    expect(s.total).toBe(4)
    expect(s.byRoute["GET /projects/:id/merge_requests/:iid/notes"]).toBe(2)
    expect(s.byRoute["GET (unmatched)"]).toBe(1)
    expect(s.byStatus).toEqual({ "200": 2, "401": 1, "404": 1 })
    expect(s.log.map((e) => e.path)).toEqual([`/projects/${P0}/merge_requests/3/notes`, `/projects/${P0}/merge_requests/4/notes`, "/version", "/nope"])
    expect(sim.routes()).toContain("GET /projects/:id/merge_requests/:iid/diffs")
  })
})

describe("SimGitlab (dedicated instances)", () => {
  it("is deterministic: same seed → same data, other seed → other data", async () => {
    const dump = (seed: number) =>
      withSim({ seed, now: NOW, projects: 3, mrsPerProject: 15 }, async (sim) => {
        const text = await (await get(sim, `/projects/${SimGitlab.projectIdOf(2)}/merge_requests?per_page=100`)).text()
        const notes = await (await get(sim, `/projects/${SimGitlab.projectIdOf(2)}/merge_requests/5/notes`)).text()
        return (text + notes).replaceAll(sim.url, "BASE")
      })
    const a = await dump(42)
    expect(await dump(42)).toBe(a)
    expect(await dump(43)).not.toBe(a)
  })

  it("updated_after reflects mutations; finishRunning and addPipelines too", async () => {
    await withSim({ seed: 3, now: NOW, projects: 2, mrsPerProject: 40 }, async (sim) => {
      const since = new Date(NOW + 1).toISOString()
      expect((await getJson<Array<unknown>>(sim, `/projects/${P0}/merge_requests?updated_after=${since}`)).body).toHaveLength(0)
      sim.advanceNow(60_000)
      const touched = sim.touchMergeRequests(P0, 5)
      expect(touched).toHaveLength(5)
      const after = (await getJson<Array<SimGitlab.GlMergeRequest>>(sim, `/projects/${P0}/merge_requests?updated_after=${since}&order_by=updated_at&sort=asc`)).body
      expect(after.map((m) => m.iid).sort((a, b) => a - b)).toEqual(touched.map((t) => t.iid))
      for (const m of after) {
        expect(m.updated_at).toBe(new Date(NOW + 60_000).toISOString())
        const notes = (await getJson<Array<SimGitlab.GlNote>>(sim, `/projects/${P0}/merge_requests/${m.iid}/notes?sort=desc`)).body
        expect(notes[0]!.created_at).toBe(m.updated_at)
      }
      expect(sim.mergeRequests(P0).filter((m) => Date.parse(m.updated_at) > NOW)).toHaveLength(5)

      sim.touchMergeRequest(P0, 1, { approveBy: 3, merge: true })
      const merged = (await getJson<SimGitlab.GlMergeRequest>(sim, `/projects/${P0}/merge_requests/1`)).body
      expect(merged.state).toBe("merged")
      expect((await getJson<Array<unknown>>(sim, `/projects/${P0}/merge_requests?state=merged&updated_after=${since}`)).body.length).toBeGreaterThan(0)

      const frac = sim.touchMergeRequests("all", 0.25)
      expect(frac).toHaveLength(20)

      const pipeSince = new Date(sim.now()).toISOString()
      sim.advanceNow(60_000)
      const { pipelines, deployments } = sim.finishRunning()
      expect(pipelines).toBe(4)
      expect(deployments).toBe(2)
      sim.addPipelines(P0, 3)
      const fresh = (await getJson<Array<SimGitlab.GlPipeline>>(sim, `/projects/${P0}/pipelines?updated_after=${pipeSince}&per_page=100`)).body
      expect(fresh).toHaveLength(2 + 3)
      expect(fresh.every((p) => p.status === "success")).toBe(true)
    })
  })

  it("omits x-total, x-total-pages and rel=last above 10,000 rows", async () => {
    await withSim({ seed: 1, now: NOW, projects: 1, groups: 1, mrsPerProject: 10_001, bigNotesMr: false }, async (sim) => {
      const res = await get(sim, `/projects/${P0}/merge_requests?per_page=100&page=2`)
      expect(res.headers.get("x-total")).toBeNull()
      expect(res.headers.get("x-total-pages")).toBeNull()
      expect(res.headers.get("x-next-page")).toBe("3")
      expect(res.headers.get("link")).not.toContain('rel="last"')
      expect(res.headers.get("link")).toContain('rel="next"')
      expect((await res.json()) as Array<unknown>).toHaveLength(100)
      const small = await get(sim, `/projects/${P0}/merge_requests?state=opened&updated_before=${new Date(NOW - 10 * SimGitlab.day).toISOString()}`)
      expect(Number(small.headers.get("x-total"))).toBeLessThan(10_000)
    })
  })

  it("rate limit: RateLimit headers, 429 with Retry-After once the budget is spent, storm429", async () => {
    await withSim({ seed: 1, now: NOW, projects: 1, rateLimit: { requestsPerMinute: 3, periodSeconds: 1 } }, async (sim) => {
      const remaining: Array<string | null> = []
      for (let i = 0; i < 3; i++) {
        const res = await get(sim, "/version")
        expect(res.status).toBe(200)
        expect(res.headers.get("ratelimit-limit")).toBe("3")
        expect(Number(res.headers.get("ratelimit-reset"))).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000))
        remaining.push(res.headers.get("ratelimit-remaining"))
      }
      expect(remaining).toEqual(["2", "1", "0"])
      const limited = await get(sim, "/version")
      expect(limited.status).toBe(429)
      expect(await limited.text()).toContain("Retry later")
      const retryAfter = Number(limited.headers.get("retry-after"))
      expect(retryAfter).toBeGreaterThanOrEqual(1)
      expect(limited.headers.get("ratelimit-observed")).toBe("3")
      await new Promise((r) => setTimeout(r, retryAfter * 1000))
      expect((await get(sim, "/version")).status).toBe(200)

      sim.setFaults({ storm429: { count: 2, retryAfterSeconds: 7 } })
      expect((await get(sim, "/user")).headers.get("retry-after")).toBe("7")
      expect((await get(sim, "/user")).status).toBe(429)
      await new Promise((r) => setTimeout(r, 1100))
      expect((await get(sim, "/user")).status).toBe(200)
      const log = sim.stats().log.filter((e) => e.status === 429)
      expect(log.map((e) => e.retryAfter)).toEqual([retryAfter, 7, 7])
    })
  })

  it("revokeToken makes the token 401 from then on", async () => {
    await withSim({ now: NOW, projects: 1 }, async (sim) => {
      expect((await get(sim, "/user")).status).toBe(200)
      sim.revokeToken()
      expect((await get(sim, "/user")).status).toBe(401)
    })
  })

  it("faults: truncated JSON, wrong types, seeded errors, hang, latency by timer", async () => {
    await withSim({ seed: 5, now: NOW, projects: 2, mrsPerProject: 10 }, async (sim) => {
      sim.setFaults({ truncateJson: [`/projects/${P0}/merge_requests`] })
      const cut = await get(sim, `/projects/${P0}/merge_requests`)
      expect(cut.status).toBe(200)
      await expect(cut.clone().json()).rejects.toThrow()
      expect((await get(sim, `/projects/${P1}/merge_requests`)).ok).toBe(true)
      sim.setFaults({ truncateJson: undefined })

      const pipeline = sim.pipelines(P0)[0]!
      sim.setFaults({
        wrongType: [
          { projectId: P0, kind: "merge_request", id: 3 },
          { projectId: P0, kind: "pipeline", id: pipeline.id, field: "created_at", value: 12 }
        ]
      })
      const mrs = (await getJson<Array<Record<string, unknown>>>(sim, `/projects/${P0}/merge_requests?per_page=100`)).body
      expect(mrs.filter((m) => m["id"] === "abc").map((m) => m["iid"])).toEqual([3])
      expect((await getJson<Record<string, unknown>>(sim, `/projects/${P0}/merge_requests/3`)).body["id"]).toBe("abc")
      const ps = (await getJson<Array<Record<string, unknown>>>(sim, `/projects/${P0}/pipelines?per_page=100`)).body
      expect(ps.find((p) => p["id"] === pipeline.id)?.["created_at"]).toBe(12)
      expect(sim.mergeRequest(P0, 3).id).not.toBe("abc") // ground truth stays clean
      sim.setFaults({ wrongType: [] })

      sim.setFaults({ errorRate: 0.5 })
      const statuses: Array<number> = []
      for (let i = 0; i < 40; i++) statuses.push((await get(sim, "/version")).status)
      const failed = statuses.filter((s) => s !== 200)
      expect(failed.length).toBeGreaterThan(5)
      expect(failed.length).toBeLessThan(35)
      expect(failed.every((s) => [500, 502, 503].includes(s))).toBe(true)
      sim.setFaults({ errorRate: 0 })

      sim.setFaults({ hang: ["GET /projects/:id/pipelines"] })
      const hung = fetch(`${sim.apiUrl}/projects/${P0}/pipelines`, { headers: { "PRIVATE-TOKEN": sim.token }, signal: AbortSignal.timeout(300) })
      await expect(hung).rejects.toThrow()
      expect(sim.stats().log.at(-1)).toMatchObject({ route: "GET /projects/:id/pipelines", status: 0 })
      sim.setFaults({ hang: undefined, latencyMs: 150 })
      const t0 = performance.now()
      const all = await Promise.all(Array.from({ length: 10 }, () => get(sim, "/version")))
      const took = performance.now() - t0
      expect(all.every((r) => r.status === 200)).toBe(true)
      expect(took).toBeGreaterThanOrEqual(140)
      expect(took).toBeLessThan(1000) // concurrent: the latency is a timer, not a blocked loop
    })
  })

  it("relative root: URL includes it, API answers with and without it", async () => {
    await withSim({ now: NOW, projects: 1, relativeRoot: "/gitlab" }, async (sim) => {
      expect(sim.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/gitlab$/)
      const withRoot = await get(sim, `/projects/${P0}/merge_requests?per_page=5`)
      expect(withRoot.status).toBe(200)
      expect(withRoot.headers.get("link")).toContain("/gitlab/api/v4/projects/")
      expect(((await getJson<{ web_url: string }>(sim, `/projects/${P0}`)).body.web_url)).toContain("/gitlab/")
      expect((await get(sim, sim.apiUrl.replace("/gitlab", "") + "/version")).status).toBe(200)
    })
  })

  it("make(): scoped Effect constructor stops the server with the scope", async () => {
    const url = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function*() {
          const sim = yield* SimGitlab.make({ now: NOW, projects: 1 })
          const status = yield* Effect.promise(() => get(sim, "/version").then((r) => r.status))
          expect(status).toBe(200)
          return sim.apiUrl
        })
      )
    )
    await expect(fetch(`${url}/version`)).rejects.toThrow()
  })

  it("https with a given key/cert", async () => {
    const dir = mkdtempSync(join(tmpdir(), "simgitlab-"))
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
      "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")
    ], { stdio: "ignore" })
    const key = readFileSync(join(dir, "key.pem"))
    const cert = readFileSync(join(dir, "cert.pem"))
    await withSim({ now: NOW, projects: 1, tls: { key, cert } }, async (sim) => {
      expect(sim.url.startsWith("https://127.0.0.1:")).toBe(true)
      const body = await new Promise<string>((resolve, reject) => {
        https.get(`${sim.apiUrl}/version`, { ca: cert, headers: { "PRIVATE-TOKEN": sim.token } }, (res) => {
          let data = ""
          res.on("data", (c: Buffer) => (data += c.toString()))
          res.on("end", () => resolve(data))
        }).on("error", reject)
      })
      expect(JSON.parse(body).version).toBe("17.5.1-ee")
    })
  })

  it("runs as a separate process and stops on SIGTERM", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/support/src/sim-gitlab-main.ts", "--projects", "2", "--mrs", "20", "--latency", "5", "--seed", "1"], {
      cwd: join(import.meta.dirname, "../../.."),
      stdio: ["ignore", "pipe", "inherit"]
    })
    const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once("line", resolve))
    const { url, token } = JSON.parse(line) as { url: string; token: string }
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const res = await fetch(`${url}/api/v4/projects/${P0}/merge_requests`, { headers: { "PRIVATE-TOKEN": token } })
    expect(res.headers.get("x-total")).toBe("20")
    const stats = (await (await fetch(`${url}/__sim/stats`)).json()) as SimGitlab.Stats
    expect(stats.total).toBe(1)
    const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    child.kill("SIGTERM")
    expect(await exit).toBe(0)
  })
})

// ---------------------------------------------------------------- GraphQL (POST /api/graphql)

const gql = (sim: SimGitlab.Handle, query: string, variables?: Record<string, unknown>, headers: Record<string, string> = { "PRIVATE-TOKEN": sim.token }) =>
  fetch(sim.graphqlUrl, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ query, variables }) })

const gqlJson = async <A = any>(sim: SimGitlab.Handle, query: string, variables?: Record<string, unknown>): Promise<{ res: Response; body: A }> => {
  const res = await gql(sim, query, variables)
  return { res, body: (await res.json()) as A }
}

interface GqlPageInfo {
  readonly hasNextPage: boolean
  readonly hasPreviousPage: boolean
  readonly startCursor: string | null
  readonly endCursor: string | null
}
interface GqlCommit {
  readonly sha: string
  readonly shortId: string
  readonly title: string
  readonly authoredDate: unknown
  readonly committedDate: unknown
  readonly authorName: string
  readonly authorEmail: string
  readonly committerName: string
  readonly committerEmail: string
}
interface GqlMr {
  readonly id: string
  readonly iid: string
  readonly title: string
  readonly updatedAt: string
  readonly commitCount: number | null
  readonly diffStatsSummary: { additions: number; deletions: number; changes: number; fileCount: number } | null
  readonly commits: { nodes: Array<GqlCommit>; pageInfo: GqlPageInfo } | null
}

const BATCH_QUERY = `
query mrDetails($fullPath: ID!, $iids: [String!], $commits: Int) {
  project(fullPath: $fullPath) {
    id
    fullPath
    mergeRequests(iids: $iids, first: 100) {
      count
      pageInfo { hasNextPage endCursor }
      nodes {
        id iid title updatedAt commitCount
        diffStatsSummary { additions deletions changes fileCount }
        commits(first: $commits) {
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
          nodes { sha shortId title authoredDate committedDate authorName authorEmail committerName committerEmail }
        }
      }
    }
  }
}`

const COMMITS_PAGE = `
query($fullPath: ID!, $iid: String!, $after: String) {
  project(fullPath: $fullPath) {
    mergeRequests(iids: [$iid]) { nodes { commits(first: 2, after: $after) { pageInfo { hasNextPage endCursor } nodes { sha } } } }
  }
}`

const restToGql = (c: SimGitlab.GlCommit): GqlCommit => ({
  sha: c.id,
  shortId: c.short_id,
  title: c.title,
  authoredDate: c.authored_date,
  committedDate: c.committed_date,
  authorName: c.author_name,
  authorEmail: c.author_email,
  committerName: c["committer_name"] as string,
  committerEmail: c["committer_email"] as string
})

describe("SimGitlab GraphQL", () => {
  let sim: SimGitlab.Handle
  const path = (projectId: number) => sim.projects().find((p) => p.id === projectId)!.pathWithNamespace
  beforeAll(async () => {
    sim = await SimGitlab.start({ seed: 11, now: NOW, projects: 4, mrsPerProject: 30, projectFlags: { [P3]: { repositoryDisabled: true } } })
  })
  afterAll(() => sim.stop())

  it("batch query: diff stats and commits equal what REST /diffs and /commits serve", async () => {
    const iids = [2, 5, 7, 11, 12, 30]
    const { res, body } = await gqlJson<{ data: { project: { id: string; fullPath: string; mergeRequests: { count: number; pageInfo: GqlPageInfo; nodes: Array<GqlMr> } } } }>(
      sim,
      BATCH_QUERY,
      { fullPath: path(P0), iids: [...iids.map(String), "999", "abc"] }
    )
    expect(res.status).toBe(200)
    expect(body).not.toHaveProperty("errors")
    const project = body.data.project
    expect(project.id).toBe(`gid://gitlab/Project/${P0}`)
    expect(project.fullPath).toBe(path(P0))
    const conn = project.mergeRequests
    expect(conn.count).toBe(iids.length)
    expect(conn.pageInfo.hasNextPage).toBe(false)
    expect(conn.nodes.map((m) => m.iid)).toEqual([...iids].sort((a, b) => b - a).map(String)) // only existing iids, newest first

    for (const node of conn.nodes) {
      const mr = (await getJson<SimGitlab.GlMergeRequest>(sim, `/projects/${P0}/merge_requests/${node.iid}`)).body
      expect(node.id).toBe(`gid://gitlab/MergeRequest/${mr.id}`)
      expect(node.title).toBe(mr.title)
      expect(node.updatedAt).toBe(mr.updated_at)

      const diffs = (await getJson<Array<SimGitlab.GlDiff>>(sim, `/projects/${P0}/merge_requests/${node.iid}/diffs?per_page=100`)).body
      let additions = 0
      let deletions = 0
      for (const d of diffs) {
        for (const line of d.diff.split("\n")) {
          if (line.startsWith("+")) additions++
          else if (line.startsWith("-")) deletions++
        }
      }
      expect(node.diffStatsSummary).toEqual({ additions, deletions, changes: additions + deletions, fileCount: diffs.length })

      const commits = (await getJson<Array<SimGitlab.GlCommit>>(sim, `/projects/${P0}/merge_requests/${node.iid}/commits?per_page=100`)).body
      expect(node.commits!.nodes).toEqual(commits.map(restToGql))
      expect(node.commitCount).toBe(commits.length)
      expect(node.commits!.pageInfo.hasNextPage).toBe(false)
    }
    expect(conn.nodes.some((m) => m.diffStatsSummary!.changes > 0)).toBe(true)
    expect(conn.nodes.some((m) => m.commits!.nodes.length > 1)).toBe(true)
  })

  it("paginates commits with first: 2 and after", async () => {
    const iid = Array.from({ length: 30 }, (_, i) => i + 1).find((i) => sim.commits(P0, i).length >= 5)!
    expect(iid).toBeDefined()
    const shas: Array<string> = []
    let after: string | null = null
    let pages = 0
    for (;;) {
      const { body } = await gqlJson(sim, COMMITS_PAGE, { fullPath: path(P0), iid: String(iid), after })
      const conn = body.data.project.mergeRequests.nodes[0].commits as { pageInfo: GqlPageInfo; nodes: Array<{ sha: string }> }
      pages++
      expect(conn.nodes.length).toBeLessThanOrEqual(2)
      shas.push(...conn.nodes.map((c) => c.sha))
      if (!conn.pageInfo.hasNextPage) break
      after = conn.pageInfo.endCursor
      expect(typeof after).toBe("string")
    }
    const rest = sim.commits(P0, iid).map((c) => c.id)
    expect(shas).toEqual(rest)
    expect(pages).toBe(Math.ceil(rest.length / 2))
  })

  it("unknown project → null; repository disabled → null diff stats and commits", async () => {
    const missing = await gqlJson(sim, `{ project(fullPath: "nope/nothing") { id } }`)
    expect(missing.body).toEqual({ data: { project: null } })
    const { body } = await gqlJson(sim, BATCH_QUERY, { fullPath: path(P3), iids: ["1"] })
    const node = body.data.project.mergeRequests.nodes[0] as GqlMr
    expect(node.iid).toBe("1")
    expect(node.diffStatsSummary).toBeNull()
    expect(node.commits).toBeNull()
    expect((await get(sim, `/projects/${P3}/merge_requests/1/diffs`)).status).toBe(404)
  })

  it("validation errors use GitLab's wording; parse errors and bad JSON", async () => {
    const unknown = await gqlJson(sim, `{ project(fullPath: "${path(P0)}") { mergeRequests { nodes { iid xyz } } } }`)
    expect(unknown.res.status).toBe(200)
    expect(unknown.body.data).toBeNull()
    expect(unknown.body.errors).toHaveLength(1)
    expect(unknown.body.errors[0].message).toBe("Field 'xyz' doesn't exist on type 'MergeRequest'")
    expect(unknown.body.errors[0].locations).toEqual([{ line: 1, column: expect.any(Number) }])

    const typo = await gqlJson(sim, `{ project(fullPath: "x") { mergeRequests { nodes { diffStatsSummary { files } } } } }`)
    expect(typo.body.errors[0].message).toBe("Field 'files' doesn't exist on type 'DiffStatsSummary'")

    const syntax = await gqlJson(sim, `{ project(fullPath: "x") {`)
    expect(syntax.res.status).toBe(200)
    expect(syntax.body.data).toBeNull()
    expect(syntax.body.errors[0].message).toMatch(/Syntax Error/)

    const badJson = await fetch(sim.graphqlUrl, { method: "POST", headers: { "PRIVATE-TOKEN": sim.token, "content-type": "application/json" }, body: "{nope" })
    expect(badJson.status).toBe(400)
    expect(await badJson.json()).toHaveProperty("error")
  })

  it("auth like REST: no or wrong token → 401; Bearer works", async () => {
    const none = await gql(sim, "{ project(fullPath: \"x\") { id } }", undefined, {})
    expect(none.status).toBe(401)
    expect(await none.json()).toEqual({ message: "401 Unauthorized" })
    expect((await gql(sim, "{ project(fullPath: \"x\") { id } }", undefined, { "PRIVATE-TOKEN": "glpat-wrong" })).status).toBe(401)
    expect((await gql(sim, "{ project(fullPath: \"x\") { id } }", undefined, { Authorization: `Bearer ${sim.token}` })).status).toBe(200)
  })

  it("counts as route \"POST /graphql\" (path \"/graphql\"); GET is not served", async () => {
    sim.resetStats()
    await gql(sim, `{ project(fullPath: "x") { id } }`)
    await gql(sim, `{ project(fullPath: "x") { id } }`, undefined, {})
    const getRes = await fetch(sim.graphqlUrl, { headers: { "PRIVATE-TOKEN": sim.token } })
    expect(getRes.status).toBe(404)
    const s = sim.stats()
    expect(s.total).toBe(3)
    expect(s.byRoute["POST /graphql"]).toBe(2)
    expect(s.byRoute["GET (unmatched)"]).toBe(1)
    expect(s.log.slice(0, 2).map((e) => [e.method, e.route, e.path, e.status])).toEqual([
      ["POST", "POST /graphql", "/graphql", 200],
      ["POST", "POST /graphql", "/graphql", 401]
    ])
    expect(sim.routes()).toContain("POST /graphql")
  })
})

describe("SimGitlab GraphQL (dedicated instances)", () => {
  const fullPath = (sim: SimGitlab.Handle) => sim.projects()[0]!.pathWithNamespace

  it("paginates merge requests: first clamped to 100, cursors continue", async () => {
    await withSim({ seed: 2, now: NOW, projects: 1, groups: 1, mrsPerProject: 150, bigNotesMr: false }, async (sim) => {
      const q = `query($p: ID!, $after: String) { project(fullPath: $p) { mergeRequests(first: 1000, after: $after) { count pageInfo { hasNextPage endCursor } nodes { iid } } } }`
      const one = (await gqlJson(sim, q, { p: fullPath(sim) })).body.data.project.mergeRequests
      expect(one.count).toBe(150)
      expect(one.nodes).toHaveLength(100)
      expect(one.nodes[0].iid).toBe("150")
      expect(one.pageInfo.hasNextPage).toBe(true)
      const two = (await gqlJson(sim, q, { p: fullPath(sim), after: one.pageInfo.endCursor })).body.data.project.mergeRequests
      expect(two.nodes.map((n: { iid: string }) => Number(n.iid))).toEqual(Array.from({ length: 50 }, (_, i) => 50 - i))
      expect(two.pageInfo.hasNextPage).toBe(false)
    })
  })

  it("modes: legacy schema lacks commits/fileCount, disabled → 404; settable at start and at runtime", async () => {
    await withSim({ seed: 3, now: NOW, projects: 1, mrsPerProject: 5, graphql: "legacy" }, async (sim) => {
      const legacy = await gqlJson(sim, BATCH_QUERY, { fullPath: fullPath(sim), iids: ["1"] })
      expect(legacy.res.status).toBe(200)
      expect(legacy.body.data).toBeNull()
      const messages = (legacy.body.errors as Array<{ message: string }>).map((e) => e.message)
      expect(messages).toContain("Field 'commits' doesn't exist on type 'MergeRequest'")
      expect(messages).toContain("Field 'fileCount' doesn't exist on type 'DiffStatsSummary'")
      const old = await gqlJson(sim, `query($p: ID!) { project(fullPath: $p) { mergeRequests(iids: ["1"]) { nodes { iid commitCount diffStatsSummary { additions deletions changes } } } } }`, { p: fullPath(sim) })
      expect(old.body.data.project.mergeRequests.nodes[0].iid).toBe("1")

      sim.setGraphql("disabled")
      const disabled = await gql(sim, BATCH_QUERY, { fullPath: fullPath(sim) })
      expect(disabled.status).toBe(404)
      expect(await disabled.json()).toEqual({ message: "404 Not Found" })
      expect(sim.stats().log.at(-1)).toMatchObject({ route: "POST /graphql", status: 404 })

      sim.setGraphql("enabled")
      const enabled = await gqlJson(sim, BATCH_QUERY, { fullPath: fullPath(sim), iids: ["1"] })
      expect(enabled.body).not.toHaveProperty("errors")
      expect(enabled.body.data.project.mergeRequests.nodes[0].commits.nodes.length).toBeGreaterThan(0)
    })
    await withSim({ now: NOW, projects: 1, mrsPerProject: 1, graphql: "disabled" }, async (sim) => {
      expect((await gql(sim, `{ project(fullPath: "x") { id } }`)).status).toBe(404)
    })
  })

  it("faults: wrongType commit → committedDate 12 (like REST created_at 12); truncateJson and hang by route key or path", async () => {
    await withSim({ seed: 4, now: NOW, projects: 1, mrsPerProject: 5 }, async (sim) => {
      const target = sim.commits(P0, 2)[0]!
      sim.setFaults({ wrongType: [{ projectId: P0, kind: "commit", id: target.id }] })
      const rest = (await getJson<Array<Record<string, unknown>>>(sim, `/projects/${P0}/merge_requests/2/commits`)).body
      expect(rest.find((c) => c["id"] === target.id)?.["created_at"]).toBe(12)
      const { body } = await gqlJson(sim, BATCH_QUERY, { fullPath: fullPath(sim), iids: ["2", "3"] })
      expect(body).not.toHaveProperty("errors")
      const nodes = (body.data.project.mergeRequests.nodes as Array<GqlMr>).flatMap((m) => m.commits!.nodes)
      expect(nodes.filter((c) => c.committedDate === 12).map((c) => c.sha)).toEqual([target.id])
      expect(nodes.filter((c) => typeof c.committedDate === "string").length).toBe(nodes.length - 1)
      sim.setFaults({ wrongType: [] })

      sim.setFaults({ truncateJson: ["POST /graphql"] })
      const cut = await gql(sim, BATCH_QUERY, { fullPath: fullPath(sim), iids: ["2"] })
      expect(cut.status).toBe(200)
      await expect(cut.json()).rejects.toThrow()
      sim.setFaults({ truncateJson: undefined, hang: ["/graphql"] })
      await expect(
        fetch(sim.graphqlUrl, { method: "POST", headers: { "PRIVATE-TOKEN": sim.token }, body: JSON.stringify({ query: "{ __typename }" }), signal: AbortSignal.timeout(300) })
      ).rejects.toThrow()
      expect(sim.stats().log.at(-1)).toMatchObject({ route: "POST /graphql", status: 0 })
      sim.setFaults({ hang: undefined, storm429: { count: 1, retryAfterSeconds: 3 } })
      const limited = await gql(sim, "{ __typename }")
      expect(limited.status).toBe(429)
      expect(limited.headers.get("retry-after")).toBe("3")
      expect((await gql(sim, "{ __typename }")).status).toBe(200)
    })
  })

  it("relative root: served under it", async () => {
    await withSim({ now: NOW, projects: 1, mrsPerProject: 2, relativeRoot: "/gitlab" }, async (sim) => {
      expect(sim.graphqlUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/gitlab\/api\/graphql$/)
      const { res, body } = await gqlJson(sim, `query($p: ID!) { project(fullPath: $p) { fullPath } }`, { p: fullPath(sim) })
      expect(res.status).toBe(200)
      expect(body).toEqual({ data: { project: { fullPath: fullPath(sim) } } })
    })
  })

  it("standalone process: --graphql legacy", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/support/src/sim-gitlab-main.ts", "--projects", "1", "--mrs", "3", "--graphql", "legacy"], {
      cwd: join(import.meta.dirname, "../../.."),
      stdio: ["ignore", "pipe", "inherit"]
    })
    try {
      const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once("line", resolve))
      const { url, token } = JSON.parse(line) as { url: string; token: string }
      const res = await fetch(`${url}/api/graphql`, {
        method: "POST",
        headers: { "PRIVATE-TOKEN": token, "content-type": "application/json" },
        body: JSON.stringify({ query: `{ project(fullPath: "x") { mergeRequests { nodes { commits { nodes { sha } } } } } }` })
      })
      expect(((await res.json()) as { errors: Array<{ message: string }> }).errors[0]!.message).toBe("Field 'commits' doesn't exist on type 'MergeRequest'")
    } finally {
      const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      child.kill("SIGTERM")
      await exit
    }
  })
})
