/**
 * CI pipelines: the list (`updated_after`, ordered by `updated_at`) plus a detail fetch for
 * started/finished/duration, which the list omits. Unfinished pipelines are re-polled until final.
 */
import { Effect, Schema, type Stream } from "effect"
import * as Entity from "./Entity.ts"
import type * as GitlabClient from "./GitlabClient.ts"

export const kind = "pipeline"

/** Statuses after which a pipeline no longer changes on its own. */
export const finalStatuses: ReadonlyArray<string> = ["success", "failed", "canceled", "skipped"]
/** Statuses that are re-polled until final. */
export const unfinishedStatuses: ReadonlyArray<string> = [
  "created", "waiting_for_resource", "preparing", "pending", "running", "scheduled", "manual", "canceling", "waiting_for_callback"
]

export const PipelineSummary = Schema.Struct({
  id: Schema.Int,
  updated_at: Entity.Time
})

export const Pipeline = Schema.Struct({
  id: Schema.Int,
  iid: Schema.optionalKey(Schema.NullOr(Schema.Int)),
  status: Schema.String,
  source: Schema.optionalKey(Schema.NullOr(Schema.String)),
  ref: Schema.NullOr(Schema.String),
  sha: Schema.String,
  created_at: Entity.Time,
  updated_at: Entity.Time,
  started_at: Schema.optionalKey(Schema.NullOr(Entity.Time)),
  finished_at: Schema.optionalKey(Schema.NullOr(Entity.Time)),
  duration: Schema.optionalKey(Schema.NullOr(Schema.Number)),
  web_url: Schema.optionalKey(Schema.NullOr(Schema.String))
})
export type Pipeline = typeof Pipeline.Type

export const list = (client: GitlabClient.GitlabClient, projectId: number, since: string): Stream.Stream<GitlabClient.Page, GitlabClient.GitlabError> =>
  client.paginate(`/projects/${projectId}/pipelines`, { updated_after: since, order_by: "updated_at", sort: "asc" })

export const fetch = (client: GitlabClient.GitlabClient, scope: Entity.ProjectScope, id: number) =>
  Effect.map(client.get(`/projects/${scope.projectId}/pipelines/${id}`), (res) =>
    Entity.decodeItems(Pipeline, [res.json], { scope, kind, origin: `GET ${res.url}` }))

export const toRecord = (scope: Entity.ProjectScope, p: Pipeline) =>
  Entity.record(scope, kind, String(p.id), p.updated_at, {
    id: p.id,
    iid: p.iid ?? null,
    status: p.status,
    source: p.source ?? null,
    ref: p.ref,
    sha: p.sha,
    created_at: p.created_at,
    updated_at: p.updated_at,
    started_at: p.started_at ?? null,
    finished_at: p.finished_at ?? null,
    duration: p.duration ?? null,
    web_url: p.web_url ?? null
  })
