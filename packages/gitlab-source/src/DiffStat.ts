/**
 * MR diff statistics counted by the agent from the diffs (all pages): additions, deletions, files
 * changed. The diff text itself is never staged. One record per MR (key = iid).
 */
import { Schema } from "effect"
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

export const fetchAll = (client: GitlabClient.GitlabClient, scope: Entity.ProjectScope, iid: number) =>
  Entity.collect(client, `/projects/${scope.projectId}/merge_requests/${iid}/diffs`, {}, Diff, { scope, kind })

export interface Stat {
  readonly additions: number
  readonly deletions: number
  readonly files_changed: number
  /** Files whose diff GitLab withheld (too large / collapsed): their lines are not counted. */
  readonly files_without_diff: number
}

/** Counts +/- lines of unified diff hunks (GitLab's diffs start at the first @@ hunk: no file headers). */
export const count = (diffs: ReadonlyArray<Diff>): Stat => {
  let additions = 0
  let deletions = 0
  let withheld = 0
  for (const d of diffs) {
    const text = d.diff ?? ""
    if (text === "" && (d.too_large === true || d.collapsed === true)) withheld++
    let start = 0
    while (start < text.length) {
      let end = text.indexOf("\n", start)
      if (end === -1) end = text.length
      const c = text.charCodeAt(start)
      if (c === 43 /* + */) additions++
      else if (c === 45 /* - */) deletions++
      start = end + 1
    }
  }
  return { additions, deletions, files_changed: diffs.length, files_without_diff: withheld }
}

export const toRecord = (scope: Entity.ProjectScope, iid: number, mrUpdatedAt: string, stat: Stat) =>
  Entity.record(scope, kind, String(iid), mrUpdatedAt, { merge_request_iid: iid, ...stat })
