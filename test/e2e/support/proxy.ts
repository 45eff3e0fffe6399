/**
 * Test-side HTTP plumbing on 127.0.0.1:
 * - `startGitlabProxy`: a forward proxy for one agent (its GITLAB_PROXY). It accepts CONNECT
 *   tunnels (undici's default) and plain absolute-URI requests, and serves the tunnelled HTTP itself
 *   so every request is seen: start, end, path, status. That tells two agents' requests apart.
 * - `startDelayingForwarder`: forwards webhook POSTs to the receiver after a delay (a slower MHQ).
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import type * as net from "node:net"

export interface ProxiedRequest {
  readonly agent: string
  readonly start: number
  end: number
  readonly method: string
  /** Path and query as sent to GitLab. */
  readonly path: string
  status: number
}

export interface GitlabProxy {
  readonly url: string
  readonly requests: Array<ProxiedRequest>
  close(): Promise<void>
}

const allowed = (host: string) => /^127\.0\.0\.1:\d+$/.test(host)

export const startGitlabProxy = async (agent: string): Promise<GitlabProxy> => {
  const requests: Array<ProxiedRequest> = []
  const upstream = new http.Agent({ keepAlive: true })
  const sockets = new Set<net.Socket>()

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, host: string, path: string) => {
    if (!allowed(host)) {
      res.writeHead(403)
      res.end("only 127.0.0.1 targets")
      return
    }
    const entry: ProxiedRequest = { agent, start: Date.now(), end: 0, method: req.method ?? "GET", path, status: 0 }
    requests.push(entry)
    const [hostname, port] = host.split(":")
    const headers = { ...req.headers }
    delete headers["proxy-connection"]
    const out = http.request({ hostname, port: Number(port), method: req.method, path, headers, agent: upstream }, (up) => {
      entry.status = up.statusCode ?? 0
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
      up.on("end", () => (entry.end = Date.now()))
    })
    out.on("error", (e) => {
      entry.end = Date.now()
      if (!res.headersSent) res.writeHead(502)
      res.end(String(e))
    })
    req.pipe(out)
  }

  // Serves the HTTP inside CONNECT tunnels.
  const inner = http.createServer((req, res) => forward(req, res, req.headers.host ?? "", req.url ?? "/"))
  const outer = http.createServer((req, res) => {
    // Absolute-URI form (a proxy without tunnelling).
    try {
      const u = new URL(req.url ?? "")
      forward(req, res, u.host, `${u.pathname}${u.search}`)
    } catch {
      res.writeHead(400)
      res.end()
    }
  })
  outer.on("connection", (s: net.Socket) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  })
  outer.on("connect", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    if (!allowed(req.url ?? "")) {
      socket.end("HTTP/1.1 403 Forbidden\r\n\r\n")
      return
    }
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n")
    if (head.length > 0) socket.unshift(head)
    inner.emit("connection", socket)
  })
  await new Promise<void>((resolve) => outer.listen(0, "127.0.0.1", () => resolve()))
  const port = (outer.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        upstream.destroy()
        inner.closeAllConnections()
        outer.closeAllConnections()
        outer.close(() => resolve())
      })
  }
}

export interface Forwarder {
  readonly url: string
  /** Requests received so far (forwarded or still waiting). */
  readonly count: () => number
  setDelay(ms: number): void
  close(): Promise<void>
}

/** Forwards every request to `target` (same path) after `delayMs`. */
export const startDelayingForwarder = async (target: string, delayMs: number): Promise<Forwarder> => {
  const t = new URL(target)
  let delay = delayMs
  let count = 0
  const timers = new Set<NodeJS.Timeout>()
  const server = http.createServer((req, res) => {
    count++
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      const timer = setTimeout(() => {
        timers.delete(timer)
        const out = http.request({ hostname: t.hostname, port: Number(t.port), method: req.method, path: req.url, headers: req.headers }, (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers)
          up.pipe(res)
        })
        out.on("error", () => {
          // The receiver dropped the connection: do the same to the agent.
          req.socket.destroy()
        })
        out.end(Buffer.concat(chunks))
      }, delay)
      timers.add(timer)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}${t.pathname}`,
    count: () => count,
    setDelay: (ms) => {
      delay = ms
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t)
        timers.clear()
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
