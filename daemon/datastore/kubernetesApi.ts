// The few Kubernetes API requests flatnet makes. @kubernetes/client-node supplies what is hard to
// get right — reading a kubeconfig or the in-cluster service account, TLS material, bearer tokens
// (re-read from the projected token file as it rotates), exec and auth-provider plugins, proxies —
// through KubeConfig.applyToHTTPSOptions(). The requests themselves are made here so that every
// one has a deadline: client-node 1.4's generated API has none by default, and its Watch waits for
// response headers without any bound, which would stall a node agent on a half-dead connection.
// Only index.ts's dynamic import of kubernetes.js reaches this file, so the file and etcd backends
// never load the library (in an esbuild bundle this module's init, require included, runs on that
// import only). The named import lets a bundler that inlines the library keep just KubeConfig's
// part of it (1.7 MB instead of 15 MB: the contract tests' claim workers start 3x faster).
import http from 'node:http'
import https from 'node:https'
import { KubeConfig } from '@kubernetes/client-node'
import type { StatusJson } from './kubernetesNodes.js'

export interface KubeApiConfig {
  /** Path of a kubeconfig file; absent: the in-cluster service account. */
  kubeconfig?: string
  /** Deadline of one request (for a watch: until its response headers). */
  timeoutMs: number
}

/** The API server answered with a non-2xx status; `reason` is its Status reason (Conflict, AlreadyExists, NotFound, Expired, …). */
export class KubeApiError extends Error {
  override name = 'KubeApiError'
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message)
  }
}

/** The kubeconfig (or in-cluster configuration) cannot be used. */
export class KubeConfigError extends Error {
  override name = 'KubeConfigError'
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'

export interface WatchEvent {
  type: WatchEventType
  object: unknown
}

export interface WatchHandlers {
  onEvent(event: WatchEvent): void
  /** The stream is over: undefined when the server ended it normally, else why it broke. Called once, never after abort(). */
  onEnd(err: Error | undefined): void
}

export interface RequestOptions {
  query?: Record<string, string | undefined>
  body?: unknown
  /** Content-Type of the body; default application/json. */
  contentType?: string
}

const watchEventTypes = new Set<string>(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'])

function apiErrorOf(status: number, text: string): KubeApiError {
  let reason = ''
  let message = text.trim().slice(0, 500)
  try {
    const doc = JSON.parse(text) as StatusJson
    if (doc && typeof doc === 'object') {
      reason = typeof doc.reason === 'string' ? doc.reason : ''
      if (typeof doc.message === 'string') message = doc.message
    }
  } catch {
    // Not a Status object (a proxy's HTML page, say): keep the text.
  }
  return new KubeApiError(status, reason, `${status}${reason ? ` ${reason}` : ''}: ${message || http.STATUS_CODES[status] || 'no message'}`)
}

/** Loads the configuration (no network yet). */
export async function connectKubeApi(config: KubeApiConfig): Promise<KubeApi> {
  const kc = new KubeConfig()
  if (config.kubeconfig !== undefined) {
    try {
      kc.loadFromFile(config.kubeconfig)
    } catch (err) {
      throw new KubeConfigError(`read kubeconfig ${config.kubeconfig}: ${(err as Error).message}`)
    }
  } else {
    // Without this check client-node would talk to https://undefined:undefined.
    if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
      throw new KubeConfigError('no kubeconfig given and not running in a pod: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are unset (in-cluster service-account config needs them)')
    }
    kc.loadFromCluster()
  }
  const cluster = kc.getCurrentCluster()
  if (!cluster)
    throw new KubeConfigError(`${config.kubeconfig ? `kubeconfig ${config.kubeconfig}` : 'in-cluster config'}: no current cluster (current-context ${JSON.stringify(kc.getCurrentContext())})`)
  let server: URL
  try {
    server = new URL(cluster.server)
  } catch {
    throw new KubeConfigError(`${config.kubeconfig ? `kubeconfig ${config.kubeconfig}` : 'in-cluster config'}: cluster ${cluster.name} has no valid server URL: ${JSON.stringify(cluster.server)}`)
  }
  return new KubeApi(kc, server, config.timeoutMs)
}

export class KubeApi {
  /** The API server's URL, for error messages. */
  readonly server: string

  constructor(
    private readonly kc: KubeConfig,
    private readonly base: URL,
    readonly timeoutMs: number,
  ) {
    this.server = base.href.replace(/\/$/, '')
  }

  private url(path: string, query: Record<string, string | undefined> = {}): URL {
    // The server URL may carry a path (an API proxy): append to it.
    const url = new URL(this.base.href.replace(/\/$/, '') + path)
    for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, value)
    return url
  }

  /** Auth headers, TLS material and agent from the kubeconfig, fetched per request so rotated tokens are picked up. */
  private async options(method: string, headers: Record<string, string | number>): Promise<https.RequestOptions> {
    const options: https.RequestOptions = {}
    try {
      await this.kc.applyToHTTPSOptions(options)
    } catch (err) {
      throw new KubeConfigError(`credentials for ${this.server}: ${(err as Error).message}`)
    }
    return { ...options, method, headers: { ...options.headers, ...headers } }
  }

  private transport(url: URL): typeof https | typeof http {
    return url.protocol === 'http:' ? http : https
  }

  /** One request with a JSON answer, bounded by timeoutMs from start to the last byte. */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const url = this.url(path, opts.query)
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body)
    const headers: Record<string, string | number> = { Accept: 'application/json' }
    if (body !== undefined) {
      headers['Content-Type'] = opts.contentType ?? 'application/json'
      headers['Content-Length'] = Buffer.byteLength(body)
    }
    const options = await this.options(method, headers)
    return new Promise<T>((resolve, reject) => {
      const req = this.transport(url).request(url, options, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', (err) => fail(err))
        res.on('end', () => {
          clearTimeout(timer)
          const text = Buffer.concat(chunks).toString('utf8')
          const status = res.statusCode ?? 0
          if (status < 200 || status > 299) return reject(apiErrorOf(status, text))
          try {
            resolve(JSON.parse(text) as T)
          } catch {
            reject(new Error(`${method} ${url.pathname}: answer ${status} is not JSON: ${JSON.stringify(text.slice(0, 200))}`))
          }
        })
      })
      const fail = (err: Error) => {
        clearTimeout(timer)
        reject(err)
      }
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs)
      req.on('error', fail)
      req.end(body)
    })
  }

  /**
   * A watch stream (newline-delimited JSON events). Response headers must come within timeoutMs;
   * the whole stream is cut after maxDurationMs (the server is asked to end it before, with
   * timeoutSeconds, so this only catches a connection that died silently).
   */
  watch(path: string, query: Record<string, string | undefined>, maxDurationMs: number, handlers: WatchHandlers): { abort(): void } {
    let aborted = false
    let ended = false
    let req: http.ClientRequest | undefined
    const timers: NodeJS.Timeout[] = []
    const end = (err: Error | undefined) => {
      if (ended || aborted) return
      ended = true
      for (const t of timers) clearTimeout(t)
      req?.destroy()
      handlers.onEnd(err)
    }
    const url = this.url(path, { ...query, watch: 'true' })
    void this.options('GET', { Accept: 'application/json' }).then(
      (options) => {
        if (aborted) return
        const r = this.transport(url).request(url, options, (res) => {
          clearTimeout(headersTimer)
          const status = res.statusCode ?? 0
          if (status !== 200) {
            const chunks: Buffer[] = []
            res.on('data', (chunk: Buffer) => chunks.push(chunk))
            res.on('end', () => end(apiErrorOf(status, Buffer.concat(chunks).toString('utf8'))))
            res.on('error', (err) => end(err))
            return
          }
          timers.push(setTimeout(() => end(new Error(`watch stream open longer than ${maxDurationMs} ms; reconnecting`)), maxDurationMs))
          let pending = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => {
            pending += chunk
            let newline: number
            while ((newline = pending.indexOf('\n')) >= 0 && !ended && !aborted) {
              const line = pending.slice(0, newline).trim()
              pending = pending.slice(newline + 1)
              if (line === '') continue
              let event: WatchEvent
              try {
                event = JSON.parse(line) as WatchEvent
              } catch {
                return end(new Error(`watch ${url.pathname}: event is not JSON: ${JSON.stringify(line.slice(0, 200))}`))
              }
              if (!event || !watchEventTypes.has(event.type) || typeof event.object !== 'object' || event.object === null) {
                return end(new Error(`watch ${url.pathname}: not a watch event: ${JSON.stringify(line.slice(0, 200))}`))
              }
              handlers.onEvent(event)
            }
          })
          res.on('error', (err) => end(err))
          // 'close' without 'complete': the connection was cut mid-stream.
          res.on('close', () => end(res.complete ? undefined : new Error('watch stream cut off by the server or the network')))
        })
        req = r
        const headersTimer = setTimeout(() => end(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs)
        timers.push(headersTimer)
        r.on('error', (err) => end(err))
        r.end()
      },
      (err: Error) => end(err),
    )
    return {
      abort() {
        aborted = true
        for (const t of timers) clearTimeout(t)
        req?.destroy()
      },
    }
  }
}
