/**
 * Diff stats and commits of up to 100 MRs of a project in ONE GraphQL request, instead of one
 * REST `/diffs` (all pages) and one `/commits` request per MR. GitLab counts the diff stats from
 * git itself (`diffStatsSummary`), so no diff text is downloaded either: less load on GitLab and
 * fewer bytes for the agent.
 *
 * Whatever GraphQL does not answer completely is left to the REST path for that MR alone: an MR
 * missing from the answer, a null field (e.g. repository disabled), more than 100 commits. A
 * GitLab whose schema lacks these fields (or has GraphQL switched off) answers with
 * `GraphqlUnsupported`, and the caller reads over REST for the rest of the run.
 */
import { Data, Effect, Result, Schema } from "effect"
import * as Commit from "./Commit.ts"
import * as DiffStat from "./DiffStat.ts"
import * as Entity from "./Entity.ts"
import type * as GitlabClient from "./GitlabClient.ts"

/** GitLab's maximum page size: the most MRs (and commits per MR) one query can return. */
export const maxBatch = 100

export const query = `query mhqMergeRequestDetails($fullPath: ID!, $iids: [String!], $first: Int) {
  project(fullPath: $fullPath) {
    mergeRequests(iids: $iids, first: $first) {
      nodes {
        iid
        diffStatsSummary { additions deletions fileCount }
        commits(first: ${maxBatch}) {
          nodes { sha authoredDate committedDate authorName authorEmail }
          pageInfo { hasNextPage }
        }
      }
    }
  }
}`

/** What GraphQL gave for one MR; `undefined` parts are to be read over REST. */
export interface Detail {
  readonly stat: DiffStat.Stat | undefined
  /** All the MR's commits (fewer than 100), decoded one by one. */
  readonly commits: Entity.Decoded<Commit.Commit> | undefined
}

/** The instance cannot answer this query (no GraphQL, or a schema without these fields). */
export class GraphqlUnsupported extends Data.TaggedError("GraphqlUnsupported")<{ readonly instance: string; readonly detail: string }> {
  override get message() {
    return `GitLab ${this.instance} cannot answer the GraphQL query for diff stats and commits (${this.detail}); ` +
      `they are read per MR over REST instead (more requests)`
  }
}

/** This batch failed (after the client's retries); its MRs are read over REST. */
export class GraphqlFailed extends Data.TaggedError("GraphqlFailed")<{ readonly instance: string; readonly detail: string }> {
  override get message() {
    return `GraphQL query for diff stats and commits failed: ${this.detail}`
  }
}

const GraphqlError = Schema.Struct({ message: Schema.String })
const Response = Schema.Struct({
  data: Schema.optionalKey(Schema.NullOr(Schema.Struct({
    project: Schema.NullOr(Schema.Struct({
      mergeRequests: Schema.NullOr(Schema.Struct({ nodes: Schema.NullOr(Schema.Array(Schema.Unknown)) }))
    }))
  }))),
  errors: Schema.optionalKey(Schema.Array(GraphqlError))
})
const Node = Schema.Struct({
  iid: Schema.String,
  diffStatsSummary: Schema.optionalKey(Schema.NullOr(Schema.Unknown)),
  commits: Schema.optionalKey(Schema.NullOr(Schema.Struct({
    nodes: Schema.NullOr(Schema.Array(Schema.Unknown)),
    pageInfo: Schema.Struct({ hasNextPage: Schema.Boolean })
  })))
})
const decodeResponse = Schema.decodeUnknownResult(Response)
const decodeNode = Schema.decodeUnknownResult(Node)
const decodeSummary = Schema.decodeUnknownResult(DiffStat.Summary)

/**
 * GitLab's wording for a query it will never answer: fields its schema lacks (older GitLab), or
 * complexity/depth over limits an admin lowered (GitLab scores this query far below its default
 * 250: connections selected by `iids` add nothing per item).
 */
const unsupportedPattern = /exceeds max (?:complexity|depth)|doesn't exist on type|doesn't accept argument|Unknown (?:type|argument)|undefinedField|argumentNotAccepted|isn't a defined input type/i

export type DetailsError = GitlabClient.TokenRejected | GitlabClient.TlsFailure | GraphqlUnsupported | GraphqlFailed

/** Diff stats and commits of `iids` (at most `maxBatch`) of one project, by iid. */
export const fetch = (
  client: GitlabClient.GitlabClient,
  scope: Entity.ProjectScope,
  iids: ReadonlyArray<number>
): Effect.Effect<ReadonlyMap<number, Detail>, DetailsError> => {
  const instance = client.instance
  return client.graphql(query, { fullPath: scope.projectPath, iids: iids.map(String), first: iids.length }).pipe(
    Effect.catch((e): Effect.Effect<never, DetailsError> => {
      switch (e._tag) {
        case "TokenRejected":
        case "TlsFailure":
          return Effect.fail(e)
        case "EntityUnavailable":
          return Effect.fail(new GraphqlUnsupported({ instance, detail: `${e.status} on ${e.url}` }))
        default:
          return Effect.fail(new GraphqlFailed({ instance, detail: e.message }))
      }
    }),
    Effect.flatMap((res): Effect.Effect<ReadonlyMap<number, Detail>, DetailsError> => {
      const decoded = decodeResponse(res.json)
      if (Result.isFailure(decoded)) {
        return Effect.fail(new GraphqlFailed({ instance, detail: `unexpected answer: ${decoded.failure.message.slice(0, 300)}` }))
      }
      const { data, errors = [] } = decoded.success
      const messages = errors.map((x) => x.message).join("; ").slice(0, 500)
      if (errors.some((x) => unsupportedPattern.test(x.message))) return Effect.fail(new GraphqlUnsupported({ instance, detail: messages }))
      const nodes = data?.project?.mergeRequests?.nodes
      if (nodes === undefined || nodes === null) {
        return Effect.fail(new GraphqlFailed({
          instance,
          detail: messages !== "" ? messages : data?.project === null ? `project ${scope.projectPath} not found by its path` : "no merge requests in the answer"
        }))
      }
      // Partial answers (errors next to data) are used: what is missing goes to REST per MR.
      return Effect.succeed(details(scope, nodes, `POST ${res.url}`))
    })
  )
}

const details = (scope: Entity.ProjectScope, nodes: ReadonlyArray<unknown>, origin: string): ReadonlyMap<number, Detail> => {
  const out = new Map<number, Detail>()
  for (const raw of nodes) {
    const n = decodeNode(raw)
    if (Result.isFailure(n)) continue // not usable: that MR is read over REST
    const iid = Number(n.success.iid)
    if (!Number.isSafeInteger(iid)) continue
    const summary = n.success.diffStatsSummary == null ? undefined : decodeSummary(n.success.diffStatsSummary)
    const commits = n.success.commits
    let decodedCommits: Entity.Decoded<Commit.Commit> | undefined
    if (commits != null && commits.nodes !== null && !commits.pageInfo.hasNextPage) {
      const d = Entity.decodeItems(Commit.GraphqlCommit, commits.nodes, { scope, kind: Commit.kind, origin: `${origin} MR !${iid} commits` })
      decodedCommits = { items: d.items.map(Commit.fromGraphql), quarantine: d.quarantine }
    }
    out.set(iid, {
      stat: summary !== undefined && Result.isSuccess(summary) ? DiffStat.fromSummary(summary.success) : undefined,
      commits: decodedCommits
    })
  }
  return out
}
