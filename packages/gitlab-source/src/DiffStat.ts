/**
 * MR diff statistics: additions, deletions, files changed. One record per MR (key = iid).
 * Normally GitLab's own `diffStatsSummary` (GraphQL, counted from git, many MRs per request: see
 * `MergeRequestDetails`); where that is not available, counted by the agent from the REST diffs
 * (all pages). The diff text itself is never staged, and never kept past the page it came in:
 * pages are folded into counters one by one.
 */
import type { Staging } from "@mhq-sync/core"
import { Effect, Schema, Stream } from "effect"
import * as Entity from "./Entity.ts"
import type * as GitlabClient from "./GitlabClient.ts"

export const kind = "diff_stat"

export const Diff = Schema.Struct({
  diff: Schema.optionalKey(Schema.NullOr(Schema.String)),
  new_path: Schema.optionalKey(Schema.NullOr(Schema.String)),
  too_large: Schema.optionalKey(Schema.NullOr(Schema.Boolean)),
  collapsed: Schema.optionalKey(Schema.NullOr(Schema.Boolean))
})
export type Diff = typeof Diff.Type

export interface Stat {
  readonly additions: number
  readonly deletions: number
  readonly files_changed: number
  /** Files whose diff GitLab withheld (too large / collapsed): their lines are not counted. */
  readonly files_without_diff: number
}

/** Running totals; `add` folds diffs into it so the diffs can be dropped right away. */
export interface Counter {
  additions: number
  deletions: number
  files_changed: number
  files_without_diff: number
}

export const emptyCounter = (): Counter => ({ additions: 0, deletions: 0, files_changed: 0, files_without_diff: 0 })

/** Adds the +/- lines of unified diff hunks (GitLab's diffs start at the first @@ hunk: no file headers). */
export const add = (acc: Counter, diffs: ReadonlyArray<Diff>): Counter => {
  for (const d of diffs) {
    const text = d.diff ?? ""
    acc.files_changed++
    if (text === "" && (d.too_large === true || d.collapsed === true)) acc.files_without_diff++
    let start = 0
    while (start < text.length) {
      let end = text.indexOf("\n", start)
      if (end === -1) end = text.length
      const c = text.charCodeAt(start)
      if (c === 43 /* + */) acc.additions++
      else if (c === 45 /* - */) acc.deletions++
      start = end + 1
    }
  }
  return acc
}

/** GraphQL `MergeRequest.diffStatsSummary`: GitLab counts every file from git, none is withheld. */
export const Summary = Schema.Struct({ additions: Schema.Int, deletions: Schema.Int, fileCount: Schema.Int })
export type Summary = typeof Summary.Type

export const fromSummary = (s: Summary): Stat => ({ additions: s.additions, deletions: s.deletions, files_changed: s.fileCount, files_without_diff: 0 })

export const count = (diffs: ReadonlyArray<Diff>): Stat => ({ ...add(emptyCounter(), diffs) })

/**
 * All diff pages of an MR folded into one `Stat` (the only item of the result): each page is
 * decoded, counted and dropped before the next one is read.
 */
export const fetchStat = (
  client: GitlabClient.GitlabClient,
  scope: Entity.ProjectScope,
  iid: number
): Effect.Effect<Entity.Decoded<Stat>, GitlabClient.GitlabError> =>
  Stream.runFold(
    client.paginate(`/projects/${scope.projectId}/merge_requests/${iid}/diffs`, {}),
    () => ({ counter: emptyCounter(), quarantine: [] as Array<Staging.QuarantineEntry> }),
    (acc, page) => {
      const d = Entity.decodeItems(Diff, page.items, { scope, kind, origin: page.origin })
      add(acc.counter, d.items)
      acc.quarantine.push(...d.quarantine)
      return acc
    }
  ).pipe(Effect.map(({ counter, quarantine }) => ({ items: [{ ...counter }], quarantine })))

export const toRecord = (scope: Entity.ProjectScope, iid: number, mrUpdatedAt: string, stat: Stat) =>
  Entity.record(scope, kind, String(iid), mrUpdatedAt, { merge_request_iid: iid, ...stat })
