/**
 * MR commits (all pages): sha and times; author name/email per the privacy setting; the commit
 * message is never kept.
 */
import { createHash } from "node:crypto"
import { Schema } from "effect"
import * as Entity from "./Entity.ts"
import type * as GitlabClient from "./GitlabClient.ts"
import type * as InstanceConfig from "./InstanceConfig.ts"

export const kind = "commit"

export const Commit = Schema.Struct({
  id: Schema.String,
  authored_date: Schema.optionalKey(Schema.NullOr(Entity.Time)),
  committed_date: Schema.optionalKey(Schema.NullOr(Entity.Time)),
  created_at: Entity.Time,
  author_name: Schema.optionalKey(Schema.NullOr(Schema.String)),
  author_email: Schema.optionalKey(Schema.NullOr(Schema.String))
})
export type Commit = typeof Commit.Type

/**
 * A commit as GitLab's GraphQL API gives it (`MergeRequest.commits`): read in batches by
 * `MergeRequestDetails`, then turned into the REST shape so both paths stage the same record.
 */
export const GraphqlCommit = Schema.Struct({
  sha: Schema.String,
  authoredDate: Schema.optionalKey(Schema.NullOr(Entity.Time)),
  committedDate: Entity.Time,
  authorName: Schema.optionalKey(Schema.NullOr(Schema.String)),
  authorEmail: Schema.optionalKey(Schema.NullOr(Schema.String))
})
export type GraphqlCommit = typeof GraphqlCommit.Type

/** REST's `created_at` of a commit is its committer date: GraphQL has only the latter. */
export const fromGraphql = (c: GraphqlCommit): Commit => ({
  id: c.sha,
  authored_date: c.authoredDate ?? null,
  committed_date: c.committedDate,
  created_at: c.committedDate,
  author_name: c.authorName ?? null,
  author_email: c.authorEmail ?? null
})

export const fetchAll = (client: GitlabClient.GitlabClient, scope: Entity.ProjectScope, iid: number) =>
  Entity.collect(client, `/projects/${scope.projectId}/merge_requests/${iid}/commits`, {}, Commit, { scope, kind })

/** keep → as is; hash → "sha256:<hex of the trimmed, lower-cased value>" (same person, same hash); drop → null. */
export const applyPrivacy = (mode: InstanceConfig.PrivacyMode, value: string | null | undefined): string | null => {
  if (value === null || value === undefined) return null
  switch (mode) {
    case "keep":
      return value
    case "drop":
      return null
    case "hash":
      return `sha256:${createHash("sha256").update(value.trim().toLowerCase()).digest("hex")}`
  }
}

export const toRecord = (scope: Entity.ProjectScope, iid: number, mrUpdatedAt: string, privacy: InstanceConfig.Privacy, c: Commit) =>
  Entity.record(scope, kind, `${iid}:${c.id}`, mrUpdatedAt, {
    sha: c.id,
    merge_request_iid: iid,
    authored_at: c.authored_date ?? null,
    committed_at: c.committed_date ?? null,
    created_at: c.created_at,
    author_name: applyPrivacy(privacy.names, c.author_name),
    author_email: applyPrivacy(privacy.emails, c.author_email)
  })
