// flatnetd's CNI socket: serves the calls the native entry (plugin/entry/flatnet.c) forwards,
// with the plugin's own invokePlugin, warm — no Node start, no module loading per call.
//
// One connection is one call. Per connection: the peer must be uid 0 (SO_PEERCRED, read by the
// netns addon: Node exposes no socket options; the kernel records the connecting process, which
// cannot forge it); the request is read by the addon on a pool thread (descriptors passed with
// SCM_RIGHTS are dropped by libuv's read(2)), bounded in size and time; a caller in another
// network namespace is declined before anything is done (the entry then runs the Node plugin
// itself); the call runs concurrently with others, at most `maxConcurrent` at once, the rest
// waiting in turn, and beyond `maxWaiting` refused (closed: the entry answers "try again later").
// Nothing here ever awaits the reconcile loop, nor the loop this.
import { closeSync, fstatSync, mkdirSync, renameSync, rmSync, statSync, chmodSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { dirname } from 'node:path'
import { netnsAddon } from '../net/native.js'
import { invokePlugin } from '../plugin/invoke.js'
import { LATEST } from '../plugin/versions.js'
import { DECLINED, decodeCniRequest, encodeCniResponse, ENTRY_TAKES_STDERR, MAX_REQUEST_BYTES, MAX_STDERR_BYTES, type CniRequest } from './cniWire.js'
import { errField, type Logger } from './log.js'
import type { DaemonMetrics } from './metrics.js'

export interface CniServerOptions {
  socketPath: string
  log: Logger
  metrics?: Pick<DaemonMetrics, 'cniCalls' | 'cniCallDuration' | 'cniCallsInFlight'>
  /** Calls running at once (default 16); each is mostly waiting on the kernel. */
  maxConcurrent?: number
  /** Connections waiting for a slot beyond which new ones are closed (default 256). */
  maxWaiting?: number
  /** A connected peer has this long to send its whole request (default 5 s). */
  requestTimeoutMs?: number
  /**
   * A pod named in CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME, as the kubelet's runtimes pass them)
   * was attached with these addresses (ADD succeeded) or detached (DEL succeeded: no addresses).
   * Called before the answer is written; it must not block (policy learns the pod's address here).
   */
  onPodAddresses?(namespace: string, name: string, addresses: readonly string[]): void
}

/** K8S_POD_NAMESPACE and K8S_POD_NAME of a CNI_ARGS string (`K=V;K=V`), when both are there. */
export function podOfCniArgs(args: string | undefined): { namespace: string; name: string } | undefined {
  const fields = new Map((args ?? '').split(';').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const))
  const namespace = fields.get('K8S_POD_NAMESPACE')
  const name = fields.get('K8S_POD_NAME')
  return namespace && name ? { namespace, name } : undefined
}

export interface CniServer {
  readonly socketPath: string
  /** Stops accepting, waits for calls in progress (at most `deadlineMs`), removes the socket. */
  close(deadlineMs?: number): Promise<void>
}

/** The outcome label of one connection, for flatnet_cni_calls_total{result}. */
type CallResult = 'ok' | 'error' | 'declined' | 'refused' | 'bad-request' | 'lost'

class Slots {
  private running = 0
  private readonly waiting: Array<() => void> = []
  constructor(
    private readonly max: number,
    private readonly maxWaiting: number,
  ) {}
  /** false: too many waiting already. */
  async acquire(): Promise<boolean> {
    if (this.running < this.max) {
      this.running++
      return true
    }
    if (this.waiting.length >= this.maxWaiting) return false
    await new Promise<void>((resolve) => this.waiting.push(resolve))
    return true
  }
  release(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.running--
  }
}

function bindToDocument(outcome: { document?: Record<string, unknown>; exitCode: number }, stderr?: Buffer): Buffer {
  // Exactly what plugin/main.ts prints, so both paths give the runtime the same bytes.
  return encodeCniResponse(outcome.exitCode, outcome.document ? Buffer.from(JSON.stringify(outcome.document) + '\n') : Buffer.alloc(0), stderr)
}

/** Collects one call's stderr, bounded: the plugin writes a line per error, never floods. */
class StderrSink {
  private readonly parts: string[] = []
  private bytes = 0
  private cut = 0
  readonly write = (text: string) => {
    const n = Buffer.byteLength(text)
    if (this.bytes + n > MAX_STDERR_BYTES) this.cut += n
    else {
      this.parts.push(text)
      this.bytes += n
    }
  }
  text(): string {
    return this.parts.join('') + (this.cut ? `flatnet: ${this.cut} more bytes of stderr cut by flatnetd\n` : '')
  }
}

function protocolError(msg: string): Buffer {
  return bindToDocument({ document: { cniVersion: LATEST, code: 5, msg, details: '' }, exitCode: 1 })
}

export async function startCniServer(opts: CniServerOptions): Promise<CniServer> {
  const { socketPath, log, metrics } = opts
  const slots = new Slots(opts.maxConcurrent ?? 16, opts.maxWaiting ?? 256)
  const timeoutMs = opts.requestTimeoutMs ?? 5000
  const addon = netnsAddon()
  // The namespace this daemon acts in: a call from any other (a lab node's, a container's) is not
  // ours to serve, since the plugin would wire the pod into this namespace's host side.
  const own = statSync('/proc/self/ns/net')
  const inFlight = new Set<Promise<void>>()
  let active = 0

  const serve = async (socket: Socket): Promise<void> => {
    const started = process.hrtime.bigint()
    let result: CallResult = 'lost'
    let verb = 'unknown'
    let fds: number[] = []
    // Written, then closed at once: the socket is never read by Node (pauseOnConnect), so no 'end'
    // would ever come to close it; a unix socket's written bytes already sit in the peer's queue.
    const reply = (frame: Buffer) =>
      new Promise<void>((resolve) => {
        socket.write(frame, () => {
          socket.destroy()
          resolve()
        })
      })
    socket.on('error', (e) => log.debug({ err: errField(e) }, 'CNI socket connection error'))
    try {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd
      if (typeof fd !== 'number' || fd < 0) throw new Error('CNI socket: connection has no descriptor')
      const peer = addon.peerCredentials(fd)
      if (peer.uid !== 0) {
        result = 'refused'
        log.warn({ pid: peer.pid, uid: peer.uid }, 'CNI socket: refused a connection from a non-root process')
        socket.destroy()
        return
      }
      if (!(await slots.acquire())) {
        result = 'refused'
        log.warn({ maxWaiting: opts.maxWaiting ?? 256 }, 'CNI socket: too many calls waiting; closed a connection (the runtime retries)')
        socket.destroy()
        return
      }
      try {
        active++
        metrics?.cniCallsInFlight.set(active)
        let frame: { body: Buffer; fds: number[] }
        try {
          frame = await addon.receiveFrame(fd, MAX_REQUEST_BYTES, timeoutMs)
        } catch (e) {
          const code = (e as { code?: string }).code
          result = 'bad-request'
          if (code === 'E2BIG') {
            await reply(protocolError(`flatnetd: CNI request of ${(e as { announcedBytes?: number }).announcedBytes} bytes exceeds the limit of ${MAX_REQUEST_BYTES}`))
          } else {
            log.warn({ err: errField(e) }, 'CNI socket: receive request failed')
            socket.destroy()
          }
          return
        }
        fds = frame.fds
        const callerNetns = fds[0] === undefined ? undefined : fstatSync(fds[0])
        if (!callerNetns || callerNetns.dev !== own.dev || callerNetns.ino !== own.ino) {
          result = 'declined'
          await reply(encodeCniResponse(DECLINED, Buffer.alloc(0)))
          return
        }
        let req: CniRequest
        try {
          req = decodeCniRequest(frame.body)
        } catch (e) {
          result = 'bad-request'
          await reply(protocolError(`flatnetd: ${(e as Error).message}`))
          return
        }
        verb = req.env.CNI_COMMAND ?? 'unknown'
        if (req.netns.kind === 'descriptor' && fds[1] === undefined) {
          result = 'bad-request'
          await reply(protocolError('flatnetd: decode CNI request: the CNI_NETNS descriptor is missing'))
          return
        }
        const opened = req.netns.kind === 'descriptor' ? { fd: fds[1]! } : req.netns.kind === 'open-failed' ? { errorCode: req.netns.code } : undefined
        // The entry's own marker is not a parameter of the call.
        const entryTakesStderr = req.env[ENTRY_TAKES_STDERR] === '1'
        delete req.env[ENTRY_TAKES_STDERR]
        const stderr = new StderrSink()
        const outcome = await invokePlugin(req.env, () => req.stdin, opened, stderr.write)
        result = outcome.exitCode === 0 ? 'ok' : 'error'
        const pod = opts.onPodAddresses && outcome.exitCode === 0 && (verb === 'ADD' || verb === 'DEL') ? podOfCniArgs(req.env.CNI_ARGS) : undefined
        if (pod) {
          const ips = verb === 'ADD' ? ((outcome.document?.ips as Array<{ address?: string }> | undefined) ?? []) : []
          opts.onPodAddresses!(pod.namespace, pod.name, ips.map((ip) => String(ip.address ?? '').split('/')[0]!).filter(Boolean))
        }
        const errText = stderr.text()
        // An entry of the previous version cannot take it: then it goes to the daemon's log.
        if (errText && !entryTakesStderr) log.warn({ verb, containerId: req.env.CNI_CONTAINERID, stderr: errText }, 'CNI call wrote to stderr (the calling entry cannot forward it)')
        await reply(bindToDocument(outcome, entryTakesStderr ? Buffer.from(errText) : undefined))
      } finally {
        active--
        metrics?.cniCallsInFlight.set(active)
        slots.release()
      }
    } catch (e) {
      log.error({ err: errField(e) }, 'CNI socket: call failed')
      socket.destroy()
    } finally {
      for (const fd of fds) {
        try {
          closeSync(fd)
        } catch {
          // already closed: nothing held
        }
      }
      metrics?.cniCalls.inc(1, { verb: KNOWN_VERBS.has(verb) ? verb : 'unknown', result })
      metrics?.cniCallDuration.observe(Number(process.hrtime.bigint() - started) / 1e9)
    }
  }

  const server: Server = createServer({ pauseOnConnect: true }, (socket) => {
    const p = serve(socket).finally(() => inFlight.delete(p))
    inFlight.add(p)
  })
  server.on('error', (e) => log.error({ err: errField(e), socketPath }, 'CNI socket server error'))

  // Bound under a temporary name, made 0600, then renamed into place: the socket is never
  // reachable with looser permissions, and a stale socket of a previous daemon is replaced in one
  // step (a runtime calling meanwhile connects to one or the other, never to nothing).
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 })
  const tmp = `${socketPath}.${process.pid}.tmp`
  rmSync(tmp, { force: true })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(tmp, () => {
      server.off('error', reject)
      resolve()
    })
  })
  chmodSync(tmp, 0o600)
  renameSync(tmp, socketPath)
  const bound = statSync(socketPath)
  log.info({ socketPath }, 'CNI socket listening')

  return {
    socketPath,
    async close(deadlineMs = 1000) {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      // Remove the socket only if it is still ours (a newer daemon may have replaced it).
      try {
        const now = statSync(socketPath)
        if (now.ino === bound.ino && now.dev === bound.dev) rmSync(socketPath, { force: true })
      } catch {
        // already gone
      }
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        Promise.allSettled([...inFlight]),
        new Promise((r) => {
          timer = setTimeout(r, deadlineMs)
        }),
      ])
      clearTimeout(timer)
    },
  }
}

const KNOWN_VERBS = new Set(['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'])
