// GitLab-like GraphQL endpoint (POST /api/graphql) of the simulated GitLab: a subset of GitLab's real
// schema (same type, field and argument names), resolved lazily from the world. Field values equal what
// the REST endpoints serve for the same records, so a client may read either way.
import { createRequire } from "node:module"
import type * as Graphql from "graphql"
import type { ExecutionResult, GraphQLError, GraphQLSchema } from "graphql"
import { type GlCommit, iso, type Json } from "./json.ts"
import { diffLineCounts, type Mr, type MrDetail, type Project, type World } from "./model.ts"
import type { WrongTypeTarget } from "./server.ts"

/** "enabled": the schema below; "disabled": POST /api/graphql answers 404; "legacy": an old GitLab
 * without `MergeRequest.commits` and `DiffStatsSummary.fileCount`. */
export type GraphqlMode = "enabled" | "disabled" | "legacy"

/** GitLab's max page size for connections; larger `first`/`last` are clamped. */
export const GRAPHQL_MAX_PAGE_SIZE = 100

const sdl = (legacy: boolean): string => `
scalar Time

type Query {
  project(fullPath: ID!): Project
}

type Project {
  id: ID!
  fullPath: ID!
  mergeRequests(iids: [String!], first: Int, after: String, last: Int, before: String): MergeRequestConnection
}

type MergeRequestConnection {
  count: Int!
  nodes: [MergeRequest]
  pageInfo: PageInfo!
}

type MergeRequest {
  id: ID!
  iid: String!
  title: String!
  updatedAt: Time!
  diffStatsSummary: DiffStatsSummary
  ${legacy ? "" : "commits(first: Int, after: String): CommitConnection"}
  commitCount: Int
}

type DiffStatsSummary {
  additions: Int!
  deletions: Int!
  changes: Int!
  ${legacy ? "" : "fileCount: Int!"}
}

type CommitConnection {
  nodes: [Commit]
  pageInfo: PageInfo!
}

type Commit {
  id: ID!
  sha: String!
  shortId: String!
  title: String
  authoredDate: Time
  committedDate: Time
  authorName: String
  authorEmail: String
  committerName: String
  committerEmail: String
}

type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}
`

/** Per-request context: the faults in force when the request arrived. */
interface Ctx {
  readonly wrongType: ReadonlyArray<WrongTypeTarget>
}

interface PageArgs {
  readonly first?: number | null
  readonly after?: string | null
  readonly last?: number | null
  readonly before?: string | null
}

interface PageInfo {
  readonly hasNextPage: boolean
  readonly hasPreviousPage: boolean
  readonly startCursor: string | null
  readonly endCursor: string | null
}

// Opaque cursors (GitLab's are base64 JSON too): the offset of the item in the ordered list.
const encodeCursor = (offset: number): string => Buffer.from(JSON.stringify({ offset: String(offset) })).toString("base64")
const decodeCursor = (cursor: string): number => {
  try {
    const v = JSON.parse(Buffer.from(cursor, "base64").toString("utf8")) as { offset?: unknown }
    const n = Number(v.offset)
    if (typeof v.offset === "string" && Number.isInteger(n) && n >= 0) return n
  } catch {
    // fall through
  }
  throw new (gql().GraphQLError)("Please provide a valid cursor")
}

const pageSize = (name: string, v: number | null | undefined): number | undefined => {
  if (v === null || v === undefined) return undefined
  if (v < 0) throw new (gql().GraphQLError)(`Argument '${name}' on a connection must be a non-negative integer`)
  return Math.min(v, GRAPHQL_MAX_PAGE_SIZE)
}

/** Relay-style slice of an ordered list of `total` items; cursors are offsets. */
const page = <A>(total: number, at: (i: number) => A, args: PageArgs): { nodes: Array<A>; pageInfo: PageInfo } => {
  const first = pageSize("first", args.first)
  const last = pageSize("last", args.last)
  let start = args.after ? decodeCursor(args.after) + 1 : 0
  let end = args.before ? decodeCursor(args.before) : total
  start = Math.min(start, total)
  end = Math.max(start, Math.min(end, total))
  if (first !== undefined) end = Math.min(end, start + first)
  else if (last === undefined) end = Math.min(end, start + GRAPHQL_MAX_PAGE_SIZE)
  if (last !== undefined) start = Math.max(start, end - last)
  const nodes: Array<A> = []
  for (let i = start; i < end; i++) nodes.push(at(i))
  return {
    nodes,
    pageInfo: {
      hasNextPage: end < total,
      hasPreviousPage: start > 0,
      startCursor: nodes.length > 0 ? encodeCursor(start) : null,
      endCursor: nodes.length > 0 ? encodeCursor(end - 1) : null
    }
  }
}

/** REST field names of a wrongType target (commits) → the GraphQL field carrying the same value. */
const commitFieldOf: Readonly<Record<string, string>> = {
  id: "sha",
  short_id: "shortId",
  title: "title",
  created_at: "committedDate",
  committed_date: "committedDate",
  authored_date: "authoredDate",
  author_name: "authorName",
  author_email: "authorEmail",
  committer_name: "committerName",
  committer_email: "committerEmail"
}

/**
 * graphql-js, loaded on the first GraphQL request: the product bundle carries the sim for its demo
 * command, and a `require` (unlike an import) is evaluated by the bundle only when called, so the
 * agent's ordinary runs do not pay ~3 MB of RSS for it. Outside the bundle (tests), Node resolves it.
 */
let graphqlLib: typeof Graphql | undefined
const gql = (): typeof Graphql =>
  (graphqlLib ??= typeof require === "function" ? require("graphql") as typeof Graphql : createRequire(import.meta.url)("graphql") as typeof Graphql)

export class SimGraphql {
  private schemas: Readonly<Record<"enabled" | "legacy", GraphQLSchema>> | undefined

  /** `json` is a getter: the server rebuilds its Json once the base URL is known. */
  constructor(readonly world: World, readonly json: () => Json) {}

  schema(mode: "enabled" | "legacy"): GraphQLSchema {
    this.schemas ??= { enabled: gql().buildSchema(sdl(false)), legacy: gql().buildSchema(sdl(true)) }
    return this.schemas[mode]
  }

  /** Runs a request body (already JSON-decoded); the HTTP status is always 200, like GitLab. */
  run(mode: "enabled" | "legacy", body: unknown, wrongType: ReadonlyArray<WrongTypeTarget>): unknown {
    // A JSON array is a multiplexed request (GitLab answers with an array of results).
    if (Array.isArray(body)) return body.map((one) => this.run(mode, Array.isArray(one) ? null : one, wrongType))
    if (typeof body !== "object" || body === null) return { errors: [{ message: "No query string was present" }], data: null }
    const b = body as { query?: unknown; variables?: unknown; operationName?: unknown }
    if (typeof b.query !== "string" || b.query.trim() === "") return { errors: [{ message: "No query string was present" }], data: null }
    let variables = b.variables
    if (typeof variables === "string") {
      try {
        variables = variables.trim() === "" ? {} : JSON.parse(variables)
      } catch {
        return { errors: [{ message: "Variables are invalid JSON" }], data: null }
      }
    }
    if (variables !== undefined && variables !== null && (typeof variables !== "object" || Array.isArray(variables))) {
      return { errors: [{ message: "Variables must be an object" }], data: null }
    }
    const schema = this.schema(mode)
    const { execute, parse, validate } = gql()
    let document
    try {
      document = parse(b.query)
    } catch (e) {
      if (e instanceof gql().GraphQLError) return { errors: [gitlabError(e)], data: null }
      throw e
    }
    const invalid = validate(schema, document)
    if (invalid.length > 0) return { errors: invalid.map(gitlabError), data: null }
    const ctx: Ctx = { wrongType }
    const result = execute({
      schema,
      document,
      rootValue: { project: (args: { fullPath: string }) => this.project(args.fullPath) },
      contextValue: ctx,
      variableValues: (variables ?? undefined) as Record<string, unknown> | undefined,
      operationName: typeof b.operationName === "string" && b.operationName !== "" ? b.operationName : undefined
    }) as ExecutionResult // all resolvers are synchronous
    if (result instanceof Promise) throw new Error("SimGraphql: unexpected async execution")
    const out: Record<string, unknown> = {}
    if (result.errors && result.errors.length > 0) out["errors"] = result.errors.map((e) => e.toJSON())
    out["data"] = result.data ?? null
    return out
  }

  // ---------------------------------------------------------------- resolvers (graphql-js default resolver: properties/methods)

  private project(fullPath: string): ProjectNode | null {
    // GitLab finds projects by full path only (case-insensitive); a numeric id is no path.
    if (/^\d+$/.test(fullPath)) return null
    const p = this.world.findProject(fullPath)
    return p ? new ProjectNode(this, p) : null
  }

  /** REST commit JSON mapped to GraphQL Commit fields, with the commit wrongType fault applied. */
  commitNode(p: Project, rest: GlCommit, ctx: Ctx): Record<string, unknown> {
    const node: Record<string, unknown> = {
      id: `gid://gitlab/CommitPresenter/${rest.id}`,
      sha: rest.id,
      shortId: rest.short_id,
      title: rest.title,
      authoredDate: rest.authored_date,
      committedDate: rest.committed_date,
      authorName: rest.author_name,
      authorEmail: rest.author_email,
      committerName: rest["committer_name"],
      committerEmail: rest["committer_email"]
    }
    for (const t of ctx.wrongType) {
      if (t.kind !== "commit" || t.projectId !== p.id || t.id !== rest.id) continue
      const restField = t.field ?? "created_at"
      const field = commitFieldOf[restField] ?? restField
      node[field] = "value" in t ? t.value : 12
    }
    return node
  }
}

class ProjectNode {
  constructor(private readonly g: SimGraphql, private readonly p: Project) {}

  get id(): string {
    return `gid://gitlab/Project/${this.p.id}`
  }

  get fullPath(): string {
    return this.p.pathWithNamespace
  }

  mergeRequests(args: PageArgs & { readonly iids?: ReadonlyArray<string> | null }): unknown {
    const world = this.g.world
    const p = this.p
    const n = world.mrCount(p)
    // Ordered by iid, newest first.
    let total: number
    let iidAt: (i: number) => number
    if (args.iids !== null && args.iids !== undefined) {
      const iids = [...new Set(args.iids.filter((s) => /^\d+$/.test(s)).map(Number))].filter((i) => i >= 1 && i <= n).sort((a, b) => b - a)
      total = iids.length
      iidAt = (i) => iids[i] as number
    } else {
      total = n
      iidAt = (i) => n - i
    }
    const { nodes, pageInfo } = page(total, (i) => new MergeRequestNode(this.g, world.mr(p, iidAt(i)) as Mr), args)
    return { count: total, nodes, pageInfo }
  }
}

class MergeRequestNode {
  private cached: MrDetail | undefined
  constructor(private readonly g: SimGraphql, private readonly m: Mr) {}

  private get detail(): MrDetail {
    return (this.cached ??= this.g.world.detail(this.m))
  }

  private get repositoryDisabled(): boolean {
    return this.m.project.flags.repositoryDisabled
  }

  get id(): string {
    return `gid://gitlab/MergeRequest/${this.m.id}`
  }

  get iid(): string {
    return String(this.m.iid)
  }

  get title(): string {
    return this.m.title
  }

  /** Same string as REST `updated_at`. */
  get updatedAt(): string {
    return iso(this.m.updatedAt)
  }

  /** Counted from the diffs REST /diffs serves (they carry no file headers). */
  diffStatsSummary(): { additions: number; deletions: number; changes: number; fileCount: number } | null {
    if (this.repositoryDisabled) return null
    let additions = 0
    let deletions = 0
    const diffs = this.detail.diffs
    for (const d of diffs) {
      const c = diffLineCounts(d.diff)
      additions += c.additions
      deletions += c.deletions
    }
    return { additions, deletions, changes: additions + deletions, fileCount: diffs.length }
  }

  /** Same commits and order (newest first) as REST /merge_requests/:iid/commits. */
  commits(args: PageArgs, ctx: Ctx): unknown {
    if (this.repositoryDisabled) return null
    const p = this.m.project
    const commits = this.detail.commits
    const json = this.g.json()
    return page(commits.length, (i) => this.g.commitNode(p, json.commit(p, commits[commits.length - 1 - i]!), ctx), { first: args.first ?? null, after: args.after ?? null })
  }

  commitCount(): number | null {
    return this.repositoryDisabled ? null : this.detail.commits.length
  }
}

/** graphql-js error → GitLab (graphql-ruby) wording where they differ in ways clients may match on. */
const gitlabError = (e: GraphQLError): Record<string, unknown> => {
  const locations = e.locations ? e.locations.map((l) => ({ line: l.line, column: l.column })) : []
  const field = /^Cannot query field "([^"]+)" on type "([^"]+)"\./.exec(e.message)
  if (field) {
    return {
      message: `Field '${field[1]}' doesn't exist on type '${field[2]}'`,
      locations,
      extensions: { code: "undefinedField", typeName: field[2], fieldName: field[1] }
    }
  }
  const arg = /^Unknown argument "([^"]+)" on field "([^".]+)\.([^"]+)"\./.exec(e.message)
  if (arg) {
    return {
      message: `Field '${arg[3]}' doesn't accept argument '${arg[1]}'`,
      locations,
      extensions: { code: "argumentNotAccepted", name: arg[3], typeName: "Field", argumentName: arg[1] }
    }
  }
  return { message: e.message, locations }
}
