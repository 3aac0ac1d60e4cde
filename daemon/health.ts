// /healthz, /readyz and /metrics over plain HTTP. Read-only: only GET and HEAD are answered,
// nothing here changes the daemon's state.
//
// Bounded: in a DaemonSet the server listens on the node address, which every pod can reach. With
// Node's defaults (no connection limit, 16 KiB of headers, 60 s to send them, no idle limit) 8000
// half-open requests took the daemon from 58 to 140 MB and 6650 descriptors. So: a fixed number of
// connections (the kernel completes the handshake, Node closes the surplus at once), small headers,
// request bodies never read, and seconds — not minutes — for a request to arrive or a connection to idle.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { ListenAddress } from '../conf/daemonConfig.js'
import { METRICS_CONTENT_TYPE } from './metrics.js'

export interface Readiness {
  ready: boolean
  node: string
  subnet?: string
  /** Dual-stack: every subnet the node holds, one per family in cluster-range order (absent with one). */
  subnets?: string[]
  /** Why not ready, most fundamental first; empty when ready. */
  reasons: string[]
  /** Every reconciler's own line (name, whether it is in its wanted state, why not, its warnings). */
  reconcilers?: ReconcilerLine[]
}

export interface ReconcilerLine {
  name: string
  ok: boolean
  /** Whether `ok: false` makes the node not ready. */
  gates: boolean
  reason?: string
  warnings?: string[]
}

export interface Liveness {
  alive: boolean
  reason?: string
}

export interface HealthSources {
  readiness(): Readiness
  liveness(): Liveness
  metrics(): string
}

/** What one client can make the server hold. Probes and scrapes need a handful of connections and a few hundred bytes. */
export const HEALTH_LIMITS = {
  /** Open connections at once; the surplus is closed as soon as it is accepted. */
  maxConnections: 64,
  /** Request line plus headers (Node answers 431 above it). */
  maxHeaderBytes: 8 * 1024,
  /** To receive the whole header block (Node answers 408 after it). */
  headersTimeoutMs: 5_000,
  /** To receive the whole request. */
  requestTimeoutMs: 5_000,
  /** A connection with no traffic in either direction is destroyed after this. */
  idleTimeoutMs: 5_000,
  /** Keep-alive between requests (probes keep no connection worth waiting for at shutdown). */
  keepAliveTimeoutMs: 1_000,
  /** Requests on one keep-alive connection before the server closes it. */
  maxRequestsPerSocket: 100,
} as const

export interface HealthServer {
  /** The bound address (the real port when --listen asked for port 0). */
  readonly address: ListenAddress
  close(): Promise<void>
}

function send(res: ServerResponse, status: number, contentType: string, body: string, head: boolean): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' })
  res.end(head ? undefined : body)
}

function json(res: ServerResponse, status: number, value: unknown, head: boolean): void {
  send(res, status, 'application/json', JSON.stringify(value) + '\n', head)
}

/** A request announcing a body (none of these endpoints takes one). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

function handle(src: HealthSources, req: IncomingMessage, res: ServerResponse): void {
  const head = req.method === 'HEAD'
  // A body is never read: unread, it stops the socket at the stream's high-water mark, and the
  // connection is closed after the answer, so Node does not read (and buffer) the rest of it to
  // reach a next request on the same connection.
  if (hasBody(req)) res.setHeader('connection', 'close')
  if (req.method !== 'GET' && !head) {
    res.setHeader('allow', 'GET, HEAD')
    return json(res, 405, { error: `${req.method} not allowed: this endpoint is read-only` }, false)
  }
  const path = (req.url ?? '/').split('?')[0]
  switch (path) {
    case '/healthz': {
      const l = src.liveness()
      return json(res, l.alive ? 200 : 500, l.alive ? { alive: true } : { alive: false, reason: l.reason }, head)
    }
    case '/readyz': {
      const r = src.readiness()
      const reconcilers = r.reconcilers ? { reconcilers: r.reconcilers } : {}
      const body = r.ready
        ? { ready: true, node: r.node, subnet: r.subnet, ...(r.subnets ? { subnets: r.subnets } : {}), ...reconcilers }
        : { ready: false, node: r.node, subnet: r.subnet, ...(r.subnets ? { subnets: r.subnets } : {}), reason: r.reasons.join('; '), reasons: r.reasons, ...reconcilers }
      return json(res, r.ready ? 200 : 503, body, head)
    }
    case '/metrics':
      return send(res, 200, METRICS_CONTENT_TYPE, src.metrics(), head)
    default:
      return json(res, 404, { error: `no such endpoint ${path}; try /healthz, /readyz, /metrics` }, head)
  }
}

export async function startHealthServer(listen: ListenAddress, src: HealthSources): Promise<HealthServer> {
  const limits = HEALTH_LIMITS
  const server: Server = createServer(
    {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // How often Node looks for connections past headersTimeout/requestTimeout (default 30 s,
      // which would let a slow client hold a slot six times longer than the limit says).
      connectionsCheckingInterval: 1_000,
    },
    (req, res) => {
      try {
        handle(src, req, res)
      } catch (e) {
        if (!res.headersSent) json(res, 500, { error: (e as Error).message }, false)
        else res.destroy()
      }
    },
  )
  server.maxConnections = limits.maxConnections
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket
  // Idle in both directions: a client that connects and never sends, or never reads the answer.
  server.setTimeout(limits.idleTimeoutMs, (socket) => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`listen on ${listen.host}:${listen.port} (--listen): ${e.code ?? e.message}`)))
    server.listen(listen.port, listen.host, () => resolve())
  })
  const bound = server.address() as AddressInfo
  return {
    address: { host: listen.host, port: bound.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
