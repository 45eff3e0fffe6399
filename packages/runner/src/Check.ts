/**
 * `mhq-sync check`: the setup checklist, executed against the real systems. One line per item,
 * ✓ or ✗ with the fix; the command exits non-zero when any item fails.
 */
import { Database, Staging } from "@mhq-sync/core"
import { GitlabClient, type InstanceConfig, MergeRequestDetails, Project } from "@mhq-sync/gitlab-source"
import { Heartbeat, Keys } from "@mhq-sync/mhq-sink"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as Agent from "./Agent.ts"
import type * as AppConfig from "./AppConfig.ts"

export interface Item {
  readonly ok: boolean
  /** Works, but deserves attention (shown with "!"; does not fail the check). */
  readonly warning?: boolean
  readonly label: string
  /** What to do about it (failures), or a detail (successes). */
  readonly detail?: string | undefined
}

const pass = (label: string, detail?: string): Item => ({ ok: true, label, detail })
const fail = (label: string, detail: string): Item => ({ ok: false, label, detail })
const warn = (label: string, detail: string): Item => ({ ok: true, warning: true, label, detail })

export const render = (items: ReadonlyArray<Item>): string =>
  items.map((i) => `${i.warning ? "!" : i.ok ? "✓" : "✗"} ${i.label}${i.detail ? (i.ok && !i.warning ? ` (${i.detail})` : `\n    → ${i.detail}`) : ""}`).join("\n")

const errorText = (e: unknown) => (e as { message?: string }).message ?? String(e)

/** Child endpoints probed on one merge request, with the fix when GitLab refuses them. */
const mrChildren = [
  ["notes", "notes"],
  ["approvals", "approvals (GitLab Premium, or a CE instance: approvals will be skipped)"],
  ["commits", "commits"],
  ["diffs", "diffs"]
] as const

const gitlabItems = (config: InstanceConfig.InstanceConfig) =>
  Effect.scoped(Effect.gen(function*() {
    const items: Array<Item> = []
    const client = yield* GitlabClient.make(config, { retries: 1, rateLimitedRetries: 2 })
    if (config.url.startsWith("http:")) {
      items.push(warn(`GitLab ${config.url} is plain http`, "the token and all data travel unencrypted — use the https:// URL of your GitLab"))
    }
    const version = yield* Effect.result(client.get("/version"))
    if (version._tag === "Failure") {
      const e = version.failure
      items.push(fail(
        `GitLab reachable at ${config.url}`,
        e._tag === "TokenRejected"
          ? "GitLab answered 401: the token is invalid, expired or revoked — create a new access token with the read_api scope and set GITLAB_ACCESS_TOKEN"
          : e._tag === "TlsFailure"
          ? `${e.message} — set caFile to your CA's PEM bundle`
          : `${errorText(e)} — check the URL, DNS, proxy (HTTPS_PROXY) and firewall`
      ))
      return items
    }
    const v = version.success.json as { version?: string; revision?: string }
    items.push(pass(`GitLab reachable at ${config.url}`, `version ${v.version ?? "unknown"}`))

    const self = yield* Effect.result(client.get("/personal_access_tokens/self"))
    if (self._tag === "Success") {
      const token = self.success.json as { scopes?: ReadonlyArray<string>; expires_at?: string | null; active?: boolean }
      const scopes = token.scopes ?? []
      if (scopes.includes("read_api") || scopes.includes("api")) {
        items.push(pass("token valid with the read_api scope", `scopes: ${scopes.join(", ")}${token.expires_at ? `, expires ${token.expires_at}` : ""}`))
      } else {
        items.push(fail("token valid with the read_api scope", `the token's scopes are ${scopes.join(", ") || "none"} — create a token with read_api`))
      }
    } else if (self.failure._tag === "TokenRejected") {
      items.push(fail("token valid", "GitLab answered 401: the token is invalid, expired or revoked — create a new access token with the read_api scope"))
      return items
    } else {
      // OAuth tokens and older GitLab versions have no /personal_access_tokens/self.
      const user = yield* Effect.result(client.get("/user"))
      items.push(user._tag === "Success"
        ? pass("token valid", `user ${(user.success.json as { username?: string }).username ?? "?"}; scopes not visible for this token type`)
        : fail("token valid", `${errorText(user.failure)} — check the token and its read_api scope`))
    }

    const resolved = yield* Effect.result(Project.resolve(client))
    if (resolved._tag === "Failure") {
      items.push(fail("configured projects and groups resolve", errorText(resolved.failure)))
      return items
    }
    for (const e of resolved.success.errors) items.push(fail("project or group accessible", `${e} — check the link and that the token's user is a member (Reporter or higher)`))
    const projects = resolved.success.projects
    items.push(projects.length > 0
      ? pass(`${projects.length} project(s) accessible`, projects.slice(0, 10).map((p) => p.path_with_namespace).join(", ") + (projects.length > 10 ? ", …" : ""))
      : fail("at least one project accessible", "no project resolved — list repository links (https://host/group/project) or groups the token can read"))

    // Each entity endpoint, probed with one small request per project (first 20 projects).
    let graphqlProbed = !config.graphql
    for (const p of projects.slice(0, 20)) {
      const denied: Array<string> = []
      const probe = (path: string, what: string) =>
        Effect.result(client.get(path, { per_page: 1 })).pipe(Effect.map((r) => {
          if (r._tag === "Failure") denied.push(`${what}: ${errorText(r.failure)}`)
          return r
        }))
      const mrs = yield* probe(`/projects/${p.id}/merge_requests`, "merge requests")
      yield* probe(`/projects/${p.id}/pipelines`, "pipelines (CI/CD disabled? pipelines and deployments will be skipped)")
      yield* probe(`/projects/${p.id}/deployments`, "deployments")
      const first = mrs._tag === "Success" ? (mrs.success.json as ReadonlyArray<{ iid?: number }>)[0] : undefined
      if (first?.iid !== undefined) {
        for (const [path, what] of mrChildren) yield* probe(`/projects/${p.id}/merge_requests/${first.iid}/${path}`, what)
        if (!graphqlProbed) {
          // The batched query the sync uses for diff stats and commits, on one real MR.
          graphqlProbed = true
          const q = yield* Effect.result(MergeRequestDetails.fetch(client, Project.scopeOf(config.url, p), [first.iid]))
          items.push(q._tag === "Success" && q.success.get(first.iid)?.stat !== undefined
            ? pass("GraphQL answers the diff stats and commits query", `one request per ${config.graphqlBatchSize} changed MRs`)
            : warn(
              "GraphQL answers the diff stats and commits query",
              `${q._tag === "Failure" ? errorText(q.failure) : "no diff stats in the answer"} — the sync still works, reading them per MR over REST (about 2 more requests per changed MR); set graphql: false to skip this probe`
            ))
        }
      }
      items.push(denied.length === 0
        ? pass(`${p.path_with_namespace}: every entity endpoint permitted`)
        : fail(`${p.path_with_namespace}: entity endpoints permitted`, `${denied.join("; ")} — these entities will be skipped with a warning each run; give the token's user Reporter access or enable the feature`))
    }
    return items
  }))

export const run = (loaded: AppConfig.Loaded): Effect.Effect<ReadonlyArray<Item>> =>
  Effect.gen(function*() {
    const config = loaded.config
    const items: Array<Item> = [pass("configuration valid", loaded.files.length > 0 ? `read ${loaded.files.join(", ")}` : "from the environment")]

    // Keys, before anything that needs them.
    let keysOk = true
    if (config.mhq.publicKey === undefined) {
      keysOk = false
      items.push(fail("MHQ public key", "MHQ_PUBLIC_KEY is not set — ask your MHQ admin for the public key (standard base64 of 32 bytes)"))
    } else {
      try {
        Keys.parsePublicKey(Redacted.value(config.mhq.publicKey))
        items.push(pass("MHQ public key well-formed"))
      } catch (e) {
        keysOk = false
        items.push(fail("MHQ public key well-formed", errorText(e)))
      }
    }
    if (config.mhq.clientSecret === undefined || config.mhq.clientId === undefined) {
      keysOk = false
      items.push(fail("MHQ client id and secret", "set MHQ_CLIENT_ID and MHQ_CLIENT_SECRET as given by MHQ"))
    }

    // The database, with a real write.
    const dbItems = yield* Effect.scoped(Effect.gen(function*() {
      const context = yield* Layer.build(Agent.stagingLayer(config))
      return yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const info = yield* Database.DatabaseInfo
        const staging = yield* Staging.Staging
        const stamp = new Date().toISOString()
        yield* sql`INSERT INTO agent_state (key, value, updated_at) VALUES ('check', ${JSON.stringify({ at: stamp })}::jsonb, now())
          ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`
        const [row] = yield* sql<{ value: { at: string } }>`SELECT value FROM agent_state WHERE key = 'check'`
        const summary = yield* staging.summary
        const out: Array<Item> = [row?.value.at === stamp
          ? pass(`database writable`, `${info.backend}: ${info.target}`)
          : fail("database writable", "a written row did not read back")]
        if (summary.batches.failed > 0) {
          out.push(fail("no failed batches", `${summary.batches.failed} batch(es) failed permanently — see mhq-sync status, fix the cause, then mhq-sync replay --batch <id>`))
        }
        // The webhook: a real signed heartbeat.
        if (keysOk && config.mhq.webhookUrl !== undefined) {
          const beat = yield* Effect.scoped(Effect.gen(function*() {
            const hb = yield* Heartbeat.Heartbeat
            return yield* hb.beat()
          }).pipe(Effect.provide(Heartbeat.layerService().pipe(Layer.provide(Agent.sinkLayer(config))))))
          out.push(beat.ok
            ? pass(`webhook reachable and accepts signed requests`, `${config.mhq.webhookUrl.origin} answered ${beat.status}`)
            : fail("webhook reachable and accepts signed requests", `${beat.error ?? `status ${beat.status}`} — check MHQ_WEBHOOK_URL, network egress, and that MHQ_CLIENT_ID/MHQ_CLIENT_SECRET match what MHQ issued`))
        } else if (config.mhq.webhookUrl === undefined) {
          out.push(fail("webhook configured", "MHQ_WEBHOOK_URL is not set — the https URL MHQ gave you"))
        }
        return out
      }).pipe(Effect.provide(context))
    })).pipe(Effect.catch((e) => Effect.succeed<ReadonlyArray<Item>>([fail("database writable", errorText(e))])))
    items.push(...dbItems)

    // GitLab.
    const targets = yield* Effect.result(Agent.instances(config))
    if (targets._tag === "Failure") {
      items.push(...targets.failure.problems.map((p) => fail(`GitLab settings ${p.path}`, p.message)))
    } else if (targets.success.length === 0) {
      items.push(fail("GitLab configured", "set GITLAB_DOMAIN_URL and GITLAB_ACCESS_TOKEN, and list repositories in config.json"))
    } else {
      for (const target of targets.success) {
        const result = yield* Effect.result(gitlabItems(target))
        items.push(...(result._tag === "Success" ? result.success : [fail(`GitLab ${target.url}`, errorText(result.failure))]))
      }
    }
    return items
  })
