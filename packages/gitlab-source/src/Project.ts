/**
 * Projects: resolving configured links/ids/paths (projects and groups, incl. subgroups) to the
 * projects to sync, and the minimised "project" record.
 */
import { Data, Effect, Option, Schema, Stream } from "effect"
import * as Entity from "./Entity.ts"
import type * as GitlabClient from "./GitlabClient.ts"
import type * as InstanceConfig from "./InstanceConfig.ts"

export const kind = "project"

export const Project = Schema.Struct({
  id: Schema.Int,
  name: Schema.String,
  path: Schema.String,
  path_with_namespace: Schema.String,
  namespace: Schema.Struct({ full_path: Schema.String }),
  default_branch: Schema.optionalKey(Schema.NullOr(Schema.String)),
  web_url: Schema.String,
  archived: Schema.optionalKey(Schema.Boolean),
  created_at: Schema.optionalKey(Entity.Time),
  updated_at: Schema.optionalKey(Schema.NullOr(Entity.Time))
})
export type Project = typeof Project.Type

export const scopeOf = (instance: string, p: Project): Entity.ProjectScope => ({
  instance,
  projectId: p.id,
  projectPath: p.path_with_namespace
})

export const toRecord = (instance: string, p: Project) =>
  Entity.record(scopeOf(instance, p), kind, String(p.id), p.updated_at ?? p.created_at ?? new Date(0).toISOString(), {
    id: p.id,
    name: p.name,
    path: p.path,
    path_with_namespace: p.path_with_namespace,
    namespace_full_path: p.namespace.full_path,
    default_branch: p.default_branch ?? null,
    web_url: p.web_url,
    archived: p.archived ?? false
  })

// ---------------------------------------------------------------------------------------------
// References

/** A configured reference that cannot be used as given (fix the configuration). */
export class InvalidReference extends Data.TaggedError("InvalidReference")<{
  readonly reference: string
  readonly reason: string
}> {
  override get message() {
    return `invalid project/group reference ${JSON.stringify(this.reference)}: ${this.reason}`
  }
}

/** A reference that names nothing visible to the token. */
export class ReferenceNotFound extends Data.TaggedError("ReferenceNotFound")<{
  readonly reference: string
  readonly what: "project" | "group"
  readonly status: number
}> {
  override get message() {
    return `${this.what} ${JSON.stringify(this.reference)} not found (${this.status}): check the link, and that the token's user can read it`
  }
}

export type Ref = { readonly _tag: "id"; readonly id: number } | { readonly _tag: "path"; readonly path: string }

/**
 * Parses a project or group reference: numeric id, full path, or a web link on this instance
 * (`https://host[/root]/group/sub/project`, with `.git`, trailing slash, `/-/tree/...` tails;
 * `/groups/...` for groups). A link on another host or outside the instance root is an error.
 */
export const parseReference = (
  instance: string,
  reference: InstanceConfig.Reference,
  what: "project" | "group"
): Effect.Effect<Ref, InvalidReference> =>
  Effect.suspend((): Effect.Effect<Ref, InvalidReference> => {
    const raw = String(reference).trim()
    const fail = (reason: string) => Effect.fail(new InvalidReference({ reference: raw, reason }))
    if (typeof reference === "number" || /^\d+$/.test(raw)) {
      const id = Number(raw)
      return Number.isSafeInteger(id) && id > 0 ? Effect.succeed({ _tag: "id", id } as const) : fail("not a valid id")
    }
    let path = raw
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) {
      let url: URL
      try {
        url = new URL(raw)
      } catch {
        return fail("not a valid URL")
      }
      const base = new URL(instance)
      if (url.protocol !== base.protocol || url.host.toLowerCase() !== base.host.toLowerCase()) {
        return fail(`it is on ${url.protocol}//${url.host}, but this instance is ${instance}; configure it under the matching instance`)
      }
      const root = base.pathname.replace(/\/+$/, "")
      const p = decodeURIComponent(url.pathname)
      if (root !== "" && p !== root && !p.startsWith(`${root}/`)) {
        return fail(`it is outside the instance root ${instance}`)
      }
      path = p.slice(root.length)
    }
    path = path.replace(/\/-\/.*$/, "").replace(/^\/+|\/+$/g, "").replace(/\.git$/i, "").replace(/\/+$/, "")
    if (what === "group") path = path.replace(/^groups\//, "")
    if (path === "") return fail(`no ${what} path in it`)
    if (path.split("/").some((s) => s === "" || s === "." || s === "..")) return fail("malformed path")
    return Effect.succeed({ _tag: "path", path } as const)
  })

const refParam = (ref: Ref) => (ref._tag === "id" ? String(ref.id) : encodeURIComponent(ref.path))

/** Checks every configured reference without any request (for config validation). */
export const validateReferences = (config: InstanceConfig.InstanceConfig) =>
  Effect.all([
    ...config.projects.map((r) => parseReference(config.url, r, "project")),
    ...config.groups.map((r) => parseReference(config.url, r, "group"))
  ], { concurrency: 1 })

export interface Resolved {
  readonly projects: ReadonlyArray<Project>
  /** Per-reference problems (not found, unreadable): the other references still resolve. */
  readonly errors: ReadonlyArray<string>
  readonly warnings: ReadonlyArray<string>
  readonly quarantine: ReadonlyArray<import("@mhq-sync/core").Staging.QuarantineEntry>
}

const isNotFound = (e: GitlabClient.GitlabError): e is GitlabClient.EntityUnavailable => e._tag === "EntityUnavailable"

/** Resolves the configured projects and groups to a de-duplicated list of projects, ordered by id. */
export const resolve = (
  client: GitlabClient.GitlabClient
): Effect.Effect<Resolved, InvalidReference | GitlabClient.TokenRejected | GitlabClient.TlsFailure> =>
  Effect.gen(function*() {
    const config = client.config
    const projectRefs = yield* Effect.forEach(config.projects, (r) => Effect.map(parseReference(client.instance, r, "project"), (ref) => [String(r), ref] as const))
    const groupRefs = yield* Effect.forEach(config.groups, (r) => Effect.map(parseReference(client.instance, r, "group"), (ref) => [String(r), ref] as const))
    const byId = new Map<number, Project>()
    const errors: Array<string> = []
    const warnings: Array<string> = []
    const quarantine: Array<import("@mhq-sync/core").Staging.QuarantineEntry> = []
    const pseudoScope: Entity.ProjectScope = { instance: client.instance, projectId: 0, projectPath: "" }

    const fatal = (e: GitlabClient.GitlabError) => e._tag === "TokenRejected" || e._tag === "TlsFailure"

    for (const [raw, ref] of projectRefs) {
      const r = yield* Effect.result(client.get(`/projects/${refParam(ref)}`))
      if (r._tag === "Failure") {
        if (fatal(r.failure)) return yield* Effect.fail(r.failure as GitlabClient.TokenRejected | GitlabClient.TlsFailure)
        errors.push(isNotFound(r.failure) ? new ReferenceNotFound({ reference: raw, what: "project", status: r.failure.status }).message : r.failure.message)
        continue
      }
      const d = Entity.decodeItems(Project, [r.success.json], { scope: pseudoScope, kind, origin: `GET ${r.success.url}` })
      quarantine.push(...d.quarantine)
      for (const p of d.items) byId.set(p.id, p)
      if (d.items.length === 0) errors.push(`project ${JSON.stringify(raw)}: unexpected response (quarantined)`)
    }

    for (const [raw, ref] of groupRefs) {
      const pages = client.paginate(`/groups/${refParam(ref)}/projects`, {
        include_subgroups: true,
        with_shared: false,
        ...(config.includeArchived ? {} : { archived: false }),
        pagination: "keyset",
        order_by: "id",
        sort: "asc"
      })
      const r = yield* Effect.result(Stream.runForEach(pages, (page) =>
        Effect.sync(() => {
          const d = Entity.decodeItems(Project, page.items, { scope: pseudoScope, kind, origin: page.origin })
          quarantine.push(...d.quarantine)
          for (const p of d.items) {
            if (!config.includeArchived && p.archived === true) continue
            byId.set(p.id, p)
          }
        })))
      if (r._tag === "Failure") {
        if (fatal(r.failure)) return yield* Effect.fail(r.failure as GitlabClient.TokenRejected | GitlabClient.TlsFailure)
        errors.push(isNotFound(r.failure) ? new ReferenceNotFound({ reference: raw, what: "group", status: r.failure.status }).message : r.failure.message)
      }
    }
    if (quarantine.length > 0) warnings.push(`${quarantine.length} project record(s) could not be decoded and were quarantined`)
    const projects = [...byId.values()].sort((a, b) => a.id - b.id)
    return { projects, errors, warnings, quarantine }
  })

export const find = (projects: ReadonlyArray<Project>, id: number) => Option.fromNullishOr(projects.find((p) => p.id === id))
