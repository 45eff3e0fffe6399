/**
 * bench/walker: the plain walker a user would otherwise write on `@gitbeaker/rest` — list the
 * groups' projects, list every project's merge requests, then fetch the notes, approvals and
 * commits of every MR, all with gitbeaker's default pagination (`.all()` follows the Link header;
 * no per_page, so GitLab's default of 20 per page).
 *
 * Fairness: the walker gets the same request concurrency as the agent (a pool of `concurrency`
 * workers, each running one gitbeaker call — one request at a time — so at most `concurrency`
 * requests are in flight), and gitbeaker's built-in client-side rate limiter (3000 requests/min
 * by default) is lifted like the agent's request budget. It skips archived projects like the
 * agent does.
 *
 * `full: true` also fetches what the agent fetches beyond that (the MR's diffs for diff stats,
 * pipelines + each pipeline's detail, deployments): the same data as the agent, to compare
 * request counts like for like.
 */
import { Gitlab } from "@gitbeaker/rest"

export interface WalkerOptions {
  readonly url: string
  readonly token: string
  readonly groups: ReadonlyArray<string>
  readonly concurrency: number
  readonly full?: boolean
}

export interface WalkerResult {
  readonly wallMs: number
  readonly projects: number
  readonly mergeRequests: number
  readonly notes: number
  readonly approvals: number
  readonly commits: number
  readonly diffs: number
  readonly pipelines: number
  readonly deployments: number
  readonly errors: number
}

/** At most `size` tasks running; tasks may add more tasks. Resolves when the queue drains. */
class Pool {
  private readonly queue: Array<() => Promise<void>> = []
  private running = 0
  private failures = 0
  private resolveIdle: (() => void) | undefined
  constructor(private readonly size: number) {}
  push(task: () => Promise<void>) {
    this.queue.push(task)
    this.pump()
  }
  private pump() {
    while (this.running < this.size && this.queue.length > 0) {
      const task = this.queue.shift()!
      this.running++
      task().catch(() => {
        this.failures++
      }).finally(() => {
        this.running--
        this.pump()
        if (this.running === 0 && this.queue.length === 0) this.resolveIdle?.()
      })
    }
  }
  idle(): Promise<number> {
    return this.running === 0 && this.queue.length === 0
      ? Promise.resolve(this.failures)
      : new Promise((resolve) => (this.resolveIdle = () => resolve(this.failures)))
  }
}

export const walk = async (o: WalkerOptions): Promise<WalkerResult> => {
  const api = new Gitlab({ host: o.url, token: o.token, rateLimits: { "**": 1_000_000_000 } })
  const counts = { projects: 0, mergeRequests: 0, notes: 0, approvals: 0, commits: 0, diffs: 0, pipelines: 0, deployments: 0 }
  const pool = new Pool(o.concurrency)
  const seen = new Set<number>()
  const start = performance.now()

  const project = (projectId: number) => {
    pool.push(async () => {
      const mrs = await api.MergeRequests.all({ projectId })
      counts.mergeRequests += mrs.length
      for (const mr of mrs) {
        const iid = mr.iid
        pool.push(async () => {
          // (await first: `x += await f()` would read x before the await and lose concurrent updates)
          const notes = await api.MergeRequestNotes.all(projectId, iid)
          counts.notes += notes.length
        })
        pool.push(async () => {
          const a = await api.MergeRequestApprovals.showConfiguration(projectId, { mergerequestIId: iid })
          counts.approvals += ((a as { approved_by?: ReadonlyArray<unknown> }).approved_by ?? []).length
        })
        pool.push(async () => {
          const commits = await api.MergeRequests.allCommits(projectId, iid)
          counts.commits += commits.length
        })
        if (o.full) {
          pool.push(async () => {
            const diffs = await api.MergeRequests.allDiffs(projectId, iid)
            counts.diffs += diffs.length
          })
        }
      }
    })
    if (o.full) {
      pool.push(async () => {
        const pipelines = await api.Pipelines.all(projectId)
        for (const p of pipelines) {
          pool.push(async () => {
            await api.Pipelines.show(projectId, p.id)
            counts.pipelines++
          })
        }
      })
      pool.push(async () => {
        const deployments = await api.Deployments.all(projectId)
        counts.deployments += deployments.length
      })
    }
  }

  for (const group of o.groups) {
    pool.push(async () => {
      const projects = await api.Groups.allProjects(group, { includeSubgroups: true, archived: false })
      for (const p of projects) {
        // Listing a group also lists projects shared with it, so de-duplicate (the agent does too).
        if (seen.has(p.id) || p.archived) continue
        seen.add(p.id)
        counts.projects++
        project(p.id)
      }
    })
  }
  const errors = await pool.idle()
  return { wallMs: performance.now() - start, ...counts, errors }
}
