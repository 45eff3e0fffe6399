// HTTP front of the simulated GitLab: auth, rate limiting, faults, stats, and the route table
// (REST GET routes under /api/v4, plus POST /api/graphql served by ./graphql.ts).
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { type GraphqlMode, SimGraphql } from "./graphql.ts"
import { type GlMergeRequest, Json } from "./json.ts"
import type { DeploymentRec, DeploymentStatus, MrState, PipelineRec, Project, World } from "./model.ts"
import { Rng } from "./rng.ts"

export type RecordKind = "merge_request" | "note" | "pipeline" | "deployment" | "commit"

/** Paths (API path after `/api/v4`, e.g. "/projects/1001/merge_requests", or a route key such as
 * "GET /projects/:id/merge_requests"), or a predicate over both. The GraphQL endpoint
 * (POST /api/graphql) has the path "/graphql" and the route key "POST /graphql". */
export type PathMatcher = ReadonlyArray<string> | ((apiPath: string, route: string) => boolean)

export interface WrongTypeTarget {
  readonly projectId: number
  readonly kind: RecordKind
  /** Record id; for merge requests the iid also matches; for commits the sha. */
  readonly id: number | string
  /** Default: `id` (→ "abc"); for commits `created_at` (→ 12). Commits also in GraphQL answers: REST
   * field names map to the GraphQL ones (`created_at`/`committed_date` → `committedDate`, …). */
  readonly field?: string
  readonly value?: unknown
}

export interface Faults {
  readonly latencyMs: number
  /** Fraction of requests (after auth) answered with one of `errorStatuses`, chosen by the seeded PRNG. */
  readonly errorRate: number
  readonly errorStatuses: ReadonlyArray<500 | 502 | 503>
  readonly truncateJson: PathMatcher | undefined
  readonly wrongType: ReadonlyArray<WrongTypeTarget>
  /** Requests that are never answered (the socket stays open until the client gives up or stop()). */
  readonly hang: PathMatcher | undefined
  /** Answer the next `count` requests with 429 + `Retry-After: retryAfterSeconds`. */
  readonly storm429: { readonly count: number; readonly retryAfterSeconds: number } | undefined
}

export const noFaults: Faults = {
  latencyMs: 0,
  errorRate: 0,
  errorStatuses: [500, 502, 503],
  truncateJson: undefined,
  wrongType: [],
  hang: undefined,
  storm429: undefined
}

export interface LogEntry {
  /** Arrival time, epoch ms. */
  readonly at: number
  readonly method: string
  /** Route key, e.g. "GET /projects/:id/merge_requests" or "POST /graphql"; "GET (unmatched)" for unknown routes. */
  readonly route: string
  /** API path with query, e.g. "/projects/1001/merge_requests?page=2". */
  readonly path: string
  /** 0 for a request left hanging. */
  readonly status: number
  readonly retryAfter?: number
}

export interface Stats {
  readonly total: number
  readonly byRoute: Readonly<Record<string, number>>
  readonly byStatus: Readonly<Record<string, number>>
  /** The most recent `logLimit` requests, oldest first. */
  readonly log: ReadonlyArray<LogEntry>
}

export interface ServerOptions {
  readonly seed: number
  readonly token: string
  readonly tokenScopes: ReadonlyArray<string>
  readonly version: string
  readonly relativeRoot: string
  readonly rateLimit: { readonly requestsPerMinute: number; readonly periodSeconds?: number } | undefined
  readonly faults: Faults
  readonly logLimit: number
  readonly port: number
  readonly tls: { readonly key: string | Buffer; readonly cert: string | Buffer } | undefined
  readonly graphql: GraphqlMode
}

/** Route key of POST /api/graphql (stats, log, fault matchers); its matcher path is "/graphql". */
export const GRAPHQL_ROUTE = "POST /graphql"
const GRAPHQL_MAX_BODY = 1_048_576

interface Ctx {
  readonly params: Readonly<Record<string, string>>
  readonly query: URLSearchParams
  /** Request URL as seen by the client (used to build Link headers). */
  readonly url: URL
}

interface Reply {
  readonly status: number
  readonly body: unknown
  readonly headers?: Readonly<Record<string, string>>
  /** For the wrong-type fault: which records the body holds. */
  readonly records?: { readonly kind: RecordKind; readonly projectId: number }
}

type Handler = (c: Ctx) => Reply

interface Route {
  readonly template: string
  readonly segments: ReadonlyArray<string>
  readonly handler: Handler
}

const json = (status: number, body: unknown, extra: Partial<Reply> = {}): Reply => ({ status, body, ...extra })
const message = (status: number, text: string): Reply => json(status, { message: text })
const badParam = (name: string, what = "does not have a valid value"): Reply => json(400, { error: `${name} ${what}` })
const NOT_FOUND = message(404, "404 Not Found")
const FORBIDDEN = message(403, "403 Forbidden")

/** GitLab's boolean params: true/false, 1/0, yes/no (case-insensitive). */
const bool = (v: string | null): boolean | undefined | "invalid" => {
  if (v === null) return undefined
  const s = v.toLowerCase()
  if (["true", "1", "yes", "t", "on"].includes(s)) return true
  if (["false", "0", "no", "f", "off"].includes(s)) return false
  return "invalid"
}

const time = (v: string | null): number | undefined | "invalid" => {
  if (v === null) return undefined
  const t = Date.parse(v)
  return Number.isNaN(t) ? "invalid" : t
}

const oneOf = <A extends string>(v: string | null, allowed: ReadonlyArray<A>, dflt: A): A | "invalid" =>
  v === null ? dflt : (allowed as ReadonlyArray<string>).includes(v) ? (v as A) : "invalid"

/** The request body as text; undefined when it exceeds `limit` bytes. */
const readBody = (req: http.IncomingMessage, limit: number): Promise<string | undefined> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    let size = 0
    let over = false
    req.on("data", (c: Buffer) => {
      size += c.length
      if (size > limit) over = true
      else chunks.push(c)
    })
    req.once("end", () => resolve(over ? undefined : Buffer.concat(chunks).toString("utf8")))
    req.once("error", () => resolve(undefined))
    req.once("close", () => resolve(over ? undefined : Buffer.concat(chunks).toString("utf8")))
  })

class SlidingWindow {
  private readonly times: Array<number> = []
  private head = 0
  constructor(readonly limit: number, readonly periodMs: number) {}

  /** Records the request if within budget. */
  take(now: number): { ok: boolean; observed: number; resetAt: number; retryAfter: number } {
    while (this.head < this.times.length && (this.times[this.head] as number) <= now - this.periodMs) this.head++
    if (this.head > 1024 && this.head * 2 > this.times.length) this.times.splice(0, this.head), (this.head = 0)
    const inWindow = this.times.length - this.head
    const ok = inWindow < this.limit
    if (ok) this.times.push(now)
    const oldest = (this.times[this.head] as number | undefined) ?? now
    const resetMs = oldest + this.periodMs
    return {
      ok,
      observed: this.times.length - this.head,
      resetAt: Math.ceil(resetMs / 1000),
      retryAfter: Math.max(1, Math.ceil((resetMs - now) / 1000))
    }
  }
}

export class SimServer {
  /** Rebuilt once the port (and so the absolute base URL) is known. */
  json: Json
  private server: http.Server | undefined
  private faults: Faults
  private stormLeft = 0
  private readonly faultRng: Rng
  private readonly window: SlidingWindow | undefined
  private readonly timers = new Set<NodeJS.Timeout>()
  private revoked = false
  private requestSeq = 0
  private statTotal = 0
  private byRoute: Record<string, number> = {}
  private byStatus: Record<string, number> = {}
  private log: Array<LogEntry> = []
  private readonly routes: ReadonlyArray<Route>
  private readonly gql: SimGraphql
  private graphqlMode: GraphqlMode
  url = ""

  constructor(readonly world: World, readonly opts: ServerOptions) {
    this.json = new Json(world, "")
    this.faults = opts.faults
    this.stormLeft = opts.faults.storm429?.count ?? 0
    this.faultRng = Rng.of(opts.seed, 77)
    const rl = opts.rateLimit
    this.window = rl ? new SlidingWindow(rl.requestsPerMinute, (rl.periodSeconds ?? 60) * 1000) : undefined
    this.routes = this.routeTable()
    this.gql = new SimGraphql(world, () => this.json)
    this.graphqlMode = opts.graphql
  }

  // ---------------------------------------------------------------- route table (all GET, under /api/v4)

  private routeTable(): ReadonlyArray<Route> {
    const table: Record<string, Handler> = {
      "/version": () => json(200, { version: this.opts.version, revision: "6f1a3c2b1d0", kas: { enabled: false, externalUrl: null, version: null }, enterprise: this.opts.version.endsWith("-ee") }),
      "/personal_access_tokens/self": () => json(200, this.tokenSelf()),
      "/user": () => json(200, this.json.currentUser()),
      "/groups/:id": (c) => this.group(c),
      "/groups/:id/projects": (c) => this.groupProjects(c),
      "/projects/:id": (c) => this.withProject(c, (p) => json(200, this.json.project(p))),
      "/projects/:id/merge_requests": (c) => this.withProject(c, (p) => this.mergeRequests(c, p)),
      "/projects/:id/merge_requests/:iid": (c) => this.withMr(c, (p, m) => json(200, this.json.mergeRequest(m, true), { records: { kind: "merge_request", projectId: p.id } })),
      "/projects/:id/merge_requests/:iid/notes": (c) => this.withMr(c, (p, m) => this.notes(c, p, m)),
      "/projects/:id/merge_requests/:iid/approvals": (c) => this.withMr(c, (p, m) => this.approvals(p, m)),
      "/projects/:id/merge_requests/:iid/commits": (c) => this.withMr(c, (p, m) => this.commits(c, p, m)),
      "/projects/:id/merge_requests/:iid/diffs": (c) => this.withMr(c, (p, m) => this.diffs(c, p, m)),
      "/projects/:id/pipelines": (c) => this.withCi(c, (p) => this.pipelines(c, p)),
      "/projects/:id/pipelines/:pipeline_id": (c) => this.withCi(c, (p) => this.pipeline(c, p)),
      "/projects/:id/deployments": (c) => this.withCi(c, (p) => this.deployments(c, p)),
      "/projects/:id/deployments/:deployment_id": (c) => this.withCi(c, (p) => this.deployment(c, p))
    }
    return Object.entries(table).map(([template, handler]) => ({ template, segments: template.split("/").slice(1), handler }))
  }

  /** Route keys served, e.g. "GET /projects/:id/merge_requests". */
  routeKeys(): Array<string> {
    return [...this.routes.map((r) => `GET ${r.template}`), GRAPHQL_ROUTE]
  }

  private match(apiPath: string): { route: Route; params: Record<string, string> } | undefined {
    const segs = apiPath.split("/").slice(1)
    outer: for (const route of this.routes) {
      if (route.segments.length !== segs.length) continue
      const params: Record<string, string> = {}
      for (let i = 0; i < segs.length; i++) {
        const t = route.segments[i] as string
        const s = segs[i] as string
        if (t.startsWith(":")) {
          if (s === "") continue outer
          try {
            params[t.slice(1)] = decodeURIComponent(s)
          } catch {
            continue outer
          }
        } else if (t !== s) continue outer
      }
      return { route, params }
    }
    return undefined
  }

  // ---------------------------------------------------------------- handlers

  private tokenSelf(): Record<string, unknown> {
    return {
      id: 42,
      name: "mhq-sync",
      revoked: false,
      created_at: new Date(this.world.genNow - 30 * 86_400_000).toISOString(),
      description: "Read-only token for MiddlewareHQ sync",
      scopes: this.opts.tokenScopes,
      user_id: this.world.tokenUser.id,
      last_used_at: new Date(this.world.now).toISOString(),
      active: true,
      expires_at: new Date(this.world.genNow + 335 * 86_400_000).toISOString().slice(0, 10)
    }
  }

  private group(c: Ctx): Reply {
    const g = this.world.findGroup(c.params["id"] as string)
    if (!g) return message(404, "404 Group Not Found")
    const withProjects = bool(c.query.get("with_projects"))
    if (withProjects === "invalid") return badParam("with_projects", "is invalid")
    return json(200, this.json.groupDetail(g, withProjects ?? true))
  }

  private groupProjects(c: Ctx): Reply {
    const g = this.world.findGroup(c.params["id"] as string)
    if (!g) return message(404, "404 Group Not Found")
    const q = c.query
    const includeSubgroups = bool(q.get("include_subgroups"))
    const archived = bool(q.get("archived"))
    const withShared = bool(q.get("with_shared"))
    for (const [k, v] of [["include_subgroups", includeSubgroups], ["archived", archived], ["with_shared", withShared]] as const) {
      if (v === "invalid") return badParam(k, "is invalid")
    }
    const orderBy = oneOf(q.get("order_by"), ["id", "name", "path", "created_at", "updated_at", "last_activity_at"] as const, "created_at")
    if (orderBy === "invalid") return badParam("order_by")
    const sort = oneOf(q.get("sort"), ["asc", "desc"] as const, "desc")
    if (sort === "invalid") return badParam("sort")

    let list = this.world.groupProjects(g, includeSubgroups === true, withShared !== false)
    if (archived !== undefined) list = list.filter((p) => p.flags.archived === archived)
    const key = (p: Project): number | string =>
      orderBy === "id" ? p.id : orderBy === "name" || orderBy === "path" ? p.path : orderBy === "created_at" ? p.createdAt : -p.index
    list.sort((a, b) => {
      const ka = key(a)
      const kb = key(b)
      const cmp = ka < kb ? -1 : ka > kb ? 1 : a.id - b.id
      return sort === "asc" ? cmp : -cmp
    })
    const render = (ps: ReadonlyArray<Project>) => ps.map((p) => this.json.project(p))

    if (q.get("pagination") === "keyset") {
      if (orderBy !== "id") return message(405, "405 Method Not Allowed - Keyset pagination is not yet available for this type of request")
      const perPage = this.perPage(q)
      const after = Number(q.get("id_after") ?? (sort === "asc" ? -Infinity : NaN))
      const before = Number(q.get("id_before") ?? (sort === "desc" ? Infinity : NaN))
      const rest = list.filter((p) => (sort === "asc" ? p.id > after : p.id < before))
      const page = rest.slice(0, perPage)
      const headers: Record<string, string> = {}
      // Like GitLab: a full page always links to a next one, which may come back empty.
      if (page.length === perPage) {
        const next = new URLSearchParams(q)
        next.delete("page")
        next.delete(sort === "asc" ? "id_before" : "id_after")
        next.set(sort === "asc" ? "id_after" : "id_before", String((page[page.length - 1] as Project).id))
        headers["link"] = `<${this.linkBase(c)}?${next.toString()}>; rel="next"`
      }
      return json(200, render(page), { headers })
    }
    return this.offsetPage(c, list.length, (from, to) => render(list.slice(from, to)))
  }

  private mergeRequests(c: Ctx, p: Project): Reply {
    const q = c.query
    const state = oneOf(q.get("state"), ["opened", "closed", "locked", "merged", "all"] as const, "all")
    if (state === "invalid") return badParam("state")
    const orderBy = oneOf(q.get("order_by"), ["created_at", "updated_at"] as const, "created_at")
    if (orderBy === "invalid") return badParam("order_by")
    const sort = oneOf(q.get("sort"), ["asc", "desc"] as const, "desc")
    if (sort === "invalid") return badParam("sort")
    const scope = oneOf(q.get("scope"), ["created_by_me", "assigned_to_me", "all"] as const, "all")
    if (scope === "invalid") return badParam("scope")
    const dates: Record<string, number> = {}
    for (const k of ["updated_after", "updated_before", "created_after", "created_before"]) {
      const t = time(q.get(k))
      if (t === "invalid") return badParam(k, "is invalid")
      if (t !== undefined) dates[k] = t
    }
    let iids = this.world.listMrIids(p, {
      state: state as MrState | "all" | "locked",
      orderBy,
      sort,
      ...(dates["updated_after"] !== undefined ? { updatedAfter: dates["updated_after"] } : {}),
      ...(dates["updated_before"] !== undefined ? { updatedBefore: dates["updated_before"] } : {}),
      ...(dates["created_after"] !== undefined ? { createdAfter: dates["created_after"] } : {}),
      ...(dates["created_before"] !== undefined ? { createdBefore: dates["created_before"] } : {})
    })
    const only = q.getAll("iids[]").map(Number)
    if (only.length > 0) iids = iids.filter((i) => only.includes(i))
    // scope=created_by_me/assigned_to_me: the sync account authors nothing
    if (scope !== "all") iids = []
    return this.offsetPage(
      c,
      iids.length,
      (from, to) => iids.slice(from, to).map((iid) => this.json.mergeRequest(this.world.mr(p, iid)!, false)),
      { kind: "merge_request", projectId: p.id }
    )
  }

  private notes(c: Ctx, p: Project, m: NonNullable<ReturnType<World["mr"]>>): Reply {
    const sort = oneOf(c.query.get("sort"), ["asc", "desc"] as const, "desc")
    if (sort === "invalid") return badParam("sort")
    const orderBy = oneOf(c.query.get("order_by"), ["created_at", "updated_at"] as const, "created_at")
    if (orderBy === "invalid") return badParam("order_by")
    const notes = [...this.world.detail(m).notes]
    const key = orderBy === "created_at" ? "createdAt" : "updatedAt"
    notes.sort((a, b) => (a[key] - b[key] || a.id - b.id) * (sort === "asc" ? 1 : -1))
    return this.offsetPage(c, notes.length, (from, to) => notes.slice(from, to).map((n) => this.json.note(m, n)), {
      kind: "note",
      projectId: p.id
    })
  }

  private approvals(p: Project, m: NonNullable<ReturnType<World["mr"]>>): Reply {
    if (p.flags.ce === 404) return NOT_FOUND
    if (p.flags.ce === 403) return FORBIDDEN
    return json(200, this.json.approvals(m, this.world.detail(m)))
  }

  private commits(c: Ctx, p: Project, m: NonNullable<ReturnType<World["mr"]>>): Reply {
    if (p.flags.repositoryDisabled) return NOT_FOUND
    const commits = [...this.world.detail(m).commits].reverse() // newest first, like GitLab
    return this.offsetPage(c, commits.length, (from, to) => commits.slice(from, to).map((x) => this.json.commit(p, x)), {
      kind: "commit",
      projectId: p.id
    })
  }

  private diffs(c: Ctx, p: Project, m: NonNullable<ReturnType<World["mr"]>>): Reply {
    if (p.flags.repositoryDisabled) return NOT_FOUND
    const diffs = this.world.detail(m).diffs
    return this.offsetPage(c, diffs.length, (from, to) => diffs.slice(from, to).map((d) => this.json.diff(d)))
  }

  private pipelines(c: Ctx, p: Project): Reply {
    const q = c.query
    const orderBy = oneOf(q.get("order_by"), ["id", "status", "ref", "updated_at", "user_id"] as const, "id")
    if (orderBy === "invalid") return badParam("order_by")
    const sort = oneOf(q.get("sort"), ["asc", "desc"] as const, "desc")
    if (sort === "invalid") return badParam("sort")
    const after = time(q.get("updated_after"))
    const before = time(q.get("updated_before"))
    if (after === "invalid") return badParam("updated_after", "is invalid")
    if (before === "invalid") return badParam("updated_before", "is invalid")
    const status = q.get("status")
    const ref = q.get("ref")
    const list = this.world.pipelines(p).filter((x) =>
      (after === undefined || x.updatedAt > after) && (before === undefined || x.updatedAt < before) &&
      (status === null || x.status === status) && (ref === null || x.ref === ref)
    )
    const key = (x: PipelineRec): number | string =>
      orderBy === "updated_at" ? x.updatedAt : orderBy === "status" ? x.status : orderBy === "ref" ? x.ref : orderBy === "user_id" ? x.userId : x.id
    list.sort((a, b) => {
      const ka = key(a)
      const kb = key(b)
      const cmp = ka < kb ? -1 : ka > kb ? 1 : a.id - b.id
      return sort === "asc" ? cmp : -cmp
    })
    return this.offsetPage(c, list.length, (from, to) => list.slice(from, to).map((x) => this.json.pipeline(p, x, false)), {
      kind: "pipeline",
      projectId: p.id
    })
  }

  private pipeline(c: Ctx, p: Project): Reply {
    const id = Number(c.params["pipeline_id"])
    const x = this.world.pipelines(p).find((y) => y.id === id)
    if (!x) return NOT_FOUND
    return json(200, this.json.pipeline(p, x, true), { records: { kind: "pipeline", projectId: p.id } })
  }

  private deployments(c: Ctx, p: Project): Reply {
    const q = c.query
    const orderBy = oneOf(q.get("order_by"), ["id", "iid", "created_at", "updated_at", "finished_at", "ref"] as const, "id")
    if (orderBy === "invalid") return badParam("order_by")
    const sort = oneOf(q.get("sort"), ["asc", "desc"] as const, "asc")
    if (sort === "invalid") return badParam("sort")
    const statuses = ["created", "running", "success", "failed", "canceled", "skipped", "blocked"] as const
    const status = q.get("status")
    if (status !== null && !(statuses as ReadonlyArray<string>).includes(status)) return badParam("status")
    const dates: Record<string, number | undefined> = {}
    for (const k of ["updated_after", "updated_before", "finished_after", "finished_before"]) {
      const t = time(q.get(k))
      if (t === "invalid") return badParam(k, "is invalid")
      dates[k] = t
    }
    // GitLab's DeploymentsFinder refuses filters that cannot use an index.
    if ((dates["updated_after"] !== undefined || dates["updated_before"] !== undefined) && orderBy !== "updated_at") {
      return message(400, "400 Bad request - `updated_at` filter and `updated_at` sorting must be paired")
    }
    if ((dates["finished_after"] !== undefined || dates["finished_before"] !== undefined) && (orderBy !== "finished_at" || status !== "success")) {
      return message(400, "400 Bad request - `finished_at` filter requires `finished_at` sort and `success` status")
    }
    const env = q.get("environment")
    const within = (t: number | null, lo: number | undefined, hi: number | undefined) =>
      (lo === undefined || (t !== null && t >= lo)) && (hi === undefined || (t !== null && t <= hi))
    const list = this.world.deployments(p).filter((d) =>
      (status === null || d.status === (status as DeploymentStatus)) && (env === null || d.environment === env) &&
      within(d.updatedAt, dates["updated_after"], dates["updated_before"]) &&
      (dates["finished_after"] === undefined && dates["finished_before"] === undefined ||
        within(d.finishedAt, dates["finished_after"], dates["finished_before"]))
    )
    const key = (d: DeploymentRec): number | string =>
      orderBy === "updated_at" ? d.updatedAt : orderBy === "created_at" ? d.createdAt : orderBy === "finished_at" ? d.finishedAt ?? 0 :
      orderBy === "ref" ? d.ref : orderBy === "iid" ? d.iid : d.id
    list.sort((a, b) => {
      const ka = key(a)
      const kb = key(b)
      const cmp = ka < kb ? -1 : ka > kb ? 1 : a.id - b.id
      return sort === "asc" ? cmp : -cmp
    })
    return this.offsetPage(c, list.length, (from, to) => list.slice(from, to).map((d) => this.json.deployment(p, d)), {
      kind: "deployment",
      projectId: p.id
    })
  }

  private deployment(c: Ctx, p: Project): Reply {
    const id = Number(c.params["deployment_id"])
    const d = this.world.deployments(p).find((y) => y.id === id)
    if (!d) return NOT_FOUND
    return json(200, this.json.deployment(p, d), { records: { kind: "deployment", projectId: p.id } })
  }

  private withProject(c: Ctx, f: (p: Project) => Reply): Reply {
    const p = this.world.findProject(c.params["id"] as string)
    return p ? f(p) : message(404, "404 Project Not Found")
  }

  private withMr(c: Ctx, f: (p: Project, m: NonNullable<ReturnType<World["mr"]>>) => Reply): Reply {
    return this.withProject(c, (p) => {
      const iid = c.params["iid"] as string
      const m = /^\d+$/.test(iid) ? this.world.mr(p, Number(iid)) : undefined
      return m ? f(p, m) : message(404, "404 Not found")
    })
  }

  private withCi(c: Ctx, f: (p: Project) => Reply): Reply {
    return this.withProject(c, (p) => (p.flags.ciDisabled ? FORBIDDEN : f(p)))
  }

  // ---------------------------------------------------------------- pagination

  private perPage(q: URLSearchParams): number {
    const n = Number(q.get("per_page") ?? 20)
    return Number.isInteger(n) && n >= 1 ? Math.min(n, 100) : 20
  }

  private linkBase(c: Ctx): string {
    return `${c.url.origin}${c.url.pathname}`
  }

  /** GitLab's offset pagination headers; totals (and rel="last") are omitted above 10,000 rows. */
  private offsetPage(
    c: Ctx,
    total: number,
    slice: (from: number, to: number) => Array<unknown>,
    records?: Reply["records"]
  ): Reply {
    const perPage = this.perPage(c.query)
    const raw = Number(c.query.get("page") ?? 1)
    const page = Number.isInteger(raw) && raw >= 1 ? raw : 1
    const from = (page - 1) * perPage
    const items = from < total ? slice(from, Math.min(total, from + perPage)) : []
    const pages = Math.max(1, Math.ceil(total / perPage))
    const countable = total <= 10_000
    const hasNext = from + perPage < total
    const link = (n: number) => {
      const p = new URLSearchParams(c.query)
      p.delete("page")
      p.delete("per_page")
      p.append("page", String(n))
      p.append("per_page", String(perPage))
      return `<${this.linkBase(c)}?${p.toString()}>`
    }
    const links: Array<string> = []
    if (page > 1) links.push(`${link(page - 1)}; rel="prev"`)
    if (hasNext) links.push(`${link(page + 1)}; rel="next"`)
    links.push(`${link(1)}; rel="first"`)
    if (countable) links.push(`${link(pages)}; rel="last"`)
    const headers: Record<string, string> = {
      "x-page": String(page),
      "x-per-page": String(perPage),
      "x-next-page": hasNext ? String(page + 1) : "",
      "x-prev-page": page > 1 ? String(page - 1) : "",
      link: links.join(", ")
    }
    if (countable) {
      headers["x-total"] = String(total)
      headers["x-total-pages"] = String(pages)
    }
    return json(200, items, records ? { headers, records } : { headers })
  }

  // ---------------------------------------------------------------- faults

  private matches(m: PathMatcher | undefined, apiPath: string, route: string): boolean {
    if (!m) return false
    return typeof m === "function" ? m(apiPath, route) : m.includes(apiPath) || m.includes(route)
  }

  private applyWrongType(reply: Reply): void {
    const rec = reply.records
    if (!rec || this.faults.wrongType.length === 0) return
    const targets = this.faults.wrongType.filter((t) => t.kind === rec.kind && t.projectId === rec.projectId)
    if (targets.length === 0) return
    const items = (Array.isArray(reply.body) ? reply.body : [reply.body]) as Array<Record<string, unknown>>
    for (const item of items) {
      for (const t of targets) {
        if (item["id"] !== t.id && !(t.kind === "merge_request" && (item as GlMergeRequest).iid === t.id)) continue
        const field = t.field ?? (t.kind === "commit" ? "created_at" : "id")
        item[field] = "value" in t ? t.value : field === "id" ? "abc" : 12
      }
    }
  }

  setFaults(partial: Partial<Faults>): void {
    this.faults = { ...this.faults, ...partial }
    if ("storm429" in partial) this.stormLeft = partial.storm429?.count ?? 0
  }

  currentFaults(): Faults {
    return this.faults
  }

  setGraphql(mode: GraphqlMode): void {
    this.graphqlMode = mode
  }

  revokeToken(): void {
    this.revoked = true
  }

  // ---------------------------------------------------------------- stats

  stats(): Stats {
    return { total: this.statTotal, byRoute: { ...this.byRoute }, byStatus: { ...this.byStatus }, log: this.log.slice(-this.opts.logLimit) }
  }

  resetStats(): void {
    this.statTotal = 0
    this.byRoute = {}
    this.byStatus = {}
    this.log = []
  }

  private record(e: LogEntry): void {
    this.statTotal++
    this.byRoute[e.route] = (this.byRoute[e.route] ?? 0) + 1
    this.byStatus[e.status] = (this.byStatus[e.status] ?? 0) + 1
    const limit = this.opts.logLimit
    if (limit <= 0) return
    this.log.push(e)
    if (this.log.length >= limit * 2) this.log = this.log.slice(-limit) // amortised ring buffer
  }

  // ---------------------------------------------------------------- HTTP

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const at = Date.now()
    const method = req.method ?? "GET"
    const url = new URL(req.url ?? "/", `${this.opts.tls ? "https" : "http"}://${req.headers.host ?? "127.0.0.1"}`)
    const root = this.opts.relativeRoot
    let path = url.pathname
    if (root !== "" && (path === root || path.startsWith(`${root}/`))) path = path.slice(root.length)

    // Side channel for benchmarks running the sim in its own process; not counted.
    if (path === "/__sim/stats") return this.write(res, 200, JSON.stringify(this.stats()), {})

    const graphql = method === "POST" && path === "/api/graphql"
    const apiPath = graphql ? "/graphql" : path.startsWith("/api/v4/") ? path.slice("/api/v4".length) : undefined
    const found = apiPath !== undefined && method === "GET" ? this.match(apiPath) : undefined
    const route = graphql ? GRAPHQL_ROUTE : `${method} ${found ? found.route.template : "(unmatched)"}`
    const logPath = `${apiPath ?? path}${url.search}`
    const faults = this.faults
    const done = (status: number, retryAfter?: number) =>
      this.record({ at, method, route, path: logPath, status, ...(retryAfter === undefined ? {} : { retryAfter }) })

    if (this.matches(faults.hang, apiPath ?? path, route)) return done(0)
    // Read the whole body before answering (a reply to a half-sent POST would reset the connection).
    const rawBody = graphql ? await readBody(req, GRAPHQL_MAX_BODY) : ""
    if (faults.latencyMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => (this.timers.delete(t), resolve()), faults.latencyMs)
        this.timers.add(t)
      })
    }

    const headers: Record<string, string> = {}
    if (this.window) {
      const w = this.window.take(Date.now())
      Object.assign(headers, {
        "ratelimit-name": "throttle_authenticated_api",
        "ratelimit-limit": String(this.window.limit),
        "ratelimit-observed": String(w.observed),
        "ratelimit-remaining": String(Math.max(0, this.window.limit - w.observed)),
        "ratelimit-reset": String(w.resetAt),
        "ratelimit-resettime": new Date(w.resetAt * 1000).toUTCString()
      })
      if (!w.ok) return this.tooMany(res, headers, w.retryAfter, done)
    }
    if (this.stormLeft > 0) {
      this.stormLeft--
      return this.tooMany(res, headers, faults.storm429?.retryAfterSeconds ?? 1, done)
    }

    const auth = req.headers["private-token"] ?? req.headers["authorization"]?.replace(/^Bearer\s+/i, "")
    if (this.revoked || auth !== this.opts.token) {
      done(401)
      return this.write(res, 401, JSON.stringify({ message: "401 Unauthorized" }), headers)
    }
    const scopes = this.opts.tokenScopes
    if ((graphql || (found && found.route.template !== "/personal_access_tokens/self")) && !scopes.includes("api") && !scopes.includes("read_api")) {
      done(403)
      const body = { error: "insufficient_scope", error_description: "The request requires higher privileges than provided by the access token.", scope: "api read_api" }
      return this.write(res, 403, JSON.stringify(body), headers)
    }

    if (faults.errorRate > 0 && this.faultRng.next() < faults.errorRate) {
      const status = this.faultRng.pick(faults.errorStatuses)
      done(status)
      if (status === 500) return this.write(res, 500, JSON.stringify({ message: "500 Internal Server Error" }), headers)
      const html = status === 502 ? "<html><body><h1>502 Bad Gateway</h1>GitLab is not responding.</body></html>" : "<html><body><h1>503 Service Unavailable</h1></body></html>"
      return this.write(res, status, html, headers, "text/html; charset=utf-8")
    }

    const reply = graphql ? this.graphqlReply(rawBody, faults) : found ? found.route.handler({ params: found.params, query: url.searchParams, url }) : NOT_FOUND
    this.applyWrongType(reply)
    let body = JSON.stringify(reply.body)
    if (reply.status === 200 && this.matches(faults.truncateJson, apiPath ?? path, route)) body = body.slice(0, Math.floor(body.length / 2))
    done(reply.status)
    this.write(res, reply.status, body, { ...headers, ...reply.headers })
  }

  /** POST /api/graphql: 200 with `{data}` / `{errors, data: null}`; 400 for a body that is not JSON. */
  private graphqlReply(rawBody: string | undefined, faults: Faults): Reply {
    const mode = this.graphqlMode
    if (mode === "disabled") return NOT_FOUND
    if (rawBody === undefined) return message(413, "413 Request Entity Too Large")
    let body: unknown
    try {
      body = JSON.parse(rawBody)
    } catch (e) {
      return json(400, { error: `Failed to parse the request body: ${e instanceof Error ? e.message : String(e)}` })
    }
    return json(200, this.gql.run(mode, body, faults.wrongType))
  }

  private tooMany(res: http.ServerResponse, headers: Record<string, string>, retryAfter: number, done: (s: number, r?: number) => void): void {
    done(429, retryAfter)
    this.write(res, 429, "Retry later\n", { ...headers, "retry-after": String(retryAfter) }, "text/plain")
  }

  private write(res: http.ServerResponse, status: number, body: string, headers: Record<string, string>, type = "application/json"): void {
    if (res.destroyed) return
    res.writeHead(status, {
      "content-type": type,
      "content-length": Buffer.byteLength(body),
      "cache-control": "max-age=0, private, must-revalidate",
      "vary": "Origin",
      "x-content-type-options": "nosniff",
      "x-frame-options": "SAMEORIGIN",
      "x-request-id": `01SIM${(++this.requestSeq).toString(36).padStart(10, "0").toUpperCase()}`,
      "x-runtime": "0.012345",
      ...headers
    })
    res.end(body)
  }

  async listen(): Promise<string> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.handle(req, res).catch((e: unknown) => {
        this.write(res, 500, JSON.stringify({ message: "500 Internal Server Error", detail: String(e) }), {})
      })
    }
    const server = this.opts.tls ? https.createServer({ key: this.opts.tls.key, cert: this.opts.tls.cert }, handler) : http.createServer(handler)
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(this.opts.port, "127.0.0.1", () => resolve())
    })
    const port = (server.address() as AddressInfo).port
    this.url = `${this.opts.tls ? "https" : "http"}://127.0.0.1:${port}${this.opts.relativeRoot}`
    this.json = new Json(this.world, this.url)
    return this.url
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    const server = this.server
    if (!server) return
    this.server = undefined
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }
}
