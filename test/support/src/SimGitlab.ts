// Simulated self-hosted GitLab (REST API v4) for tests, the demo command and benchmarks.
// Data is generated lazily and deterministically from a seed; only mutations are stored.
import { Effect, type Scope } from "effect"
import type { GlApprovals, GlCommit, GlDeployment, GlDiff, GlGroup, GlMergeRequest, GlNote, GlPipeline, GlProject } from "./simgitlab/json.ts"
import { DAY, diffLineCounts, type Mr, type PipelineStatus, type Project, type ProjectFlags, projectIdOf, World } from "./simgitlab/model.ts"
import type { GraphqlMode } from "./simgitlab/graphql.ts"
import { Rng } from "./simgitlab/rng.ts"
import { type Faults, noFaults, SimServer, type Stats } from "./simgitlab/server.ts"

export type { GlApprovals, GlCommit, GlDeployment, GlDiff, GlGroup, GlMergeRequest, GlNote, GlPipeline, GlProject, GlUser } from "./simgitlab/json.ts"
export type { GraphqlMode } from "./simgitlab/graphql.ts"
export type { PipelineStatus, ProjectFlags } from "./simgitlab/model.ts"
export type { Faults, LogEntry, PathMatcher, RecordKind, Stats, WrongTypeTarget } from "./simgitlab/server.ts"
export { projectIdOf }

export interface Options {
  /** PRNG seed; same seed and options → same data. Default 1. */
  readonly seed?: number
  /** Top-level groups (default 3); each gets `subgroupsPerGroup` subgroups (default 2), and its first
   * subgroup one nested subgroup. Projects are dealt round-robin over all of them. */
  readonly groups?: number
  readonly subgroupsPerGroup?: number
  /** Projects (default 6); ids are `projectIdOf(index)` = 1001, 1003, … */
  readonly projects?: number
  /** MRs per project (default 30), iids 1..n. */
  readonly mrsPerProject?: number
  readonly pipelinesPerProject?: number
  readonly deploymentsPerProject?: number
  readonly users?: number
  /** Generated timestamps lie within `spanDays` (default 20) before `now`. */
  readonly spanDays?: number
  /** Clock of the simulated instance, epoch ms or Date. Default Date.now() at start. */
  readonly now?: number | Date
  /** The MR given many notes (pagination). Default: first project, iid 1, 250 notes. */
  readonly bigNotesMr?: { readonly projectId: number; readonly iid: number; readonly notes: number } | false
  /** Every n-th project is archived (default 7 → the 7th, 14th, …); 0 = none. */
  readonly archivedEvery?: number
  /** Per project id, e.g. `{ [projectIdOf(1)]: { ce: 404, ciDisabled: true } }`. */
  readonly projectFlags?: Readonly<Record<number, Partial<ProjectFlags>>>
  /** Default: a deterministic `glpat-…` string. */
  readonly token?: string
  /** Scopes reported by /personal_access_tokens/self; without api/read_api other routes answer 403. */
  readonly tokenScopes?: ReadonlyArray<string>
  /** Reported by /version; default "17.5.1-ee". */
  readonly version?: string
  /** 0 (default) = ephemeral. Always bound to 127.0.0.1. */
  readonly port?: number
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer }
  /** e.g. "/gitlab": `url` becomes http://127.0.0.1:PORT/gitlab; the API answers with and without it. */
  readonly relativeRoot?: string
  /** Sliding-window budget; `periodSeconds` (default 60) lets tests use short windows. */
  readonly rateLimit?: { readonly requestsPerMinute: number; readonly periodSeconds?: number }
  readonly faults?: Partial<Faults>
  /** Request log entries kept (default 10,000; 0 = no log, counters only). */
  readonly logLimit?: number
  /** GraphQL endpoint (POST `${url}/api/graphql`, route key "POST /graphql"): "enabled" (default);
   * "disabled" → 404; "legacy" → an old GitLab schema without `MergeRequest.commits` and
   * `DiffStatsSummary.fileCount`. Changeable at runtime with `setGraphql`. */
  readonly graphql?: GraphqlMode
}

export interface GroupInfo {
  readonly id: number
  readonly fullPath: string
  readonly parentId: number | null
}

export interface ProjectInfo {
  readonly id: number
  readonly pathWithNamespace: string
  readonly namespaceId: number
  /** Namespace and its ancestors, nearest first. */
  readonly groupIds: ReadonlyArray<number>
  readonly topGroupId: number
  readonly sharedWithGroupIds: ReadonlyArray<number>
  readonly flags: ProjectFlags
  readonly mergeRequestCount: number
}

export interface Handle {
  /** Instance root, e.g. "http://127.0.0.1:PORT" (plus the relative root if set). */
  readonly url: string
  /** `${url}/api/v4` */
  readonly apiUrl: string
  readonly token: string
  readonly stop: () => Promise<void>
  readonly stats: () => Stats
  readonly resetStats: () => void
  readonly setFaults: (partial: Partial<Faults>) => void
  /** Switches the GraphQL endpoint's mode from the next request on. */
  readonly setGraphql: (mode: GraphqlMode) => void
  /** `${url}/api/graphql` */
  readonly graphqlUrl: string
  /** The token answers 401 from now on. */
  readonly revokeToken: () => void
  /** Route keys served, e.g. "GET /projects/:id/merge_requests/:iid/notes", and "POST /graphql". */
  readonly routes: () => ReadonlyArray<string>

  // clock of the simulated instance (mutations are stamped with it)
  readonly now: () => number
  readonly advanceNow: (ms: number) => void
  readonly setNow: (at: number | Date) => void

  // ground truth, same generator and shapes the API serves (without faults)
  readonly groups: () => ReadonlyArray<GroupInfo>
  readonly group: (groupId: number) => GlGroup
  readonly projects: () => ReadonlyArray<ProjectInfo>
  readonly project: (projectId: number) => GlProject
  /** List-endpoint shape, by iid. */
  readonly mergeRequests: (projectId: number) => ReadonlyArray<GlMergeRequest>
  /** Single-endpoint shape (adds diff_refs, changes_count, …). */
  readonly mergeRequest: (projectId: number, iid: number) => GlMergeRequest
  /** Oldest first. */
  readonly notes: (projectId: number, iid: number) => ReadonlyArray<GlNote>
  readonly approvals: (projectId: number, iid: number) => GlApprovals
  /** Newest first, like the API. */
  readonly commits: (projectId: number, iid: number) => ReadonlyArray<GlCommit>
  readonly diffs: (projectId: number, iid: number) => ReadonlyArray<GlDiff>
  /** Detailed shape (with started_at, finished_at, duration), by id. Empty when CI is disabled. */
  readonly pipelines: (projectId: number) => ReadonlyArray<GlPipeline>
  readonly deployments: (projectId: number) => ReadonlyArray<GlDeployment>

  // mutations, stamped with now()
  /** `amount` MRs (a count, or a fraction if < 1) chosen by the seeded PRNG get a new note, some an
   * approval and/or a merge; updated_at = now. */
  readonly touchMergeRequests: (target: number | "all", amount: number) => ReadonlyArray<{ readonly projectId: number; readonly iid: number }>
  readonly touchMergeRequest: (
    projectId: number,
    iid: number,
    change?: { readonly note?: string; readonly approveBy?: number; readonly merge?: boolean; readonly close?: boolean }
  ) => void
  readonly addPipelines: (projectId: number, n: number, status?: PipelineStatus) => ReadonlyArray<GlPipeline>
  /** Running/pending pipelines and running deployments become success, finished now. */
  readonly finishRunning: () => { readonly pipelines: number; readonly deployments: number }
}

const defaultToken = (seed: number): string => `glpat-${Rng.of(seed, 5150).hex(20)}`

export const start = async (options: Options = {}): Promise<Handle> => {
  const seed = options.seed ?? 1
  const mrsPerProject = options.mrsPerProject ?? 30
  const now = options.now === undefined ? Date.now() : options.now instanceof Date ? options.now.getTime() : options.now
  const world = new World({
    seed,
    groups: Math.max(1, options.groups ?? 3),
    subgroupsPerGroup: options.subgroupsPerGroup ?? 2,
    projects: options.projects ?? 6,
    mrsPerProject,
    pipelinesPerProject: options.pipelinesPerProject ?? 20,
    deploymentsPerProject: options.deploymentsPerProject ?? 10,
    users: Math.max(2, options.users ?? 25),
    spanDays: options.spanDays ?? 20,
    now,
    bigNotesMr: options.bigNotesMr ?? (mrsPerProject > 0 ? { projectId: projectIdOf(0), iid: 1, notes: 250 } : false),
    archivedEvery: options.archivedEvery ?? 7,
    projectFlags: options.projectFlags ?? {}
  })
  const token = options.token ?? defaultToken(seed)
  const server = new SimServer(world, {
    seed,
    token,
    tokenScopes: options.tokenScopes ?? ["read_api", "read_user"],
    version: options.version ?? "17.5.1-ee",
    relativeRoot: (options.relativeRoot ?? "").replace(/\/+$/, ""),
    rateLimit: options.rateLimit,
    faults: { ...noFaults, ...options.faults },
    logLimit: options.logLimit ?? 10_000,
    port: options.port ?? 0,
    tls: options.tls,
    graphql: options.graphql ?? "enabled"
  })
  const url = await server.listen()

  const project = (id: number): Project => world.projectOrThrow(id)
  const mr = (projectId: number, iid: number): Mr => {
    const m = world.mr(project(projectId), iid)
    if (!m) throw new Error(`SimGitlab: no MR !${iid} in project ${projectId}`)
    return m
  }
  const byId = <A extends { readonly id: number }>(xs: ReadonlyArray<A>) => [...xs].sort((a, b) => a.id - b.id)

  return {
    url,
    apiUrl: `${url}/api/v4`,
    token,
    stop: () => server.stop(),
    stats: () => server.stats(),
    resetStats: () => server.resetStats(),
    setFaults: (partial) => server.setFaults(partial),
    setGraphql: (mode) => server.setGraphql(mode),
    graphqlUrl: `${url}/api/graphql`,
    revokeToken: () => server.revokeToken(),
    routes: () => server.routeKeys(),

    now: () => world.now,
    advanceNow: (ms) => {
      world.now += ms
    },
    setNow: (at) => {
      world.now = at instanceof Date ? at.getTime() : at
    },

    groups: () => world.groups.map((g) => ({ id: g.id, fullPath: g.fullPath, parentId: g.parentId })),
    group: (groupId) => {
      const g = world.findGroup(String(groupId))
      if (!g) throw new Error(`SimGitlab: no group ${groupId}`)
      return server.json.group(g)
    },
    projects: () =>
      world.projects.map((p) => ({
        id: p.id,
        pathWithNamespace: p.pathWithNamespace,
        namespaceId: p.namespace.id,
        groupIds: p.groupIds,
        topGroupId: p.groupIds[p.groupIds.length - 1] as number,
        sharedWithGroupIds: p.sharedWithGroupIds,
        flags: p.flags,
        mergeRequestCount: world.mrCount(p)
      })),
    project: (projectId) => server.json.project(project(projectId)),
    mergeRequests: (projectId) => {
      const p = project(projectId)
      return Array.from({ length: world.mrCount(p) }, (_, i) => server.json.mergeRequest(world.mr(p, i + 1) as Mr, false))
    },
    mergeRequest: (projectId, iid) => server.json.mergeRequest(mr(projectId, iid), true),
    notes: (projectId, iid) => {
      const m = mr(projectId, iid)
      return world.detail(m).notes.map((n) => server.json.note(m, n))
    },
    approvals: (projectId, iid) => {
      const m = mr(projectId, iid)
      return server.json.approvals(m, world.detail(m))
    },
    commits: (projectId, iid) => {
      const m = mr(projectId, iid)
      return [...world.detail(m).commits].reverse().map((c) => server.json.commit(m.project, c))
    },
    diffs: (projectId, iid) => world.detail(mr(projectId, iid)).diffs.map((d) => server.json.diff(d)),
    pipelines: (projectId) => {
      const p = project(projectId)
      return byId(world.pipelines(p)).map((x) => server.json.pipeline(p, x, true))
    },
    deployments: (projectId) => {
      const p = project(projectId)
      return byId(world.deployments(p)).map((d) => server.json.deployment(p, d))
    },

    touchMergeRequests: (target, amount) => world.touchMergeRequests(target, amount),
    touchMergeRequest: (projectId, iid, change) => world.touchMergeRequest(projectId, iid, change),
    addPipelines: (projectId, n, status) => {
      const p = project(projectId)
      return world.addPipelines(projectId, n, status).map((x) => server.json.pipeline(p, x, true))
    },
    finishRunning: () => world.finishRunning()
  }
}

/** Scoped: the server stops when the scope closes. */
export const make = (options: Options = {}): Effect.Effect<Handle, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => start(options)),
    (handle) => Effect.promise(() => handle.stop())
  )

/** Counts `+`/`-` lines of a unified diff (excluding headers), as a client would. */
export { diffLineCounts }

/** Milliseconds in a day, handy for `advanceNow`. */
export const day = DAY

