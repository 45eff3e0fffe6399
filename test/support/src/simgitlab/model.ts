// The simulated GitLab's data: a lazily generated world plus a small overlay of mutations.
// Every MR is a pure function of (seed, projectId, iid) until a mutation stores an override for it,
// so 100k MRs cost a few typed arrays per project, not 100k objects.
import { Rng, sha } from "./rng.ts"
import * as W from "./words.ts"

export const MINUTE = 60_000
export const HOUR = 60 * MINUTE
export const DAY = 24 * HOUR

export type MrState = "opened" | "merged" | "closed"
export type PipelineStatus =
  | "created" | "waiting_for_resource" | "preparing" | "pending" | "running"
  | "success" | "failed" | "canceled" | "skipped" | "manual" | "scheduled"
export type DeploymentStatus = "created" | "running" | "success" | "failed" | "canceled" | "skipped" | "blocked"

export interface ProjectFlags {
  readonly archived: boolean
  /** Answer approvals like GitLab CE (no approvals API): 403 or 404; false = EE behaviour. */
  readonly ce: false | 403 | 404
  /** CI/CD disabled: pipelines and deployments answer 403. */
  readonly ciDisabled: boolean
  /** Repository disabled: MR commits and diffs answer 404. */
  readonly repositoryDisabled: boolean
}

export interface WorldConfig {
  readonly seed: number
  readonly groups: number
  readonly subgroupsPerGroup: number
  readonly projects: number
  readonly mrsPerProject: number
  readonly pipelinesPerProject: number
  readonly deploymentsPerProject: number
  readonly users: number
  readonly spanDays: number
  readonly now: number
  readonly bigNotesMr: { readonly projectId: number; readonly iid: number; readonly notes: number } | false
  readonly archivedEvery: number
  readonly projectFlags: Readonly<Record<number, Partial<ProjectFlags>>>
}

export interface User {
  readonly id: number
  readonly username: string
  readonly name: string
  readonly email: string
}

export interface Group {
  readonly id: number
  readonly name: string
  readonly path: string
  readonly fullPath: string
  readonly fullName: string
  readonly parentId: number | null
  readonly createdAt: number
}

export interface Project {
  readonly id: number
  readonly index: number
  readonly name: string
  readonly path: string
  readonly pathWithNamespace: string
  readonly nameWithNamespace: string
  readonly namespace: Group
  /** The namespace and all its ancestors, nearest first. */
  readonly groupIds: ReadonlyArray<number>
  /** Top-level groups this project is shared with (visible with `with_shared=true`). */
  readonly sharedWithGroupIds: ReadonlyArray<number>
  readonly flags: ProjectFlags
  readonly approvalsRequired: number
  readonly createdAt: number
}

export interface Mr {
  readonly project: Project
  readonly iid: number
  readonly id: number
  readonly title: string
  readonly description: string
  readonly sourceBranch: string
  readonly labels: ReadonlyArray<string>
  readonly authorId: number
  readonly assigneeId: number | null
  readonly reviewerIds: ReadonlyArray<number>
  readonly createdAt: number
  readonly updatedAt: number
  readonly state: MrState
  readonly draft: boolean
  readonly mergedAt: number | null
  readonly mergedById: number | null
  readonly closedAt: number | null
  readonly closedById: number | null
  readonly upvotes: number
  readonly squash: boolean
  readonly fileCount: number
  readonly commitCount: number
  readonly headSha: string
  readonly baseSha: string
  readonly mergeCommitSha: string | null
  readonly userNotesCount: number
  // generation inputs for the detail (notes/commits) of the untouched MR
  readonly base: MrGenerated
  readonly extraNotes: ReadonlyArray<ExtraNote>
}

/** What the generator decided for an MR before any mutation. */
export interface MrGenerated {
  readonly wasDraft: boolean
  readonly updatedAt: number
  readonly approverIds: ReadonlyArray<number>
  readonly changesRequestedBy: number | null
  readonly userNotes: number
  readonly initialCommits: number
  readonly pushes: ReadonlyArray<number>
  readonly noteCount: number
}

interface ExtraNote {
  readonly authorId: number
  readonly body: string
  readonly system: boolean
  readonly at: number
  readonly approval: boolean
}

interface MrOverride {
  state: MrState
  draft: boolean
  mergedAt: number | null
  mergedById: number | null
  closedAt: number | null
  closedById: number | null
  updatedAt: number
  extraNotes: Array<ExtraNote>
}

export interface NoteRec {
  readonly id: number
  readonly authorId: number
  readonly body: string
  readonly system: boolean
  readonly type: null | "DiscussionNote" | "DiffNote"
  readonly createdAt: number
  readonly updatedAt: number
  readonly resolvable: boolean
}

export interface CommitRec {
  readonly sha: string
  readonly title: string
  readonly message: string
  readonly authorId: number
  readonly authoredAt: number
  readonly committedAt: number
  readonly parentSha: string
}

export interface DiffRec {
  readonly oldPath: string
  readonly newPath: string
  readonly newFile: boolean
  readonly renamedFile: boolean
  readonly deletedFile: boolean
  readonly diff: string
}

export interface MrDetail {
  readonly notes: ReadonlyArray<NoteRec>
  /** Oldest first. */
  readonly commits: ReadonlyArray<CommitRec>
  readonly diffs: ReadonlyArray<DiffRec>
  readonly approvals: ReadonlyArray<{ readonly userId: number; readonly at: number }>
}

export interface PipelineRec {
  readonly id: number
  readonly iid: number
  readonly projectId: number
  readonly sha: string
  readonly beforeSha: string
  readonly ref: string
  readonly source: "push" | "merge_request_event" | "schedule" | "web"
  readonly userId: number
  readonly createdAt: number
  status: PipelineStatus
  startedAt: number | null
  finishedAt: number | null
  updatedAt: number
}

export interface DeploymentRec {
  readonly id: number
  readonly iid: number
  readonly projectId: number
  readonly environment: string
  readonly environmentId: number
  readonly ref: string
  readonly sha: string
  readonly userId: number
  readonly pipelineId: number
  readonly jobId: number
  readonly createdAt: number
  status: DeploymentStatus
  startedAt: number | null
  finishedAt: number | null
  updatedAt: number
}

/** Project ids are spaced by 2 so that keyset `id_after` is exercised on non-contiguous ids. */
export const projectIdOf = (index: number): number => 1001 + index * 2
const tokenUserId = 1

const STATE_CODE: Record<MrState, number> = { opened: 0, merged: 1, closed: 2 }

/** Per-project MR columns: enough to filter and sort lists without building MR objects. */
interface MrIndex {
  readonly created: Float64Array
  readonly updated: Float64Array
  readonly state: Uint8Array
  byCreated: Int32Array | undefined
  byUpdated: Int32Array | undefined
}

// Stream ids for Rng.of(seed, STREAM, …): keep each kind of record on its own stream.
const S = { mr: 1, notes: 2, commit: 3, base: 4, diff: 5, pipeline: 6, deployment: 7, project: 8, user: 9, mutate: 10 } as
  const

const DETAIL_CACHE = 256

export class World {
  readonly users: ReadonlyArray<User>
  readonly groups: ReadonlyArray<Group>
  readonly projects: ReadonlyArray<Project>
  /** Anchor of the generated timeline; fixed so that advancing `now` never changes generated data. */
  readonly genNow: number
  now: number

  private readonly projectById = new Map<number, Project>()
  private readonly projectByPath = new Map<string, Project>()
  private readonly groupById = new Map<number, Group>()
  private readonly groupByPath = new Map<string, Group>()
  private readonly indexes: Array<MrIndex | undefined> = []
  private readonly overrides: Array<Map<number, MrOverride> | undefined> = []
  private readonly pipelineCache: Array<Array<PipelineRec> | undefined> = []
  private readonly deploymentCache: Array<Array<DeploymentRec> | undefined> = []
  private readonly detailCache = new Map<string, MrDetail>()
  private mutations = 0

  constructor(readonly cfg: WorldConfig) {
    this.genNow = cfg.now
    this.now = cfg.now
    this.users = this.makeUsers()
    this.groups = this.makeGroups()
    for (const g of this.groups) {
      this.groupById.set(g.id, g)
      this.groupByPath.set(g.fullPath.toLowerCase(), g)
    }
    this.projects = this.makeProjects()
    for (const p of this.projects) {
      this.projectById.set(p.id, p)
      this.projectByPath.set(p.pathWithNamespace.toLowerCase(), p)
    }
  }

  // ---------------------------------------------------------------- lookup

  user(id: number): User {
    return id === tokenUserId ? this.tokenUser : (this.users[(id - 2) % this.users.length] as User)
  }

  readonly tokenUser: User = { id: tokenUserId, username: "mhq-sync-reader", name: "MHQ Sync Reader", email: "mhq-sync@example.invalid" }

  /** By numeric id or (decoded) full path, case-insensitive like GitLab. */
  findProject(idOrPath: string): Project | undefined {
    return /^\d+$/.test(idOrPath) ? this.projectById.get(Number(idOrPath)) : this.projectByPath.get(idOrPath.toLowerCase())
  }

  findGroup(idOrPath: string): Group | undefined {
    return /^\d+$/.test(idOrPath) ? this.groupById.get(Number(idOrPath)) : this.groupByPath.get(idOrPath.toLowerCase())
  }

  projectOrThrow(projectId: number): Project {
    const p = this.projectById.get(projectId)
    if (!p) throw new Error(`SimGitlab: no project ${projectId}`)
    return p
  }

  /** Projects of a group: direct, or the whole subtree; shared ones appended (GitLab's with_shared). */
  groupProjects(group: Group, includeSubgroups: boolean, withShared: boolean): Array<Project> {
    return this.projects.filter((p) =>
      (includeSubgroups ? p.groupIds.includes(group.id) : p.namespace.id === group.id) ||
      (withShared && p.sharedWithGroupIds.includes(group.id))
    )
  }

  // ---------------------------------------------------------------- generation: users, groups, projects

  private makeUsers(): Array<User> {
    const out: Array<User> = []
    for (let i = 0; i < this.cfg.users; i++) {
      const r = Rng.of(this.cfg.seed, S.user, i)
      const first = r.pick(W.firstNames)
      const last = r.pick(W.lastNames)
      const username = `${first}.${last}${i >= 20 ? i : ""}`.toLowerCase()
      out.push({ id: i + 2, username, name: `${first} ${last}`, email: `${username}@example.invalid` })
    }
    return out
  }

  private makeGroups(): Array<Group> {
    const out: Array<Group> = []
    let nextId = 11
    const created = (i: number) => this.genNow - 900 * DAY + i * DAY
    const tops: Array<Group> = []
    for (let g = 0; g < this.cfg.groups; g++) {
      const base = W.groupNames[g % W.groupNames.length] as string
      const path = g < W.groupNames.length ? base : `${base}-${Math.floor(g / W.groupNames.length)}`
      const name = path[0]!.toUpperCase() + path.slice(1)
      tops.push({ id: nextId++, name, path, fullPath: path, fullName: name, parentId: null, createdAt: created(g) })
    }
    out.push(...tops)
    const sub = (parent: Group, s: number): Group => {
      const path = W.subgroupNames[s % W.subgroupNames.length] as string
      const name = path[0]!.toUpperCase() + path.slice(1)
      return {
        id: nextId++,
        name,
        path,
        fullPath: `${parent.fullPath}/${path}`,
        fullName: `${parent.fullName} / ${name}`,
        parentId: parent.id,
        createdAt: parent.createdAt + DAY
      }
    }
    // Level 1 for every top group, then one level-2 group under each first subgroup (deep nesting).
    const level1: Array<Group> = []
    for (let s = 0; s < this.cfg.subgroupsPerGroup; s++) for (const t of tops) level1.push(sub(t, s))
    out.push(...level1)
    for (const first of level1.slice(0, tops.length)) out.push(sub(first, W.subgroupNames.length - 1))
    return out
  }

  private makeProjects(): Array<Project> {
    const out: Array<Project> = []
    const namespaces = this.groups
    for (let i = 0; i < this.cfg.projects; i++) {
      const ns = namespaces[i % namespaces.length] as Group
      const base = W.projectNames[i % W.projectNames.length] as string
      const path = i < W.projectNames.length ? base : `${base}-${Math.floor(i / W.projectNames.length)}`
      const id = projectIdOf(i)
      const r = Rng.of(this.cfg.seed, S.project, id)
      const groupIds: Array<number> = []
      for (let g: Group | undefined = ns; g; g = g.parentId === null ? undefined : this.groupById.get(g.parentId)) {
        groupIds.push(g.id)
      }
      const every = this.cfg.archivedEvery
      const flags: ProjectFlags = {
        archived: every > 0 && i % every === every - 1,
        ce: false,
        ciDisabled: false,
        repositoryDisabled: false,
        ...this.cfg.projectFlags[id]
      }
      out.push({
        id,
        index: i,
        name: path,
        path,
        pathWithNamespace: `${ns.fullPath}/${path}`,
        nameWithNamespace: `${ns.fullName} / ${path}`,
        namespace: ns,
        groupIds,
        sharedWithGroupIds: [],
        flags,
        approvalsRequired: r.int(0, 1),
        createdAt: ns.createdAt + r.int(2, 300) * DAY
      })
    }
    // Each top-level group sees the first project of the next top-level group's tree as shared.
    const tops = this.groups.filter((g) => g.parentId === null)
    if (tops.length > 1) {
      tops.forEach((g, k) => {
        const next = tops[(k + 1) % tops.length] as Group
        const p = out.find((x) => x.groupIds.includes(next.id))
        if (p) (p.sharedWithGroupIds as Array<number>).push(g.id)
      })
    }
    return out
  }

  // ---------------------------------------------------------------- merge requests

  mrCount(_project: Project): number {
    return this.cfg.mrsPerProject
  }

  private mrId(project: Project, iid: number): number {
    return 100_000 + project.index * this.cfg.mrsPerProject + iid
  }

  /** The first draws of an MR's stream: all that list filtering and sorting need. */
  private timeline(project: Project, iid: number): { r: Rng; createdAt: number; state: MrState; updatedAt: number } {
    const r = Rng.of(this.cfg.seed, S.mr, project.id, iid)
    const span = this.cfg.spanDays * DAY
    const createdAt = this.genNow - span + HOUR + Math.floor(r.next() * (span - HOUR - 10 * MINUTE))
    const roll = r.next()
    const state: MrState = roll < 0.6 ? "merged" : roll < 0.7 ? "closed" : "opened"
    const life = Math.max(10 * MINUTE, Math.floor(r.next() ** 2 * Math.min(this.genNow - createdAt, 6 * DAY)))
    return { r, createdAt, state, updatedAt: Math.min(this.genNow, createdAt + life) }
  }

  /** Generation before mutations: a pure function of (seed, project, iid). */
  private generateMr(project: Project, iid: number): Omit<Mr, "extraNotes"> {
    const cfg = this.cfg
    const { r, createdAt, state, updatedAt } = this.timeline(project, iid)
    const users = this.users
    const authorId = (r.pick(users) as User).id
    const reviewerIds: Array<number> = []
    const nReviewers = r.int(0, Math.min(2, users.length - 1))
    while (reviewerIds.length < nReviewers) {
      const id = (r.pick(users) as User).id
      if (id !== authorId && !reviewerIds.includes(id)) reviewerIds.push(id)
    }
    const pApprove = state === "merged" ? 0.8 : state === "opened" ? 0.4 : 0.2
    const approverIds = reviewerIds.filter(() => r.chance(pApprove))
    const changesRequestedBy = reviewerIds.length > 0 && r.chance(0.15) ? (reviewerIds[0] as number) : null
    const draft = state === "opened" && r.chance(0.3)
    const wasDraft = !draft && r.chance(0.25)
    const initialCommits = r.int(1, 3)
    const pushes: Array<number> = []
    for (let n = r.int(0, 3); n > 0; n--) pushes.push(r.int(1, 3))
    const systemNotes = reviewerIds.length + pushes.length + (changesRequestedBy === null ? 0 : 1) + (wasDraft ? 1 : 0) +
      approverIds.length
    const big = cfg.bigNotesMr !== false && cfg.bigNotesMr.projectId === project.id && cfg.bigNotesMr.iid === iid
    const userNotes = big ? Math.max(0, (cfg.bigNotesMr as { notes: number }).notes - systemNotes) : Math.floor(r.next() ** 1.5 * 9)
    const commitCount = initialCommits + pushes.reduce((a, b) => a + b, 0)

    const verb = r.pick(W.verbs)
    const topic = r.pick(W.topics)
    const title = `${verb} ${topic}`
    const labels: Array<string> = []
    for (const l of W.labels) if (r.chance(0.15)) labels.push(l)
    const mergedById = state === "merged" ? (r.pick(reviewerIds.length > 0 ? reviewerIds : [authorId]) as number) : null
    return {
      project,
      iid,
      id: this.mrId(project, iid),
      title: draft ? `Draft: ${title}` : title,
      description: `## What does this MR do?\n\n${verb} ${topic} in the ${project.name} service.\n\n` +
        `## How to test\n\n1. Run the test suite\n2. ${r.pick(W.comments)}\n\nCloses #${r.int(1, 500)}`,
      sourceBranch: `${authorId}-${topic.replace(/ /g, "-")}-${iid}`,
      labels,
      authorId,
      assigneeId: r.chance(0.7) ? authorId : null,
      reviewerIds,
      createdAt,
      updatedAt,
      state,
      draft,
      mergedAt: state === "merged" ? updatedAt : null,
      mergedById,
      closedAt: state === "closed" ? updatedAt : null,
      closedById: state === "closed" ? authorId : null,
      upvotes: r.int(0, 2),
      squash: r.chance(0.3),
      fileCount: r.int(1, 5),
      commitCount,
      headSha: sha(cfg.seed, S.commit, project.id, iid, commitCount - 1),
      baseSha: sha(cfg.seed, S.base, project.id, iid),
      mergeCommitSha: state === "merged" ? sha(cfg.seed, S.base, project.id, iid, 1) : null,
      userNotesCount: userNotes,
      base: {
        wasDraft,
        updatedAt,
        approverIds,
        changesRequestedBy,
        userNotes,
        initialCommits,
        pushes,
        noteCount: systemNotes + userNotes
      }
    }
  }

  mr(project: Project, iid: number): Mr | undefined {
    if (!Number.isInteger(iid) || iid < 1 || iid > this.mrCount(project)) return undefined
    const g = this.generateMr(project, iid)
    const o = this.overrides[project.index]?.get(iid)
    if (!o) return { ...g, extraNotes: [] }
    return {
      ...g,
      state: o.state,
      draft: o.draft,
      title: o.draft || !g.draft ? g.title : g.title.replace(/^Draft: /, ""),
      mergedAt: o.mergedAt,
      mergedById: o.mergedById,
      closedAt: o.closedAt,
      closedById: o.closedById,
      mergeCommitSha: o.state === "merged" ? sha(this.cfg.seed, S.base, project.id, iid, 1) : null,
      updatedAt: o.updatedAt,
      userNotesCount: g.userNotesCount + o.extraNotes.filter((n) => !n.system).length,
      extraNotes: o.extraNotes
    }
  }

  private index(project: Project): MrIndex {
    let ix = this.indexes[project.index]
    if (!ix) {
      const n = this.mrCount(project)
      ix = { created: new Float64Array(n), updated: new Float64Array(n), state: new Uint8Array(n), byCreated: undefined, byUpdated: undefined }
      const overrides = this.overrides[project.index]
      for (let iid = 1; iid <= n; iid++) {
        const t = this.timeline(project, iid)
        const o = overrides?.get(iid)
        ix.created[iid - 1] = t.createdAt
        ix.updated[iid - 1] = o ? o.updatedAt : t.updatedAt
        ix.state[iid - 1] = STATE_CODE[o ? o.state : t.state]
      }
      this.indexes[project.index] = ix
    }
    return ix
  }

  /** IIDs matching the list filters, in GitLab's order (ties broken by id like GitLab does). */
  listMrIids(
    project: Project,
    q: {
      readonly state: MrState | "all" | "locked"
      readonly orderBy: "created_at" | "updated_at"
      readonly sort: "asc" | "desc"
      readonly updatedAfter?: number
      readonly updatedBefore?: number
      readonly createdAfter?: number
      readonly createdBefore?: number
    }
  ): Array<number> {
    const ix = this.index(project)
    const key = q.orderBy === "updated_at" ? ix.updated : ix.created
    let order = q.orderBy === "updated_at" ? ix.byUpdated : ix.byCreated
    if (!order) {
      order = Int32Array.from({ length: key.length }, (_, i) => i)
      order.sort((a, b) => (key[a] as number) - (key[b] as number) || a - b)
      if (q.orderBy === "updated_at") ix.byUpdated = order
      else ix.byCreated = order
    }
    const want = q.state === "all" ? -1 : q.state === "locked" ? 99 : STATE_CODE[q.state]
    const out: Array<number> = []
    for (let k = 0; k < order.length; k++) {
      const i = order[q.sort === "asc" ? k : order.length - 1 - k] as number
      if (want !== -1 && ix.state[i] !== want) continue
      const u = ix.updated[i] as number
      const c = ix.created[i] as number
      if (q.updatedAfter !== undefined && u < q.updatedAfter) continue
      if (q.updatedBefore !== undefined && u > q.updatedBefore) continue
      if (q.createdAfter !== undefined && c < q.createdAfter) continue
      if (q.createdBefore !== undefined && c > q.createdBefore) continue
      out.push(i + 1)
    }
    return out
  }

  /** Notes, commits and diffs of an MR, each generated on first use and kept in a small LRU
   * (a client reads them one endpoint after the other). */
  detail(m: Mr): MrDetail {
    const key = `${m.project.id}:${m.iid}:${m.extraNotes.length}`
    const hit = this.detailCache.get(key)
    if (hit) return hit
    const self = this // getters below cannot be arrow functions
    let talk: ReturnType<World["generateNotes"]> | undefined
    let commits: ReadonlyArray<CommitRec> | undefined
    let diffs: ReadonlyArray<DiffRec> | undefined
    const d: MrDetail = {
      get notes() {
        return (talk ??= self.generateNotes(m)).notes
      },
      get approvals() {
        return (talk ??= self.generateNotes(m)).approvals
      },
      get commits() {
        return (commits ??= self.generateCommits(m, (talk ??= self.generateNotes(m)).pushTimes))
      },
      get diffs() {
        return (diffs ??= m.project.flags.repositoryDisabled ? [] : Array.from({ length: m.fileCount }, (_, f) => self.generateDiff(m.project, m.iid, f)))
      }
    }
    if (this.detailCache.size >= DETAIL_CACHE) this.detailCache.delete(this.detailCache.keys().next().value as string)
    this.detailCache.set(key, d)
    return d
  }

  private generateNotes(m: Mr): {
    notes: ReadonlyArray<NoteRec>
    approvals: ReadonlyArray<{ userId: number; at: number }>
    pushTimes: ReadonlyMap<number, number>
  } {
    const cfg = this.cfg
    const p = m.project
    const b = m.base
    const r = Rng.of(cfg.seed, S.notes, p.id, m.iid)
    const users = this.users
    const uname = (id: number) => this.user(id).username
    const commitSha = (k: number) => sha(cfg.seed, S.commit, p.id, m.iid, k)
    // GitLab writes links in system notes relative to the instance root
    const mrPath = `/${p.pathWithNamespace}/-/merge_requests/${m.iid}`

    // Events in a plausible order; times are then drawn sorted so the order is kept.
    type Ev = { authorId: number; body: string; system: boolean; approval?: number; push?: number; type?: NoteRec["type"] }
    const review: Array<Ev> = m.reviewerIds.map((id) => ({ authorId: m.authorId, body: `requested review from @${uname(id)}`, system: true }))
    const middle: Array<Ev> = []
    let k = b.initialCommits
    for (const n of b.pushes) {
      const items = Array.from({ length: n }, (_, j) => `<li>${commitSha(k + j).slice(0, 8)} - ${this.commitTitle(p, m.iid, k + j)}</li>`)
      middle.push({
        authorId: m.authorId,
        body: `added ${n} commit${n === 1 ? "" : "s"}\n\n<ul>${items.join("")}</ul>\n\n[Compare with previous version](${mrPath}/diffs?diff_id=${m.id * 10 + k}&start_sha=${commitSha(k - 1)})`,
        system: true,
        push: k
      })
      k += n
    }
    const participants = [m.authorId, ...m.reviewerIds]
    for (let i = 0; i < b.userNotes; i++) {
      const authorId = r.chance(0.8) ? (r.pick(participants) as number) : (r.pick(users) as User).id
      const type: NoteRec["type"] = r.chance(0.4) ? "DiffNote" : r.chance(0.5) ? "DiscussionNote" : null
      middle.push({ authorId, body: r.pick(W.comments), system: false, type })
    }
    for (let i = middle.length - 1; i > 0; i--) {
      const j = Math.floor(r.next() * (i + 1))
      ;[middle[i], middle[j]] = [middle[j] as Ev, middle[i] as Ev]
    }
    const late: Array<Ev> = []
    if (b.changesRequestedBy !== null) late.push({ authorId: b.changesRequestedBy, body: "requested changes", system: true })
    if (b.wasDraft) late.push({ authorId: m.authorId, body: "marked this merge request as **ready**", system: true })
    for (const id of b.approverIds) late.push({ authorId: id, body: "approved this merge request", system: true, approval: id })
    const events = [...review, ...middle, ...late]

    const times = events.map(() => m.createdAt + Math.floor(r.next() * (b.updatedAt - m.createdAt))).sort((x, y) => x - y)
    if (times.length > 0) times[times.length - 1] = b.updatedAt

    const notes: Array<NoteRec> = []
    const approvals: Array<{ userId: number; at: number }> = []
    const pushTimes = new Map<number, number>()
    events.forEach((e, i) => {
      const at = times[i] as number
      notes.push({
        id: m.id * 4096 + i,
        authorId: e.authorId,
        body: e.body,
        system: e.system,
        type: e.type ?? null,
        createdAt: at,
        updatedAt: at,
        resolvable: e.type === "DiffNote" || e.type === "DiscussionNote"
      })
      if (e.approval !== undefined) approvals.push({ userId: e.approval, at })
      if (e.push !== undefined) pushTimes.set(e.push, at)
    })
    m.extraNotes.forEach((e, i) => {
      notes.push({
        id: m.id * 4096 + b.noteCount + i,
        authorId: e.authorId,
        body: e.body,
        system: e.system,
        type: null,
        createdAt: e.at,
        updatedAt: e.at,
        resolvable: false
      })
      if (e.approval) approvals.push({ userId: e.authorId, at: e.at })
    })

    return { notes, approvals, pushTimes }
  }

  private generateCommits(m: Mr, pushTimes: ReadonlyMap<number, number>): Array<CommitRec> {
    if (m.project.flags.repositoryDisabled) return []
    const r = Rng.of(this.cfg.seed, S.commit, m.project.id, m.iid, -1)
    const commitSha = (k: number) => sha(this.cfg.seed, S.commit, m.project.id, m.iid, k)
    const author = this.user(m.authorId)
    const commits: Array<CommitRec> = []
    let committedAt = m.createdAt - r.int(2, 60) * MINUTE
    for (let c = 0; c < m.commitCount; c++) {
      committedAt = pushTimes.get(c) ?? (c < m.base.initialCommits ? committedAt + r.int(0, 1) * MINUTE : committedAt)
      const title = this.commitTitle(m.project, m.iid, c)
      commits.push({
        sha: commitSha(c),
        title,
        message: `${title}\n\n${r.pick(W.comments)}\n\nSigned-off-by: ${author.name} <${author.email}>\n`,
        authorId: m.authorId,
        authoredAt: committedAt - r.int(0, 30) * MINUTE,
        committedAt,
        parentSha: c === 0 ? m.baseSha : commitSha(c - 1)
      })
    }
    return commits
  }

  private commitTitle(p: Project, iid: number, k: number): string {
    const r = Rng.of(this.cfg.seed, S.commit, p.id, iid, k, 1)
    return `${r.pick(W.verbs)} ${r.pick(W.topics)}`
  }

  private generateDiff(p: Project, iid: number, f: number): DiffRec {
    const r = Rng.of(this.cfg.seed, S.diff, p.id, iid, f)
    const path = `${r.pick(W.dirs)}/${r.pick(W.codeWords)}_${r.pick(W.codeWords)}${f}${r.pick(W.exts)}`
    const roll = r.next()
    const line = () => `${r.pick(W.codeWords)} ${r.pick(W.codeWords)} = ${r.pick(W.codeWords)}(${r.pick(W.codeWords)})`
    const block = (prefix: string, n: number) => Array.from({ length: n }, () => `${prefix}${line()}\n`).join("")
    if (roll < 0.2) {
      const n = r.int(3, 40)
      return { oldPath: path, newPath: path, newFile: true, renamedFile: false, deletedFile: false, diff: `@@ -0,0 +1,${n} @@\n${block("+", n)}` }
    }
    if (roll < 0.25) {
      const n = r.int(3, 30)
      return { oldPath: path, newPath: path, newFile: false, renamedFile: false, deletedFile: true, diff: `@@ -1,${n} +0,0 @@\n${block("-", n)}` }
    }
    if (roll < 0.3) {
      const to = path.replace(/\/([^/]+)$/, "/renamed_$1")
      return { oldPath: path, newPath: to, newFile: false, renamedFile: true, deletedFile: false, diff: "" }
    }
    let diff = ""
    let oldLine = r.int(1, 40)
    let newLine = oldLine
    for (let h = r.int(1, 3); h > 0; h--) {
      const del = r.int(0, 6)
      const add = r.int(del === 0 ? 1 : 0, 10)
      const ctx = 3
      diff += `@@ -${oldLine},${ctx * 2 + del} +${newLine},${ctx * 2 + add} @@ ${r.pick(W.codeWords)}\n`
      diff += block(" ", ctx) + block("-", del) + block("+", add) + block(" ", ctx)
      const gap = r.int(5, 60)
      oldLine += ctx * 2 + del + gap
      newLine += ctx * 2 + add + gap
    }
    return { oldPath: path, newPath: path, newFile: false, renamedFile: false, deletedFile: false, diff }
  }

  // ---------------------------------------------------------------- pipelines & deployments

  pipelines(project: Project): Array<PipelineRec> {
    if (project.flags.ciDisabled) return []
    let list = this.pipelineCache[project.index]
    if (!list) {
      list = []
      const n = this.cfg.pipelinesPerProject
      const span = this.cfg.spanDays * DAY
      for (let i = 0; i < n; i++) {
        const r = Rng.of(this.cfg.seed, S.pipeline, project.id, i)
        // the last two are still in flight: one running, one pending
        const inFlight = n >= 3 && i >= n - 2
        const createdAt = inFlight
          ? this.genNow - (i === n - 1 ? 1 : 5) * MINUTE
          : this.genNow - span + HOUR + Math.floor(((i + r.next() * 0.8) / n) * (span - 2 * HOUR))
        const status: PipelineStatus = inFlight
          ? (i === n - 1 ? "pending" : "running")
          : r.pick(["success", "success", "success", "success", "success", "success", "success", "failed", "failed", "canceled"] as const)
        const startedAt = status === "pending" ? null : createdAt + r.int(5, 120) * 1000
        const finishedAt = startedAt === null || status === "running" ? null : startedAt + r.int(120, 1800) * 1000
        const roll = r.next()
        list.push({
          id: 5_000_000 + project.index * 100_000 + i + 1,
          iid: i + 1,
          projectId: project.id,
          sha: sha(this.cfg.seed, S.pipeline, project.id, i),
          beforeSha: sha(this.cfg.seed, S.pipeline, project.id, i, 1),
          ref: roll < 0.3 ? `refs/merge-requests/${r.int(1, Math.max(1, this.cfg.mrsPerProject))}/head` : "main",
          source: roll < 0.3 ? "merge_request_event" : roll < 0.4 ? "schedule" : "push",
          userId: (r.pick(this.users) as User).id,
          createdAt,
          status,
          startedAt,
          finishedAt,
          updatedAt: finishedAt ?? startedAt ?? createdAt
        })
      }
      this.pipelineCache[project.index] = list
    }
    return list
  }

  deployments(project: Project): Array<DeploymentRec> {
    if (project.flags.ciDisabled) return []
    let list = this.deploymentCache[project.index]
    if (!list) {
      list = []
      const pipelines = this.pipelines(project)
      const n = this.cfg.deploymentsPerProject
      const span = this.cfg.spanDays * DAY
      for (let i = 0; i < n; i++) {
        const r = Rng.of(this.cfg.seed, S.deployment, project.id, i)
        const running = n >= 2 && i === n - 1
        const createdAt = running
          ? this.genNow - 3 * MINUTE
          : this.genNow - span + HOUR + Math.floor(((i + r.next() * 0.8) / n) * (span - 2 * HOUR))
        const status: DeploymentStatus = running
          ? "running"
          : r.pick(["success", "success", "success", "success", "success", "success", "success", "success", "failed", "canceled"] as const)
        const startedAt = createdAt + r.int(1, 30) * 1000
        const finishedAt = running ? null : startedAt + r.int(60, 600) * 1000
        const env = i % 3 === 2 ? 0 : 1 // production every third deploy, staging otherwise
        const pipeline = pipelines[Math.floor((i * pipelines.length) / Math.max(1, n))]
        list.push({
          id: 7_000_000 + project.index * 100_000 + i + 1,
          iid: i + 1,
          projectId: project.id,
          environment: W.environments[env] as string,
          environmentId: 300 + project.index * 10 + env,
          ref: "main",
          sha: pipeline?.sha ?? sha(this.cfg.seed, S.deployment, project.id, i),
          userId: (r.pick(this.users) as User).id,
          pipelineId: pipeline?.id ?? 0,
          jobId: 9_000_000 + project.index * 100_000 + i + 1,
          createdAt,
          status,
          startedAt,
          finishedAt,
          updatedAt: finishedAt ?? createdAt
        })
      }
      this.deploymentCache[project.index] = list
    }
    return list
  }

  // ---------------------------------------------------------------- mutations

  private override(m: Mr): MrOverride {
    let perProject = this.overrides[m.project.index]
    if (!perProject) this.overrides[m.project.index] = perProject = new Map()
    let o = perProject.get(m.iid)
    if (!o) {
      o = {
        state: m.state,
        draft: m.draft,
        mergedAt: m.mergedAt,
        mergedById: m.mergedById,
        closedAt: m.closedAt,
        closedById: m.closedById,
        updatedAt: m.updatedAt,
        extraNotes: []
      }
      perProject.set(m.iid, o)
    }
    return o
  }

  private reindex(m: Mr, o: MrOverride): void {
    const ix = this.indexes[m.project.index]
    if (!ix) return // built lazily later from the overrides
    ix.updated[m.iid - 1] = o.updatedAt
    ix.state[m.iid - 1] = STATE_CODE[o.state]
    ix.byUpdated = undefined
  }

  /** Apply one explicit change to an MR at `now`; every change adds a note and bumps updated_at. */
  touchMergeRequest(
    projectId: number,
    iid: number,
    change: { readonly note?: string; readonly approveBy?: number; readonly merge?: boolean; readonly close?: boolean } = {}
  ): void {
    const m = this.mr(this.projectOrThrow(projectId), iid)
    if (!m) throw new Error(`SimGitlab: no MR !${iid} in project ${projectId}`)
    const o = this.override(m)
    const at = this.now
    const r = Rng.of(this.cfg.seed, S.mutate, ++this.mutations)
    const commenter = (r.pick(this.users) as User).id
    o.extraNotes.push({ authorId: commenter, body: change.note ?? r.pick(W.comments), system: false, at, approval: false })
    if (change.approveBy !== undefined) {
      o.extraNotes.push({ authorId: change.approveBy, body: "approved this merge request", system: true, at, approval: true })
    }
    if ((change.merge || change.close) && o.state === "opened") {
      if (o.draft && change.merge) {
        o.draft = false
        o.extraNotes.push({ authorId: m.authorId, body: "marked this merge request as **ready**", system: true, at, approval: false })
      }
      if (change.merge) {
        o.state = "merged"
        o.mergedAt = at
        o.mergedById = change.approveBy ?? commenter
      } else {
        o.state = "closed"
        o.closedAt = at
        o.closedById = commenter
      }
    }
    o.updatedAt = at
    this.reindex(m, o)
  }

  /** Touch `amount` MRs (a count, or a fraction of the MRs if < 1) chosen deterministically. */
  touchMergeRequests(target: number | "all", amount: number): Array<{ readonly projectId: number; readonly iid: number }> {
    const projects = target === "all" ? this.projects : [this.projectOrThrow(target)]
    const total = projects.length * this.cfg.mrsPerProject
    const count = Math.min(total, amount < 1 ? Math.round(total * amount) : Math.floor(amount))
    const r = Rng.of(this.cfg.seed, S.mutate, ++this.mutations, 1)
    const chosen = new Set<number>()
    if (count * 2 > total) {
      const all = Array.from({ length: total }, (_, i) => i)
      for (let i = 0; i < count; i++) {
        const j = i + Math.floor(r.next() * (total - i))
        ;[all[i], all[j]] = [all[j] as number, all[i] as number]
        chosen.add(all[i] as number)
      }
    } else while (chosen.size < count) chosen.add(Math.floor(r.next() * total))

    const out: Array<{ projectId: number; iid: number }> = []
    for (const k of [...chosen].sort((a, b) => a - b)) {
      const p = projects[Math.floor(k / this.cfg.mrsPerProject)] as Project
      const iid = (k % this.cfg.mrsPerProject) + 1
      const m = this.mr(p, iid) as Mr
      const approver = m.reviewerIds.find((id) => !m.base.approverIds.includes(id)) ??
        (this.users.find((u) => u.id !== m.authorId) as User).id
      const opened = m.state === "opened"
      const approve = opened && r.chance(0.3)
      const merge = opened && r.chance(0.25)
      this.touchMergeRequest(p.id, iid, approve ? { approveBy: approver, merge } : { merge })
      out.push({ projectId: p.id, iid })
    }
    return out
  }

  /** Append `n` pipelines created just before `now`; `success` ones finish at `now`. */
  addPipelines(projectId: number, n: number, status: PipelineStatus = "success"): Array<PipelineRec> {
    const p = this.projectOrThrow(projectId)
    const list = this.pipelines(p)
    const added: Array<PipelineRec> = []
    for (let k = 0; k < n; k++) {
      const i = list.length
      const r = Rng.of(this.cfg.seed, S.pipeline, p.id, i)
      const finished = status !== "running" && status !== "pending" && status !== "created"
      const createdAt = this.now - (finished ? r.int(3, 20) * MINUTE : MINUTE)
      const startedAt = status === "pending" || status === "created" ? null : createdAt + r.int(5, 60) * 1000
      const rec: PipelineRec = {
        id: 5_000_000 + p.index * 100_000 + i + 1,
        iid: i + 1,
        projectId: p.id,
        sha: sha(this.cfg.seed, S.pipeline, p.id, i),
        beforeSha: sha(this.cfg.seed, S.pipeline, p.id, i, 1),
        ref: "main",
        source: "push",
        userId: (r.pick(this.users) as User).id,
        createdAt,
        status,
        startedAt,
        finishedAt: finished ? this.now : null,
        updatedAt: finished ? this.now : startedAt ?? createdAt
      }
      list.push(rec)
      added.push(rec)
    }
    return added
  }

  /** Running/pending pipelines and running deployments succeed at `now`. */
  finishRunning(): { readonly pipelines: number; readonly deployments: number } {
    let pipelines = 0
    let deployments = 0
    for (const p of this.projects) {
      for (const x of this.pipelines(p)) {
        if (x.status === "running" || x.status === "pending" || x.status === "created") {
          x.startedAt ??= this.now
          x.status = "success"
          x.finishedAt = this.now
          x.updatedAt = this.now
          pipelines++
        }
      }
      for (const d of this.deployments(p)) {
        if (d.status === "running" || d.status === "created") {
          d.startedAt ??= this.now
          d.status = "success"
          d.finishedAt = this.now
          d.updatedAt = this.now
          deployments++
        }
      }
    }
    return { pipelines, deployments }
  }
}

/** Counts `+`/`-` lines of a unified diff (excluding headers), as a client would. */
export const diffLineCounts = (diff: string): { readonly additions: number; readonly deletions: number } => {
  let additions = 0
  let deletions = 0
  for (const line of diff.split("\n")) {
    if (line.startsWith("+") && !line.startsWith("+++")) additions++
    else if (line.startsWith("-") && !line.startsWith("---")) deletions++
  }
  return { additions, deletions }
}
