/**
 * The expected delivery, computed independently of the agent: the minimised form of every entity
 * the simulated GitLab holds, written from the field lists of the issue and the sim's ground truth.
 *
 * Where the agent's choices are arbitrary they are mirrored here explicitly (read once from
 * packages/gitlab-source/src/*.ts):
 * - keys: project `id`; merge_request, approval and diff_stat `iid`; note `${iid}:${note id}`;
 *   commit `${iid}:${sha}`; pipeline and deployment `id`;
 * - updated_at: project `updated_at ?? created_at`; note its own `updated_at`; approval, commit and
 *   diff_stat the MR's `updated_at` (children without a time of their own follow their MR);
 * - privacy "hash": `sha256:` + hex sha256 of the trimmed, lower-cased value;
 * - times normalised to UTC `toISOString()`; absent optional fields become null.
 */
import { createHash } from "node:crypto"
import { SimGitlab } from "@mhq-sync/testkit"

export interface WireLike {
  readonly kind: string
  readonly instance: string
  readonly project_id: number
  readonly project_path: string
  readonly key: string
  readonly updated_at: string
  readonly data: unknown
}

export type Privacy = "keep" | "hash" | "drop"

export interface Options {
  readonly instance: string
  readonly emails: Privacy
  readonly names: Privacy
}

const iso = (s: string | null | undefined): string | null => (s === null || s === undefined ? null : new Date(s).toISOString())
const isoOf = (s: string): string => new Date(s).toISOString()

const privacy = (mode: Privacy, value: string | null | undefined): string | null => {
  if (value === null || value === undefined) return null
  if (mode === "keep") return value
  if (mode === "drop") return null
  return `sha256:${createHash("sha256").update(value.trim().toLowerCase()).digest("hex")}`
}

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [k: string]: Json }

/** JSON with sorted keys: equal data, equal text. */
export const canonical = (value: unknown): string =>
  JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v)

/** Identity of a record: (kind, instance, project, key). */
export const identityOf = (r: Pick<WireLike, "kind" | "instance" | "project_id" | "key">): string => `${r.kind}|${r.instance}|${r.project_id}|${r.key}`
/** Identity + updated_at (as an instant). */
export const versionOf = (r: Pick<WireLike, "kind" | "instance" | "project_id" | "key" | "updated_at">): string =>
  `${identityOf(r)}@${new Date(r.updated_at).toISOString()}`

export interface Exclusions {
  /** Whole MRs (the MR and all its children): "projectId:iid". */
  readonly mergeRequests?: ReadonlyArray<string>
  /** Single records by identity (kind|instance|project|key). */
  readonly identities?: ReadonlyArray<string>
}

/** Every record the agent should deliver for the sim's current state, by version. */
export const expectedRecords = (gitlab: SimGitlab.Handle, options: Options, exclude: Exclusions = {}): Map<string, WireLike> => {
  const out = new Map<string, WireLike>()
  const skipMr = new Set(exclude.mergeRequests ?? [])
  const skipIdentity = new Set(exclude.identities ?? [])
  const instance = options.instance
  for (const info of gitlab.projects()) {
    if (info.flags.archived) continue
    const p = gitlab.project(info.id)
    const add = (kind: string, key: string, updatedAt: string, data: { readonly [k: string]: Json }) => {
      const r: WireLike = { kind, instance, project_id: p.id, project_path: p.path_with_namespace, key, updated_at: isoOf(updatedAt), data }
      if (skipIdentity.has(identityOf(r))) return
      out.set(versionOf(r), r)
    }
    const project = p as SimGitlab.GlProject & { name: string; path: string; web_url: string; default_branch: string | null; created_at: string; updated_at?: string }
    add("project", String(p.id), project.updated_at ?? project.created_at, {
      id: p.id,
      name: project.name,
      path: project.path,
      path_with_namespace: p.path_with_namespace,
      namespace_full_path: p.namespace.full_path,
      default_branch: project.default_branch ?? null,
      web_url: project.web_url,
      archived: p.archived
    })

    for (const mr of gitlab.mergeRequests(p.id)) {
      if (skipMr.has(`${p.id}:${mr.iid}`)) continue
      const m = mr as SimGitlab.GlMergeRequest & {
        source_branch: string
        target_branch: string
        merge_commit_sha: string | null
        squash_commit_sha: string | null
        merge_user: SimGitlab.GlUser | null
        merged_by: SimGitlab.GlUser | null
      }
      const mrAt = isoOf(m.updated_at)
      add("merge_request", String(m.iid), m.updated_at, {
        id: m.id,
        iid: m.iid,
        title: m.title,
        state: m.state,
        draft: m.draft,
        author_username: m.author.username,
        source_branch: m.source_branch,
        target_branch: m.target_branch,
        created_at: isoOf(m.created_at),
        updated_at: mrAt,
        merged_at: iso(m.merged_at),
        closed_at: iso(m.closed_at),
        merge_commit_sha: m.merge_commit_sha ?? null,
        squash_commit_sha: m.squash_commit_sha ?? null,
        sha: m.sha ?? null,
        reviewer_usernames: m.reviewers.map((r) => r.username),
        merge_user_username: (m.merge_user ?? m.merged_by)?.username ?? null,
        web_url: m.web_url
      })

      for (const n of gitlab.notes(p.id, m.iid)) {
        const note = n as SimGitlab.GlNote & { type: string | null; resolvable?: boolean; resolved?: boolean }
        // Only system notes ("approved this merge request" …) keep their body; comments never do.
        add("note", `${m.iid}:${n.id}`, n.updated_at ?? m.updated_at, {
          id: n.id,
          merge_request_iid: m.iid,
          type: note.type ?? null,
          system: n.system,
          body: n.system ? n.body : null,
          created_at: isoOf(n.created_at),
          updated_at: iso(n.updated_at),
          author_username: n.author.username,
          resolvable: note.resolvable ?? false,
          resolved: note.resolved ?? null
        })
      }

      if (info.flags.ce === false) {
        const a = gitlab.approvals(p.id, m.iid)
        add("approval", String(m.iid), m.updated_at, {
          merge_request_iid: m.iid,
          approved: a.approved,
          approvals_required: a.approvals_required,
          approvals_left: a.approvals_left,
          approved_by: a.approved_by.map((x) => ({ username: x.user.username, approved_at: iso((x as { approved_at?: string | null }).approved_at) }))
        })
      }

      if (!info.flags.repositoryDisabled) {
        for (const c of gitlab.commits(p.id, m.iid)) {
          add("commit", `${m.iid}:${c.id}`, m.updated_at, {
            sha: c.id,
            merge_request_iid: m.iid,
            authored_at: iso(c.authored_date),
            committed_at: iso(c.committed_date),
            created_at: isoOf(c.created_at),
            author_name: privacy(options.names, c.author_name),
            author_email: privacy(options.emails, c.author_email)
          })
        }
        const diffs = gitlab.diffs(p.id, m.iid)
        let additions = 0
        let deletions = 0
        for (const d of diffs) {
          const c = SimGitlab.diffLineCounts(d.diff)
          additions += c.additions
          deletions += c.deletions
        }
        add("diff_stat", String(m.iid), m.updated_at, {
          merge_request_iid: m.iid,
          additions,
          deletions,
          files_changed: diffs.length,
          files_without_diff: 0
        })
      }
    }

    if (!info.flags.ciDisabled) {
      for (const x of gitlab.pipelines(p.id)) {
        add("pipeline", String(x.id), x.updated_at, {
          id: x.id,
          iid: x.iid ?? null,
          status: x.status,
          source: (x["source"] as string | null | undefined) ?? null,
          ref: x.ref,
          sha: x.sha,
          created_at: isoOf(x.created_at),
          updated_at: isoOf(x.updated_at),
          started_at: iso(x.started_at),
          finished_at: iso(x.finished_at),
          duration: x.duration ?? null,
          web_url: (x["web_url"] as string | undefined) ?? null
        })
      }
      for (const d of gitlab.deployments(p.id)) {
        const deployable = d.deployable as { id: number; status: string | null; finished_at: string | null }
        add("deployment", String(d.id), d.updated_at, {
          id: d.id,
          iid: d.iid ?? null,
          status: d.status,
          environment: d.environment.name,
          ref: (d["ref"] as string | null) ?? null,
          sha: (d["sha"] as string | null) ?? null,
          created_at: isoOf(d.created_at),
          updated_at: isoOf(d.updated_at),
          finished_at: iso((d["finished_at"] as string | null | undefined) ?? deployable.finished_at),
          deployable_id: deployable.id,
          deployable_status: deployable.status ?? null
        })
      }
    }
  }
  return out
}

/** Counts by kind, for messages. */
export const countByKind = (records: Iterable<WireLike>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const r of records) out[r.kind] = (out[r.kind] ?? 0) + 1
  return Object.fromEntries(Object.entries(out).sort())
}
