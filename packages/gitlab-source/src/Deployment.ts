/**
 * Deployments: the list (`updated_after` requires ordering by `updated_at`) and the minimised
 * record. Unfinished deployments are re-polled until final.
 */
import { Effect, Schema, type Stream } from "effect"
import * as Entity from "./Entity.ts"
import type * as GitlabClient from "./GitlabClient.ts"

export const kind = "deployment"

export const unfinishedStatuses: ReadonlyArray<string> = ["created", "running", "blocked"]

export const Deployment = Schema.Struct({
  id: Schema.Int,
  iid: Schema.optionalKey(Schema.NullOr(Schema.Int)),
  status: Schema.String,
  ref: Schema.NullOr(Schema.String),
  sha: Schema.NullOr(Schema.String),
  created_at: Entity.Time,
  updated_at: Entity.Time,
  finished_at: Schema.optionalKey(Schema.NullOr(Entity.Time)),
  environment: Schema.NullOr(Schema.Struct({ name: Schema.String })),
  deployable: Schema.optionalKey(Schema.NullOr(Schema.Struct({
    id: Schema.Int,
    status: Schema.optionalKey(Schema.NullOr(Schema.String)),
    finished_at: Schema.optionalKey(Schema.NullOr(Entity.Time))
  })))
})
export type Deployment = typeof Deployment.Type

export const list = (client: GitlabClient.GitlabClient, projectId: number, since: string): Stream.Stream<GitlabClient.Page, GitlabClient.GitlabError> =>
  client.paginate(`/projects/${projectId}/deployments`, { updated_after: since, order_by: "updated_at", sort: "asc" })

export const fetch = (client: GitlabClient.GitlabClient, scope: Entity.ProjectScope, id: number) =>
  Effect.map(client.get(`/projects/${scope.projectId}/deployments/${id}`), (res) =>
    Entity.decodeItems(Deployment, [res.json], { scope, kind, origin: `GET ${res.url}` }))

export const toRecord = (scope: Entity.ProjectScope, d: Deployment) =>
  Entity.record(scope, kind, String(d.id), d.updated_at, {
    id: d.id,
    iid: d.iid ?? null,
    status: d.status,
    environment: d.environment?.name ?? null,
    ref: d.ref,
    sha: d.sha,
    created_at: d.created_at,
    updated_at: d.updated_at,
    finished_at: d.finished_at ?? d.deployable?.finished_at ?? null,
    deployable_id: d.deployable?.id ?? null,
    deployable_status: d.deployable?.status ?? null
  })
