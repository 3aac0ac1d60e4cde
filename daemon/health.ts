// /healthz, /readyz and /metrics over plain HTTP. Read-only: only GET and HEAD are answered,
// nothing here changes the daemon's state.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { ListenAddress } from '../conf/daemonConfig.js'
import { METRICS_CONTENT_TYPE } from './metrics.js'

export interface Readiness {
  ready: boolean
  node: string
  subnet?: string
  /** Why not ready, most fundamental first; empty when ready. */
  reasons: string[]
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

function handle(src: HealthSources, req: IncomingMessage, res: ServerResponse): void {
  const head = req.method === 'HEAD'
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
      const body = r.ready ? { ready: true, node: r.node, subnet: r.subnet } : { ready: false, node: r.node, subnet: r.subnet, reason: r.reasons.join('; '), reasons: r.reasons }
      return json(res, r.ready ? 200 : 503, body, head)
    }
    case '/metrics':
      return send(res, 200, METRICS_CONTENT_TYPE, src.metrics(), head)
    default:
      return json(res, 404, { error: `no such endpoint ${path}; try /healthz, /readyz, /metrics` }, head)
  }
}

export async function startHealthServer(listen: ListenAddress, src: HealthSources): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    try {
      handle(src, req, res)
    } catch (e) {
      if (!res.headersSent) json(res, 500, { error: (e as Error).message }, false)
      else res.destroy()
    }
  })
  // Probes keep no connection worth waiting for at shutdown.
  server.keepAliveTimeout = 1000
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
