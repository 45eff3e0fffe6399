/**
 * THE one place every request to a GitLab instance goes through: authentication, TLS and proxy,
 * politeness (concurrency limit, requests-per-minute pacing, 429 / RateLimit-* handling), retries
 * with the shared `Backoff` policy, and the one paginator. Tokens live in request headers only and
 * never reach a log line or an error message.
 */
import * as fs from "node:fs"
import * as tls from "node:tls"
import { NodeHttpClient } from "@effect/platform-node"
import { Backoff } from "@mhq-sync/core"
import { Context, Data, Duration, Effect, Metric, Option, Redacted, Semaphore, Stream } from "effect"
import { Headers, HttpClient, HttpClientRequest } from "effect/http"
import { Agent, type Dispatcher, EnvHttpProxyAgent } from "undici"
import * as InstanceConfig from "./InstanceConfig.ts"

// ---------------------------------------------------------------------------------------------
// Errors (all carry plain strings only: never a request object, so never a header)

/** 401: the token is not accepted. Fatal for the whole instance. */
export class TokenRejected extends Data.TaggedError("TokenRejected")<{ readonly instance: string; readonly url: string }> {
  override get message() {
    return `GitLab ${this.instance} answered 401 Unauthorized for ${this.url}: token invalid, expired or revoked. ` +
      `Create a new token with the read_api scope and update the instance settings.`
  }
}

/** 403/404 on an endpoint a project does not offer (CI disabled, approvals on CE, no repository). */
export class EntityUnavailable extends Data.TaggedError("EntityUnavailable")<{
  readonly instance: string
  readonly url: string
  readonly status: number
  readonly detail: string
}> {
  override get message() {
    return `${this.url} answered ${this.status}${this.detail ? ` (${this.detail})` : ""}: not available for this project or token`
  }
}

/** TLS verification failed: retrying cannot help, the configuration must change. */
export class TlsFailure extends Data.TaggedError("TlsFailure")<{ readonly instance: string; readonly url: string; readonly code: string; readonly detail: string }> {
  override get message() {
    return `TLS verification failed for ${this.url} (${this.code}: ${this.detail}). If ${this.instance} uses a private or ` +
      `self-signed certificate, set caFile to the PEM file of its CA (insecureSkipVerify exists but is not recommended).`
  }
}

/** A request that did not succeed: retries exhausted (5xx, timeouts, connection errors) or a 4xx. */
export class RequestFailed extends Data.TaggedError("RequestFailed")<{
  readonly instance: string
  readonly url: string
  readonly attempts: number
  readonly status?: number | undefined
  readonly detail: string
  /** Default GET; POST for GraphQL. */
  readonly method?: string | undefined
}> {
  override get message() {
    return `${this.method ?? "GET"} ${this.url} failed after ${this.attempts} attempt(s)${this.status === undefined ? "" : ` (last status ${this.status})`}: ${this.detail}`
  }
}

/** A 200 whose body is not the JSON we asked for (e.g. truncated), even after retries. */
export class MalformedResponse extends Data.TaggedError("MalformedResponse")<{
  readonly instance: string
  readonly url: string
  readonly attempts: number
  readonly detail: string
  /** The body as received (capped), for the quarantine. */
  readonly raw: string
  readonly method?: string | undefined
}> {
  override get message() {
    return `${this.method ?? "GET"} ${this.url} returned malformed JSON after ${this.attempts} attempt(s): ${this.detail}`
  }
}

export type GitlabError = TokenRejected | EntityUnavailable | TlsFailure | RequestFailed | MalformedResponse

// ---------------------------------------------------------------------------------------------
// Request accounting per scope (e.g. per project): provide a counter, the client bumps it.

export interface Counter {
  requests: number
  pages: number
}
export const RequestCounter = Context.Reference<Counter | undefined>("@mhq-sync/gitlab-source/RequestCounter", {
  defaultValue: () => undefined
})
export const newCounter = (): Counter => ({ requests: 0, pages: 0 })

// ---------------------------------------------------------------------------------------------
// Model

export type Params = { readonly [key: string]: string | number | boolean | undefined }

export interface Fetched {
  readonly url: string
  readonly status: number
  readonly headers: { readonly [key: string]: string }
  readonly json: unknown
  readonly text: string
}

export interface Page {
  /** Where the page came from, e.g. "GET https://host/api/v4/projects/1/merge_requests?page=2". */
  readonly origin: string
  readonly items: ReadonlyArray<unknown>
  readonly index: number
}

export interface Options {
  /** Retry policy for 5xx/timeouts/connection errors and malformed pages. */
  readonly backoff?: Backoff.Options | undefined
  /** Retries after the first attempt for 5xx/timeouts/connection errors. */
  readonly retries?: number | undefined
  /** Retries of a 200 whose JSON does not parse (truncated page). */
  readonly malformedRetries?: number | undefined
  /** Consecutive 429s tolerated for one request before giving up. */
  readonly rateLimitedRetries?: number | undefined
  readonly perPage?: number | undefined
}

export interface GitlabClient {
  /** Normalised instance base URL (identity of the instance in staged records). */
  readonly instance: string
  readonly config: InstanceConfig.InstanceConfig
  /** GET `path` (relative to /api/v4, or an absolute URL on this instance) → parsed JSON. */
  readonly get: (path: string, params?: Params) => Effect.Effect<Fetched, GitlabError>
  /**
   * All pages of a list endpoint (per_page=100; keyset Link when `params.pagination === "keyset"`).
   * Lists with `order_by=updated_at&sort=asc` are walked by `updated_after` time window (items
   * updated during the walk cannot shift past a page boundary unseen), each item emitted once.
   */
  readonly paginate: (path: string, params?: Params) => Stream.Stream<Page, GitlabError>
  /**
   * POST a query to the instance's GraphQL endpoint (`/api/graphql`) with the same token,
   * politeness and retries as `get`. The JSON answer may still carry GraphQL `errors`: those are
   * the caller's to read (see `MergeRequestDetails`).
   */
  readonly graphql: (query: string, variables: { readonly [key: string]: unknown }) => Effect.Effect<Fetched, GitlabError>
  /** Requests sent so far (every attempt counts). */
  readonly requests: Effect.Effect<number>
}

export const defaults = {
  backoff: { base: "500 millis", cap: "30 seconds", factor: 2 } satisfies Backoff.Options,
  retries: 5,
  malformedRetries: 2,
  rateLimitedRetries: 20,
  perPage: 100
}

// ---------------------------------------------------------------------------------------------
// Transport: undici dispatcher with the instance's TLS and proxy settings

const proxyFromEnv = () =>
  process.env.https_proxy ?? process.env.HTTPS_PROXY ?? process.env.http_proxy ?? process.env.HTTP_PROXY

/** The undici dispatcher for an instance (custom CA, insecure mode, explicit or environment proxy). */
export const makeDispatcher = (config: InstanceConfig.InstanceConfig): Effect.Effect<Dispatcher, RequestFailed, import("effect").Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        const connect: { ca?: Array<string>; rejectUnauthorized?: boolean } = {}
        if (config.caFile !== undefined) {
          // `ca` replaces the default trust store: keep the public roots next to the private CA.
          connect.ca = [...tls.rootCertificates, fs.readFileSync(config.caFile, "utf8")]
        }
        if (config.insecureSkipVerify) connect.rejectUnauthorized = false
        if (config.proxy !== undefined || proxyFromEnv() !== undefined) {
          return new EnvHttpProxyAgent({
            connect,
            requestTls: connect,
            ...(config.proxy === undefined ? {} : { httpProxy: config.proxy, httpsProxy: config.proxy })
          }) as Dispatcher
        }
        return new Agent({ connect }) as Dispatcher
      },
      catch: (e) =>
        new RequestFailed({
          instance: config.url,
          url: config.url,
          attempts: 0,
          detail: config.caFile !== undefined && String(e).includes(config.caFile)
            ? `cannot read caFile ${config.caFile}: ${(e as Error).message}`
            : `cannot set up the HTTP client: ${(e as Error).message}`
        })
    }),
    (d) => Effect.promise(() => d.destroy().catch(() => undefined))
  )

const tlsCodes = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_GET_ISSUER_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "ERR_SSL_WRONG_VERSION_NUMBER"
])

/** Walks an error's cause chain for a Node error code and message. */
const rootCause = (e: unknown): { code: string | undefined; message: string } => {
  let current: unknown = e
  let code: string | undefined
  let message = String((e as Error)?.message ?? e)
  for (let depth = 0; depth < 8 && current !== null && typeof current === "object"; depth++) {
    const c = current as { code?: unknown; message?: unknown; cause?: unknown }
    if (typeof c.code === "string") {
      code = c.code
      if (typeof c.message === "string") message = c.message
    } else if (code === undefined && typeof c.message === "string" && c.message !== "") message = c.message
    current = c.cause
  }
  return { code, message }
}

// ---------------------------------------------------------------------------------------------
// Header helpers

/** `<url>; rel="next"` from a Link header. */
export const linkNext = (link: string | undefined): string | undefined => {
  if (!link) return undefined
  for (const part of link.split(",")) {
    const m = /<([^>]+)>\s*;\s*rel="?([^";]+)"?/.exec(part.trim())
    if (m && m[2]!.split(/\s+/).includes("next")) return m[1]
  }
  return undefined
}

/** Milliseconds to wait from Retry-After (seconds or HTTP date) or RateLimit-Reset (epoch seconds). */
export const retryAfterMillis = (headers: { readonly [k: string]: string | undefined }, now: number): number | undefined => {
  const ra = headers["retry-after"]
  if (ra !== undefined && ra.trim() !== "") {
    const secs = Number(ra)
    if (Number.isFinite(secs)) return Math.max(0, secs * 1000)
    const at = Date.parse(ra)
    if (!Number.isNaN(at)) return Math.max(0, at - now)
  }
  const reset = Number(headers["ratelimit-reset"])
  if (Number.isFinite(reset) && reset > 0) return Math.max(0, reset * 1000 - now)
  return undefined
}

/** A list item's `id` as a string (for de-duplication), if it has one. */
const idOf = (item: unknown): string | undefined => {
  const id = item !== null && typeof item === "object" ? (item as { id?: unknown }).id : undefined
  return typeof id === "number" || typeof id === "string" ? String(id) : undefined
}

const updatedAtOf = (item: unknown): string | undefined => {
  const at = item !== null && typeof item === "object" ? (item as { updated_at?: unknown }).updated_at : undefined
  return typeof at === "string" ? at : undefined
}

const cap = (s: string, n: number) => (s.length <= n ? s : `${s.slice(0, n)}…`)

/** GitLab error bodies: {"message": ...} or {"error": ...}; HTML pages reduced to nothing. */
const errorDetail = (text: string): string => {
  try {
    const j = JSON.parse(text) as { message?: unknown; error?: unknown; error_description?: unknown }
    const m = j.message ?? j.error_description ?? j.error
    return typeof m === "string" ? cap(m, 200) : cap(JSON.stringify(m ?? ""), 200)
  } catch {
    return /^\s*</.test(text) ? "" : cap(text.trim(), 200)
  }
}

// ---------------------------------------------------------------------------------------------
// The client

/** The token headers, which Effect's default redaction list (`authorization`, cookies) lacks one of. */
export const tokenHeaderNames: ReadonlyArray<string> = ["private-token", "authorization"]

const withTokenHeaders = (names: ReadonlyArray<string | RegExp>): ReadonlyArray<string | RegExp> => [
  ...names,
  ...tokenHeaderNames.filter((t) => !Headers.isRedactedName(t, names))
]

/**
 * Runs `self` with the token headers in `Headers.CurrentRedactedNames`, so a request or an
 * HttpClientError rendered (logged, traced, JSON-encoded, inspected) inside shows no token.
 * The client applies it to its own operations; `Sync.run` applies it to the whole sync.
 */
export const withRedaction = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const names = yield* Headers.CurrentRedactedNames
    return yield* Effect.provideService(self, Headers.CurrentRedactedNames, withTokenHeaders(names))
  })

/** The GET request for `url` with the instance's token header (`PRIVATE-TOKEN` or `Authorization: Bearer`). */
export const authorizedGet = (config: InstanceConfig.InstanceConfig, url: string): HttpClientRequest.HttpClientRequest =>
  HttpClientRequest.get(url).pipe(
    config.authKind === "oauth"
      ? HttpClientRequest.setHeader("authorization", `Bearer ${Redacted.value(config.token)}`)
      : HttpClientRequest.setHeader("private-token", Redacted.value(config.token)),
    HttpClientRequest.acceptJson
  )

/** The GraphQL POST of `body` (JSON) with the instance's token header. */
export const authorizedPost = (config: InstanceConfig.InstanceConfig, url: string, body: string): HttpClientRequest.HttpClientRequest =>
  authorizedGet(config, url).pipe(
    HttpClientRequest.setMethod("POST"),
    HttpClientRequest.bodyText(body, "application/json")
  )

/** Request metrics (rendered by the runner at /metrics): by instance, endpoint template and status. */
export const metrics = {
  requests: Metric.counter("mhq_gitlab_requests_total", { description: "Requests sent to GitLab by instance, endpoint and status (error = no response)" }),
  rateLimitWaits: Metric.counter("mhq_gitlab_rate_limit_waits_total", { description: "Pauses of all requests to an instance after a 429" }),
  rateLimitWaitSeconds: Metric.counter("mhq_gitlab_rate_limit_wait_seconds_total", { description: "Seconds paused after 429 answers" })
}

/** `/api/v4/projects/12/merge_requests/3/notes?page=2` -> `/projects/:id/merge_requests/:id/notes` (bounded label values). */
export const endpointOf = (url: string, apiBase: string): string =>
  url.slice(apiBase.length).split("?")[0]!.replace(/\/(?:\d+|[^/]*%2F[^/]*)(?=\/|$)/gi, "/:id")

/** A client for one instance over the given undici dispatcher (see `make` for the usual setup). */
export const makeWith = (
  config: InstanceConfig.InstanceConfig,
  dispatcher: Dispatcher,
  options: Options = {}
): Effect.Effect<GitlabClient> =>
  Effect.gen(function*() {
    const instance = config.url
    const apiBase = `${instance}/api/v4`
    const graphqlUrl = `${instance}/api/graphql`
    const endpointLabel = (url: string) => url === graphqlUrl ? "/graphql" : endpointOf(url, apiBase)
    const backoff = options.backoff ?? defaults.backoff
    const retries = options.retries ?? defaults.retries
    const malformedRetries = options.malformedRetries ?? defaults.malformedRetries
    const rateLimitedRetries = options.rateLimitedRetries ?? defaults.rateLimitedRetries
    const perPage = options.perPage ?? defaults.perPage
    const timeout = InstanceConfig.timeoutMillis(config)

    const http = (yield* NodeHttpClient.makeUndici.pipe(Effect.provideService(NodeHttpClient.Dispatcher, dispatcher as never)))
    // Header names redacted whenever a request (or an HttpClientError carrying it) is rendered
    // inside the client's operations: the app's list plus the two token headers.
    const redacted = withTokenHeaders(yield* Headers.CurrentRedactedNames)
    const redacting = <A, E>(self: Effect.Effect<A, E>) => Effect.provideService(self, Headers.CurrentRedactedNames, redacted)

    const semaphore = yield* Semaphore.make(config.concurrency)
    // Politeness state shared by every request to this instance.
    const spacing = 60_000 / config.requestsPerMinute
    let nextSlot = 0
    let pausedUntil = 0
    let total = 0
    let rejected: TokenRejected | undefined

    /** Waits for this request's slot: even spacing at requestsPerMinute, plus any 429/low-budget pause. */
    const pace = Effect.suspend(() => {
      const now = Date.now()
      const at = Math.max(now, nextSlot)
      nextSlot = at + spacing
      // Sub-millisecond waits are not worth a timer (which would cost at least 1 ms).
      return at - now >= 1 ? Effect.sleep(Duration.millis(at - now)) : Effect.void
    }).pipe(
      Effect.andThen(Effect.suspend(function loop(): Effect.Effect<void> {
        const wait = pausedUntil - Date.now()
        return wait > 0 ? Effect.sleep(Duration.millis(wait)).pipe(Effect.andThen(Effect.suspend(loop))) : Effect.void
      }))
    )

    const pauseFor = (ms: number) => {
      pausedUntil = Math.max(pausedUntil, Date.now() + ms)
    }

    /** Slows down when GitLab reports a nearly spent budget: spread what is left until the reset. */
    const observeBudget = (headers: { readonly [k: string]: string }) => {
      const remaining = Number(headers["ratelimit-remaining"])
      const limit = Number(headers["ratelimit-limit"])
      const reset = Number(headers["ratelimit-reset"])
      if (!Number.isFinite(remaining) || !Number.isFinite(reset)) return
      const low = Math.max(config.concurrency * 2, Number.isFinite(limit) ? limit * 0.05 : 0)
      if (remaining <= low) {
        const untilReset = reset * 1000 - Date.now()
        if (untilReset > 0) pauseFor(Math.min(untilReset, untilReset / Math.max(1, remaining)))
      }
    }

    const resolveUrl = (path: string, params: Params | undefined): string => {
      const url = path.startsWith("http://") || path.startsWith("https://") ? new URL(path) : new URL(`${apiBase}${path}`)
      for (const [k, v] of Object.entries(params ?? {})) if (v !== undefined) url.searchParams.set(k, String(v))
      return url.toString()
    }

    type Attempt =
      | { readonly _tag: "ok"; readonly url: string; readonly status: number; readonly headers: Fetched["headers"]; readonly text: string }
      | { readonly _tag: "retry"; readonly status?: number; readonly detail: string; readonly waitMs?: number; readonly rateLimited?: boolean; readonly malformed?: string }
      | { readonly _tag: "fail"; readonly error: GitlabError }

    /** One attempt: holds a concurrency permit only while the request is on the wire. */
    const attempt = (url: string, request: HttpClientRequest.HttpClientRequest): Effect.Effect<Attempt> =>
      semaphore.withPermit(
        Effect.gen(function*() {
          yield* pace
          // After a 401 nothing more is sent to this instance: the token is dead for everyone.
          if (rejected !== undefined) return { _tag: "fail", error: rejected } as const
          total++
          const counter = yield* RequestCounter
          if (counter) counter.requests++
          const outcome = yield* http.execute(request).pipe(
            Effect.flatMap((res) => Effect.map(res.text, (text) => ({ res, text }))),
            Effect.timeout(Duration.millis(timeout)),
            Effect.result
          )
          if (outcome._tag === "Failure") {
            const e = outcome.failure as unknown
            if ((e as { _tag?: string })._tag === "TimeoutError") {
              return { _tag: "retry", detail: `no complete response within ${Duration.format(config.requestTimeout)}` } as const
            }
            yield* Metric.update(Metric.withAttributes(metrics.requests, { instance, endpoint: endpointLabel(url), status: "error" }), 1)
            const { code, message } = rootCause((e as { reason?: { cause?: unknown } }).reason?.cause ?? e)
            if (code !== undefined && (tlsCodes.has(code) || code.startsWith("ERR_TLS") || code.startsWith("ERR_SSL"))) {
              return { _tag: "fail", error: new TlsFailure({ instance, url, code, detail: message }) } as const
            }
            return { _tag: "retry", detail: `connection error${code ? ` ${code}` : ""}: ${message}` } as const
          }
          const { res, text } = outcome.success
          const headers = res.headers as { readonly [k: string]: string }
          observeBudget(headers)
          const status = res.status
          yield* Metric.update(Metric.withAttributes(metrics.requests, { instance, endpoint: endpointLabel(url), status: String(status) }), 1)
          if (status >= 200 && status < 300) return { _tag: "ok", url, status, headers, text } as const
          if (status === 401) {
            rejected ??= new TokenRejected({ instance, url })
            return { _tag: "fail", error: rejected } as const
          }
          if (status === 403 || status === 404) {
            return { _tag: "fail", error: new EntityUnavailable({ instance, url, status, detail: errorDetail(text) }) } as const
          }
          if (status === 429) {
            return {
              _tag: "retry",
              status,
              rateLimited: true,
              detail: "rate limited (429)",
              ...(Option.fromNullishOr(retryAfterMillis(headers, Date.now())).pipe(Option.match({ onNone: () => ({}), onSome: (waitMs) => ({ waitMs }) })))
            } as const
          }
          if (status >= 500 || status === 408) return { _tag: "retry", status, detail: `server error ${status}${errorDetail(text) ? `: ${errorDetail(text)}` : ""}` } as const
          return { _tag: "fail", error: new RequestFailed({ instance, url, attempts: 1, status, detail: errorDetail(text) || `status ${status}` }) } as const
        })
      )

    const get = (path: string, params?: Params): Effect.Effect<Fetched, GitlabError> =>
      Effect.suspend(() => {
        const url = resolveUrl(path, params)
        if (!url.startsWith(`${apiBase}/`)) {
          return Effect.fail(new RequestFailed({ instance, url, attempts: 0, detail: `refusing to follow a URL outside ${apiBase}` }))
        }
        return send("GET", url, authorizedGet(config, url))
      })

    const graphql = (query: string, variables: { readonly [key: string]: unknown }): Effect.Effect<Fetched, GitlabError> =>
      Effect.suspend(() => send("POST", graphqlUrl, authorizedPost(config, graphqlUrl, JSON.stringify({ query, variables }))))

    /** One request with the retry policy: 5xx/timeouts/connection errors, 429 waits, malformed JSON. */
    const send = (method: string, url: string, request: HttpClientRequest.HttpClientRequest): Effect.Effect<Fetched, GitlabError> =>
      redacting(Effect.gen(function*() {
        let failures = 0
        let parsed: unknown = null
        let malformed = 0
        let limited = 0
        for (let n = 1;; n++) {
          // JSON is parsed after the concurrency permit is released, so the next request can start.
          const a = yield* Effect.map(attempt(url, request), (a): Attempt => {
            if (a._tag !== "ok") return a
            try {
              parsed = a.text === "" ? null : JSON.parse(a.text)
              return a
            } catch (e) {
              return { _tag: "retry", status: a.status, detail: `invalid JSON: ${(e as Error).message}`, malformed: a.text }
            }
          })
          if (a._tag === "ok") return { url: a.url, status: a.status, headers: a.headers, text: a.text, json: parsed }
          if (a._tag === "fail") {
            return yield* Effect.fail(a.error._tag === "RequestFailed" ? new RequestFailed({ ...a.error, attempts: n, method }) : a.error)
          }
          if (a.rateLimited) {
            if (++limited > rateLimitedRetries) {
              return yield* Effect.fail(new RequestFailed({ instance, url, attempts: n, status: 429, detail: `still rate limited after ${limited - 1} waits`, method }))
            }
            const wait = a.waitMs ?? Duration.toMillis(Backoff.delay(limited - 1, backoff))
            pauseFor(wait)
            yield* Metric.update(Metric.withAttributes(metrics.rateLimitWaits, { instance }), 1)
            yield* Metric.update(Metric.withAttributes(metrics.rateLimitWaitSeconds, { instance }), wait / 1000)
            yield* Effect.logWarning(`GitLab rate limit (429) on ${url}: pausing all requests to ${instance} for ${Math.ceil(wait)} ms`)
            continue // the pause applies to every request through `pace`
          }
          if (a.malformed !== undefined) {
            if (++malformed > malformedRetries) {
              return yield* Effect.fail(new MalformedResponse({ instance, url, attempts: n, detail: a.detail, raw: cap(a.malformed, 256 * 1024), method }))
            }
            yield* Effect.logWarning(`malformed JSON from ${url} (attempt ${n}): ${a.detail}; retrying`)
            yield* Effect.sleep(Backoff.delay(malformed - 1, backoff))
            continue
          }
          if (++failures > retries) {
            return yield* Effect.fail(new RequestFailed({ instance, url, attempts: n, status: a.status, detail: a.detail, method }))
          }
          const wait = Backoff.delay(failures - 1, backoff)
          yield* Effect.logWarning(`${method} ${url} failed (${a.detail}); retry ${failures}/${retries} in ${Duration.format(wait)}`)
          yield* Effect.sleep(wait)
        }
      }))

    /** The next offset page from `x-next-page` (or `Link: rel="next"` when the header is absent). */
    const nextOffsetPage = (url: string, headers: Fetched["headers"], keyset: boolean): string | undefined => {
      const header = headers["x-next-page"]
      if (keyset || header === undefined) return linkNext(headers["link"])
      if (header.trim() === "") return undefined
      const u = new URL(url)
      u.searchParams.set("page", header.trim())
      return u.toString()
    }

    /** One list page: counted, and refused unless the body is a JSON array. */
    const fetchPage = (url: string) =>
      Effect.gen(function*() {
        const fetched = yield* get(url)
        const counter = yield* RequestCounter
        if (counter) counter.pages++
        if (!Array.isArray(fetched.json)) {
          return yield* Effect.fail(new MalformedResponse({ instance, url, attempts: 1, detail: "expected a JSON array", raw: cap(fetched.text, 64 * 1024) }))
        }
        return { headers: fetched.headers, items: fetched.json as ReadonlyArray<unknown> }
      })

    const offsetPaginate = (first: string, keyset: boolean): Stream.Stream<Page, GitlabError> =>
      Stream.paginate({ url: first, index: 0 }, ({ url, index }) =>
        Effect.map(fetchPage(url), ({ headers, items }) => {
          // An empty page ends the list whatever the headers say (never trust totals).
          const next = items.length === 0 ? undefined : nextOffsetPage(url, headers, keyset)
          const page: Page = { origin: `GET ${url}`, items, index }
          return [[page], next === undefined ? Option.none() : Option.some({ url: next, index: index + 1 })] as const
        }))

    /**
     * Lists ordered by `updated_at` ascending, walked by time window instead of by offset: an item
     * updated during the walk moves to the end of the list, so with `page=N` every later item
     * shifts back one place and the one at the next page boundary would never be seen. After each
     * full page the list is asked again from `updated_after = <last item's updated_at> - 1 s`,
     * page 1 (the second covers inclusive and strict `updated_after` and sub-second times); items
     * already emitted in this walk are dropped by id. When the window does not move (more than a
     * page of items within one second) the next offset page of the same window is read instead.
     * The walk ends on a short or empty page, or when GitLab reports no next page.
     */
    const windowPaginate = (first: string): Stream.Stream<Page, GitlabError> =>
      Stream.suspend(() => {
        const seen = new Set<string>()
        const start = Date.parse(new URL(first).searchParams.get("updated_after") ?? "")
        return Stream.paginate({ url: first, index: 0, after: Number.isNaN(start) ? undefined : start }, ({ url, index, after }) =>
          Effect.map(fetchPage(url), ({ headers, items }) => {
            const fresh = items.filter((item) => {
              const id = idOf(item)
              if (id === undefined) return true
              if (seen.has(id)) return false
              seen.add(id)
              return true
            })
            const page: Page = { origin: `GET ${url}`, items: fresh, index }
            const size = Number(headers["x-per-page"]) > 0 ? Number(headers["x-per-page"]) : perPage
            const offsetNext = nextOffsetPage(url, headers, false)
            if (items.length < size || offsetNext === undefined) return [[page], Option.none()] as const
            const last = Date.parse(updatedAtOf(items[items.length - 1]) ?? "")
            const nextAfter = last - 1000
            if (Number.isNaN(last) || (after !== undefined && nextAfter <= after)) {
              return [[page], Option.some({ url: offsetNext, index: index + 1, after })] as const
            }
            const u = new URL(url)
            u.searchParams.set("updated_after", new Date(nextAfter).toISOString())
            u.searchParams.set("page", "1")
            return [[page], Option.some({ url: u.toString(), index: index + 1, after: nextAfter })] as const
          }))
      })

    const paginate = (path: string, params?: Params): Stream.Stream<Page, GitlabError> => {
      const keyset = params?.["pagination"] === "keyset"
      const first = resolveUrl(path, { per_page: perPage, ...params })
      return !keyset && params?.["order_by"] === "updated_at" && params?.["sort"] === "asc"
        ? windowPaginate(first)
        : offsetPaginate(first, keyset)
    }

    return { instance, config, get, paginate, graphql, requests: Effect.sync(() => total) } satisfies GitlabClient
  })

/** A client with its own undici dispatcher (closed with the scope); warns when TLS checks are off. */
export const make = (config: InstanceConfig.InstanceConfig, options: Options = {}) =>
  Effect.gen(function*() {
    if (config.insecureSkipVerify) {
      yield* Effect.logWarning(
        `TLS certificate verification is DISABLED for ${config.url} (insecureSkipVerify). Anyone between this agent and ` +
          `GitLab can read the token and data; set caFile to your CA's PEM file instead.`
      )
    }
    const dispatcher = yield* makeDispatcher(config)
    return yield* makeWith(config, dispatcher, options)
  })
