/**
 * A reference MHQ receiver on 127.0.0.1 (ephemeral port): verifies Standard Webhooks signatures
 * (401 on a bad signature or a timestamp older than 5 minutes), opens sealed batches and heartbeat
 * details with its private key, de-duplicates batches by id (409 for a repeated id, 200 for an
 * `mhq-replay: 1` re-send), and keeps everything it received for assertions. It can be told to
 * answer 5xx, 429 with Retry-After, 413 (scripted, or for bodies over N bytes), 409, 400, to hang or
 * to drop the connection, and hands out queued commands in heartbeat answers.
 *
 * Plain TS (`start(options): Promise<Handle>`) and a scoped Effect constructor (`make`).
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Keys, Receiver, type WireProtocol } from "@mhq-sync/mhq-sink"
import { Effect, type Scope } from "effect"

/** How to answer a request instead of processing it normally. */
export type Reply =
  | "accept"
  /** Keep the connection open and never answer. */
  | "hang"
  /** Process (store) the request, then never answer: the agent sees a timeout. */
  | "store-then-hang"
  /** Destroy the connection without an answer (a network error for the agent). */
  | "drop"
  | { readonly status: number; readonly body?: string | undefined; readonly retryAfter?: string | number | undefined }

export interface Options {
  /** MHQ_CLIENT_SECRET the agent signs with (default: a random one, see `Handle.secret`). */
  readonly secret?: string | undefined
  /** The admin key pair (default: a fresh one, see `Handle.publicKey`). */
  readonly keyPair?: Keys.KeyPair | undefined
  readonly toleranceSeconds?: number | undefined
  /** Answer 413 to batch bodies larger than this. */
  readonly maxBodyBytes?: number | undefined
  /** Port on 127.0.0.1 (default 0 = ephemeral). */
  readonly port?: number | undefined
}

export interface ReceivedBatch {
  readonly id: string
  readonly envelope: WireProtocol.BatchEnvelope
  readonly records: ReadonlyArray<WireProtocol.WireRecord>
  readonly receivedAt: Date
  /** How many times this id arrived and was accepted (first + replays). */
  deliveries: number
  replays: number
}

export interface ReceivedHeartbeat {
  readonly id: string
  readonly envelope: WireProtocol.HeartbeatEnvelope
  readonly details: WireProtocol.HeartbeatDetails
  readonly receivedAt: Date
}

export interface RequestLogEntry {
  readonly at: Date
  readonly method: string
  readonly path: string
  readonly headers: http.IncomingHttpHeaders
  readonly bytes: number
  readonly id: string | undefined
  readonly replay: boolean
  /** The answer given, or "hang" / "drop". */
  status: number | "hang" | "drop"
  error?: string
}

export interface CommandToSend {
  readonly id: string
  readonly command: string
  readonly parameters?: unknown
}

export interface Handle {
  /** Webhook URL to configure the agent with. */
  readonly url: string
  readonly port: number
  readonly secret: string
  readonly publicKey: string
  readonly privateKey: string
  /** Unique batches in arrival order. */
  readonly batches: ReadonlyArray<ReceivedBatch>
  /** Records of unique batches (a replay replaces nothing and adds nothing). */
  readonly records: ReadonlyArray<WireProtocol.WireRecord>
  readonly heartbeats: ReadonlyArray<ReceivedHeartbeat>
  readonly requests: ReadonlyArray<RequestLogEntry>
  /** Non-replay requests for an id already received (answered 409). */
  readonly duplicates: number
  /** Default answer for every request without a scripted one ("accept" = normal processing). */
  setReply(reply: Reply): void
  /** The next `times` requests (optionally only of one type) get `reply`. */
  scriptReply(reply: Reply, options?: { readonly times?: number; readonly only?: "batch" | "heartbeat" }): void
  setMaxBodyBytes(bytes: number | undefined): void
  /** Commands to include in heartbeat answers, each for `times` answers (default 1). */
  queueCommands(commands: ReadonlyArray<CommandToSend>, options?: { readonly times?: number }): void
  /** Resolves once `predicate` holds (polls every 10 ms); rejects after `timeoutMs`. */
  waitFor(predicate: (handle: Handle) => boolean, timeoutMs?: number): Promise<void>
  /** Forgets everything received and every scripted answer. */
  reset(): void
  close(): Promise<void>
}

const readBody = (req: http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })

const peekType = (body: Buffer): "batch" | "heartbeat" | undefined => {
  try {
    const t = (JSON.parse(body.toString("utf8")) as { type?: unknown }).type
    return t === "batch" || t === "heartbeat" ? t : undefined
  } catch {
    return undefined
  }
}

export const start = async (options: Options = {}): Promise<Handle> => {
  const keyPair = options.keyPair ?? Keys.generateKeyPair()
  const secret = options.secret ?? `test-secret-${Math.random().toString(36).slice(2)}`
  const batches: Array<ReceivedBatch> = []
  const byId = new Map<string, ReceivedBatch>()
  const records: Array<WireProtocol.WireRecord> = []
  const heartbeats: Array<ReceivedHeartbeat> = []
  const requests: Array<RequestLogEntry> = []
  const script: Array<{ reply: Reply; left: number; only: "batch" | "heartbeat" | undefined }> = []
  const commandQueue: Array<{ command: CommandToSend; left: number }> = []
  const hanging = new Set<http.ServerResponse>()
  let defaultReply: Reply = "accept"
  let maxBodyBytes = options.maxBodyBytes
  let duplicates = 0

  const nextScripted = (type: "batch" | "heartbeat" | undefined): Reply | undefined => {
    const i = script.findIndex((s) => s.only === undefined || s.only === type)
    if (i < 0) return undefined
    const s = script[i]!
    if (--s.left <= 0) script.splice(i, 1)
    return s.reply
  }

  const json = (res: http.ServerResponse, entry: RequestLogEntry, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}) => {
    entry.status = status
    const text = typeof body === "string" ? body : JSON.stringify(body)
    res.writeHead(status, { "content-type": typeof body === "string" ? "text/plain" : "application/json", ...headers })
    res.end(text)
  }

  /** Normal processing; returns false when the answer must be withheld (store-then-hang). */
  const process = async (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, entry: RequestLogEntry, answer: boolean) => {
    let received: Receiver.Received
    try {
      received = await Receiver.receive({
        headers: req.headers,
        body,
        secret,
        privateKey: keyPair.privateKey,
        toleranceSeconds: options.toleranceSeconds
      })
    } catch (e) {
      const status = e instanceof Receiver.ReceiveError ? e.status : 400
      entry.error = e instanceof Error ? e.message : String(e)
      return json(res, entry, status, { error: entry.error })
    }
    if (received.type === "heartbeat") {
      heartbeats.push({
        id: received.id,
        envelope: received.envelope,
        details: received.details as WireProtocol.HeartbeatDetails,
        receivedAt: new Date()
      })
      const commands: Array<CommandToSend> = []
      for (const c of commandQueue) {
        if (c.left > 0) {
          commands.push(c.command)
          c.left--
        }
      }
      if (answer) json(res, entry, 200, commands.length > 0 ? { commands } : {})
      return
    }
    const existing = byId.get(received.id)
    if (existing !== undefined && !received.replay) {
      duplicates++
      if (answer) json(res, entry, 409, { error: "already received", id: received.id })
      return
    }
    if (existing !== undefined) {
      existing.deliveries++
      existing.replays++
    } else {
      const batch: ReceivedBatch = {
        id: received.id,
        envelope: received.envelope,
        records: received.records,
        receivedAt: new Date(),
        deliveries: 1,
        replays: received.replay ? 1 : 0
      }
      batches.push(batch)
      byId.set(batch.id, batch)
      records.push(...received.records)
    }
    if (answer) json(res, entry, 200, { id: received.id, records: received.records.length })
  }

  const server = http.createServer((req, res) => {
    void (async () => {
      const body = await readBody(req)
      const id = req.headers["webhook-id"]
      const entry: RequestLogEntry = {
        at: new Date(),
        method: req.method ?? "",
        path: req.url ?? "",
        headers: req.headers,
        bytes: body.length,
        id: typeof id === "string" ? id : undefined,
        replay: req.headers["mhq-replay"] === "1",
        status: 0
      }
      requests.push(entry)
      const type = peekType(body)
      const reply = nextScripted(type) ?? defaultReply
      if (reply === "hang" || reply === "store-then-hang") {
        entry.status = "hang"
        hanging.add(res)
        res.on("close", () => hanging.delete(res))
        if (reply === "store-then-hang") await process(req, res, body, entry, false)
        entry.status = "hang"
        return
      }
      if (reply === "drop") {
        entry.status = "drop"
        req.socket.destroy()
        return
      }
      if (typeof reply === "object") {
        const headers: http.OutgoingHttpHeaders = reply.retryAfter === undefined ? {} : { "retry-after": String(reply.retryAfter) }
        return json(res, entry, reply.status, reply.body === undefined ? { error: `scripted ${reply.status}` } : reply.body, headers)
      }
      if (req.method !== "POST") return json(res, entry, 405, { error: "POST only" })
      if (type === "batch" && maxBodyBytes !== undefined && body.length > maxBodyBytes) {
        return json(res, entry, 413, { error: `body of ${body.length} bytes exceeds ${maxBodyBytes}` })
      }
      await process(req, res, body, entry, true)
    })().catch((e) => {
      if (!res.headersSent) {
        res.writeHead(500)
        res.end(String(e))
      }
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve())
  })
  const port = (server.address() as AddressInfo).port

  const handle: Handle = {
    url: `http://127.0.0.1:${port}/mhq/webhook`,
    port,
    secret,
    publicKey: keyPair.publicKey,
    privateKey: keyPair.privateKey,
    batches,
    records,
    heartbeats,
    requests,
    get duplicates() {
      return duplicates
    },
    setReply: (reply) => {
      defaultReply = reply
    },
    scriptReply: (reply, o = {}) => {
      script.push({ reply, left: o.times ?? 1, only: o.only })
    },
    setMaxBodyBytes: (bytes) => {
      maxBodyBytes = bytes
    },
    queueCommands: (commands, o = {}) => {
      for (const command of commands) commandQueue.push({ command, left: o.times ?? 1 })
    },
    waitFor: (predicate, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const deadline = Date.now() + timeoutMs
        const tick = () => {
          if (predicate(handle)) return resolve()
          if (Date.now() > deadline) return reject(new Error(`ReferenceReceiver.waitFor: condition not met within ${timeoutMs} ms`))
          setTimeout(tick, 10)
        }
        tick()
      }),
    reset: () => {
      batches.length = 0
      byId.clear()
      records.length = 0
      heartbeats.length = 0
      requests.length = 0
      script.length = 0
      commandQueue.length = 0
      duplicates = 0
      defaultReply = "accept"
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy()
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
  return handle
}

/** The receiver as a scoped resource: closed when the scope closes. */
export const make = (options: Options = {}): Effect.Effect<Handle, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => start(options)),
    (handle) => Effect.promise(() => handle.close())
  )
