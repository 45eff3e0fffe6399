/**
 * MR notes (all pages). The body is kept ONLY for system notes ("approved this merge request",
 * "requested changes", "marked this merge request as ready" ...); user comment bodies are dropped.
 */
import { Schema } from "effect"
import * as Entity from "./Entity.ts"
import type * as GitlabClient from "./GitlabClient.ts"

export const kind = "note"

export const Note = Schema.Struct({
  id: Schema.Int,
  type: Schema.optionalKey(Schema.NullOr(Schema.String)),
  body: Schema.optionalKey(Schema.NullOr(Schema.String)),
  system: Schema.Boolean,
  created_at: Entity.Time,
  updated_at: Schema.optionalKey(Schema.NullOr(Entity.Time)),
  author: Schema.NullOr(Entity.UserRef),
  resolvable: Schema.optionalKey(Schema.NullOr(Schema.Boolean)),
  resolved: Schema.optionalKey(Schema.NullOr(Schema.Boolean))
})
export type Note = typeof Note.Type

export const fetchAll = (client: GitlabClient.GitlabClient, scope: Entity.ProjectScope, iid: number) =>
  Entity.collect(client, `/projects/${scope.projectId}/merge_requests/${iid}/notes`, { sort: "asc", order_by: "created_at" }, Note, {
    scope,
    kind
  })

export const toRecord = (scope: Entity.ProjectScope, iid: number, mrUpdatedAt: string, n: Note) =>
  Entity.record(scope, kind, `${iid}:${n.id}`, n.updated_at ?? mrUpdatedAt, {
    id: n.id,
    merge_request_iid: iid,
    type: n.type ?? null,
    system: n.system,
    body: n.system ? n.body ?? null : null,
    created_at: n.created_at,
    updated_at: n.updated_at ?? null,
    author_username: n.author?.username ?? null,
    resolvable: n.resolvable ?? false,
    resolved: n.resolved ?? null
  })
