/**
 * Merge requests: the list (by `updated_after`, ordered by `updated_at`) and the minimised
 * "merge_request" record. Keyed by iid; children use `${iid}:...` keys.
 */
import { Schema, type Stream } from "effect"
import * as Entity from "./Entity.ts"
import type * as GitlabClient from "./GitlabClient.ts"

export const kind = "merge_request"

export const MergeRequest = Schema.Struct({
  id: Schema.Int,
  iid: Schema.Int,
  title: Schema.String,
  state: Schema.String,
  /** `draft` since GitLab 13.2; `work_in_progress` before (removed in 16.0). */
  draft: Schema.optionalKey(Schema.Boolean),
  work_in_progress: Schema.optionalKey(Schema.Boolean),
  author: Schema.NullOr(Entity.UserRef),
  source_branch: Schema.String,
  target_branch: Schema.String,
  created_at: Entity.Time,
  updated_at: Entity.Time,
  merged_at: Schema.optionalKey(Schema.NullOr(Entity.Time)),
  closed_at: Schema.optionalKey(Schema.NullOr(Entity.Time)),
  merge_commit_sha: Schema.optionalKey(Schema.NullOr(Schema.String)),
  squash_commit_sha: Schema.optionalKey(Schema.NullOr(Schema.String)),
  sha: Schema.optionalKey(Schema.NullOr(Schema.String)),
  reviewers: Schema.optionalKey(Schema.NullOr(Schema.Array(Entity.UserRef))),
  merge_user: Schema.optionalKey(Schema.NullOr(Entity.UserRef)),
  merged_by: Schema.optionalKey(Schema.NullOr(Entity.UserRef)),
  web_url: Schema.String
})
export type MergeRequest = typeof MergeRequest.Type

/** MRs of a project updated after `since` (ISO), oldest change first, every page. */
export const list = (client: GitlabClient.GitlabClient, projectId: number, since: string): Stream.Stream<GitlabClient.Page, GitlabClient.GitlabError> =>
  client.paginate(`/projects/${projectId}/merge_requests`, {
    state: "all",
    scope: "all",
    order_by: "updated_at",
    sort: "asc",
    updated_after: since
  })

export const key = (mr: { readonly iid: number }) => String(mr.iid)

export const toRecord = (scope: Entity.ProjectScope, mr: MergeRequest) =>
  Entity.record(scope, kind, key(mr), mr.updated_at, {
    id: mr.id,
    iid: mr.iid,
    title: mr.title,
    state: mr.state,
    draft: mr.draft ?? mr.work_in_progress ?? false,
    author_username: mr.author?.username ?? null,
    source_branch: mr.source_branch,
    target_branch: mr.target_branch,
    created_at: mr.created_at,
    updated_at: mr.updated_at,
    merged_at: mr.merged_at ?? null,
    closed_at: mr.closed_at ?? null,
    merge_commit_sha: mr.merge_commit_sha ?? null,
    squash_commit_sha: mr.squash_commit_sha ?? null,
    sha: mr.sha ?? null,
    reviewer_usernames: (mr.reviewers ?? []).map((r) => r.username),
    merge_user_username: (mr.merge_user ?? mr.merged_by)?.username ?? null,
    web_url: mr.web_url
  })
