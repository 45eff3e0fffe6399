/**
 * MR approvals: who approved (and when, where GitLab says so). One record per MR (key = iid), so
 * a revoked approval disappears from the record instead of lingering. CE answers 403/404: the
 * caller skips approvals for that project with a counted warning.
 */
import { Effect, Schema } from "effect"
import * as Entity from "./Entity.ts"
import type * as GitlabClient from "./GitlabClient.ts"

export const kind = "approval"

export const Approvals = Schema.Struct({
  approved: Schema.optionalKey(Schema.NullOr(Schema.Boolean)),
  approvals_required: Schema.optionalKey(Schema.NullOr(Schema.Int)),
  approvals_left: Schema.optionalKey(Schema.NullOr(Schema.Int)),
  approved_by: Schema.Array(Schema.Struct({
    user: Entity.UserRef,
    approved_at: Schema.optionalKey(Schema.NullOr(Entity.Time))
  }))
})
export type Approvals = typeof Approvals.Type

export const fetch = (client: GitlabClient.GitlabClient, scope: Entity.ProjectScope, iid: number) =>
  Effect.map(client.get(`/projects/${scope.projectId}/merge_requests/${iid}/approvals`), (res) =>
    Entity.decodeItems(Approvals, [res.json], { scope, kind, origin: `GET ${res.url}` }))

export const toRecord = (scope: Entity.ProjectScope, iid: number, mrUpdatedAt: string, a: Approvals) =>
  Entity.record(scope, kind, String(iid), mrUpdatedAt, {
    merge_request_iid: iid,
    approved: a.approved ?? null,
    approvals_required: a.approvals_required ?? null,
    approvals_left: a.approvals_left ?? null,
    approved_by: a.approved_by.map((x) => ({ username: x.user.username, approved_at: x.approved_at ?? null }))
  })
