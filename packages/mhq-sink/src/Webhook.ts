/**
 * The signed POST to MHQ's webhook, shared by batches and heartbeats: adds the Standard Webhooks
 * signature, user-agent and replay headers, applies the request timeout and reads the answer.
 * Errors never carry the URL's query, the body, or the secret.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { Context, Data, Duration, Effect, Layer } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import * as Signature from "./Signature.ts"
import * as SinkConfig from "./SinkConfig.ts"
import * as WireProtocol from "./WireProtocol.ts"

export interface Message {
  /** webhook-id: the batch id or the heartbeat id. */
  readonly id: string
  /** The exact JSON body that is signed and sent. */
  readonly body: string
  readonly replay?: boolean | undefined
}

export interface Response {
  readonly status: number
  /** Milliseconds the server asked us to wait (Retry-After), if it said so. */
  readonly retryAfterMs: number | undefined
  /** The response body (for errors: what the server explained). */
  readonly body: string
}

/** The request did not get an answer: connection refused/reset, DNS, TLS, timeout. */
export class TransportError extends Data.TaggedError("TransportError")<{ readonly message: string }> {}

export interface Service {
  readonly post: (message: Message) => Effect.Effect<Response, TransportError>
}

export class Webhook extends Context.Service<Webhook, Service>()("@mhq-sync/mhq-sink/Webhook") {}

/** What a response status means for a batch (wire protocol v1). */
export type Verdict = "delivered" | "split" | "retry" | "failed"

export const classify = (status: number): Verdict => {
  if ((status >= 200 && status < 300) || status === 409) return "delivered"
  if (status === 413) return "split"
  if (status === 408 || status === 425 || status === 429 || status >= 500) return "retry"
  return "failed"
}

/** Retry-After as delta-seconds or an HTTP date; undefined when absent or unparsable. */
export const parseRetryAfter = (value: string | undefined, nowMs: number = Date.now()): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  const at = Date.parse(trimmed)
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs)
}

/** The first `bytes` bytes of a text (UTF-8). */
export const truncateBytes = (text: string, bytes: number): string => {
  const buf = Buffer.from(text, "utf8")
  return buf.length <= bytes ? text : buf.subarray(0, bytes).toString("utf8")
}

/** A short, secret-free description of a transport failure. */
const describe = (error: unknown, timeout: Duration.Duration): string => {
  if (typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "TimeoutError") {
    return `no answer within ${Duration.format(timeout)}`
  }
  const reason = (error as { reason?: { _tag?: string; cause?: unknown; description?: string } }).reason
  const cause = reason?.cause as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } } | undefined
  const code = cause?.code ?? cause?.cause?.code
  const message = cause?.cause?.message ?? cause?.message ?? reason?.description
  return [reason?._tag ?? "network error", typeof code === "string" ? code : undefined,
    typeof message === "string" ? message : undefined].filter(Boolean).join(": ")
}

export const make = Effect.gen(function*() {
  const settings = yield* SinkConfig.SinkConfig
  const client = yield* HttpClient.HttpClient
  const url = settings.webhookUrl.toString()
  const userAgent = WireProtocol.userAgent(settings.agentVersion)

  const post = (message: Message): Effect.Effect<Response, TransportError> => {
    const signed = Signature.sign({ secret: settings.clientSecret, id: message.id, body: message.body })
    const request = HttpClientRequest.post(url).pipe(
      HttpClientRequest.setHeaders({
        ...signed,
        [WireProtocol.headers.userAgent]: userAgent,
        ...(message.replay ? { [WireProtocol.headers.replay]: "1" } : {})
      }),
      HttpClientRequest.bodyText(message.body, "application/json")
    )
    return client.execute(request).pipe(
      Effect.flatMap((res) =>
        Effect.map(res.text, (body): Response => ({
          status: res.status,
          retryAfterMs: parseRetryAfter(res.headers["retry-after"]),
          body
        }))
      ),
      Effect.timeout(settings.requestTimeout),
      Effect.mapError((e) => new TransportError({ message: describe(e, settings.requestTimeout) }))
    )
  }
  return Webhook.of({ post })
})

/** Needs an HttpClient (see `layerHttp`). */
export const layer = Layer.effect(Webhook, make)

/** Effect HttpClient over undici 7 (TLS certificates verified by default). */
export const layerHttp: Layer.Layer<HttpClient.HttpClient> = NodeHttpClient.layerUndici

/** `layer` over `layerHttp`. */
export const layerLive: Layer.Layer<Webhook, never, SinkConfig.SinkConfig> = layer.pipe(Layer.provide(layerHttp))
