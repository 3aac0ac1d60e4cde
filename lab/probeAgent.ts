// The tiny programs `lab check` runs inside the lab's namespaces, as real processes there
// (`ip netns exec NS node -e SOURCE …`), so every byte they exchange crosses the lab's real
// network: veths, node routes, masquerade.
//
// One agent per namespace is both:
// - a TCP service on 0.0.0.0:PORT and [::]:PORT (IPv6-only socket, so IPv4 peers are never seen
//   as `::ffff:a.b.c.d`) that answers each connection with one JSON line saying what it saw: the
//   peer address (the source address that arrived), its own local address and its pid;
// - a prober driven over stdin: `{"id":1,"host":"10.244.1.2","port":7300}` → it connects from
//   inside its namespace and prints the answer plus the local address its connection used.
// The same source also runs as a one-shot client (`connect HOST PORT`: the second process of a
// pod, talking to the agent over localhost) and as an HTTP GET (`get URL`: a daemon's /readyz,
// etcd's /health, which listen on the loopback of their namespace).
//
// The source is plain JavaScript in a string so that dist/bin/flatnetctl carries it with no extra
// file to install; it is exercised by every `lab check`.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { cleanEnvArgv, errorText, inNetns, nodeBinary, run } from './exec.js'

export const PROBE_AGENT_SOURCE = String.raw`'use strict'
const net = require('node:net')
const os = require('node:os')
const http = require('node:http')
const [mode, a, b] = process.argv.slice(1)
const out = (doc) => process.stdout.write(JSON.stringify(doc) + '\n')

function connect(host, port, timeoutMs, done) {
  let data = ''
  let finished = false
  const finish = (doc) => { if (!finished) { finished = true; clearTimeout(timer); socket.destroy(); done(doc) } }
  const socket = net.connect({ host, port })
  // Judged after the I/O already waiting is read: a descheduled process runs expired timers before
  // it polls, and would call an answer that came in time a timeout.
  const timer = setTimeout(() => setImmediate(() => finish({ ok: false, error: 'no answer within ' + timeoutMs + ' ms' })), timeoutMs)
  socket.on('error', (e) => finish({ ok: false, error: e.code || e.message }))
  socket.on('data', (d) => { data += d })
  socket.on('end', () => {
    try {
      finish({ ok: true, local: socket.localAddress, pid: process.pid, reply: JSON.parse(data) })
    } catch (e) {
      finish({ ok: false, error: 'unreadable answer ' + JSON.stringify(data) })
    }
  })
}

// Both families, without the fe80::/64 link-local address the kernel gives every interface.
function interfaceAddresses() {
  const all = {}
  for (const [name, list] of Object.entries(os.networkInterfaces())) {
    all[name] = (list || []).filter((x) => x.family === 'IPv4' || !x.address.startsWith('fe80:')).map((x) => x.cidr)
  }
  return all
}

if (mode === 'serve') {
  const answer = (socket) => {
    socket.on('error', () => {})
    socket.end(JSON.stringify({ peer: socket.remoteAddress, local: socket.localAddress, pid: process.pid }) + '\n')
  }
  let listening = 0
  for (const host of ['0.0.0.0', '::']) {
    const server = net.createServer(answer)
    server.on('error', (e) => { out({ ready: false, error: 'listen on ' + host + ' port ' + a + ': ' + (e.code || e.message) }); process.exit(1) })
    server.listen({ port: Number(a), host, ipv6Only: host === '::' }, () => {
      if (++listening === 2) out({ ready: true, pid: process.pid, addresses: interfaceAddresses() })
    })
  }
  let buffered = ''
  process.stdin.setEncoding('utf8')
  process.stdin.on('data', (chunk) => {
    buffered += chunk
    let nl
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      const req = JSON.parse(line)
      connect(req.host, req.port, req.timeoutMs, (res) => out({ id: req.id, ...res }))
    }
  })
  // The lab closes stdin when the check is over (or dies): then this agent ends too.
  process.stdin.on('end', () => process.exit(0))
} else if (mode === 'connect') {
  connect(a, Number(b), 2000, (res) => { out(res); process.exit(0) })
} else if (mode === 'get') {
  const req = http.get(a, { timeout: Number(b) || 2000 }, (res) => {
    let body = ''
    res.setEncoding('utf8')
    res.on('data', (d) => { body += d })
    res.on('end', () => { out({ status: res.statusCode, body }); process.exit(0) })
  })
  req.on('timeout', () => req.destroy(new Error('timeout')))
  req.on('error', (e) => { out({ status: 0, body: '', error: e.code || e.message }); process.exit(0) })
} else {
  process.stderr.write('probe agent: unknown mode ' + mode + '\n')
  process.exit(2)
}
`

/** What a service answered: the addresses it saw on the connection, and who it is. */
export interface ServiceReply {
  peer: string
  local: string
  pid: number
}

export type ProbeResult = { ok: true; local: string; pid: number; reply: ServiceReply } | { ok: false; error: string }

function agentArgv(netns: string, args: readonly string[]): string[] {
  return cleanEnvArgv({}, inNetns(netns, [nodeBinary, '-e', PROBE_AGENT_SOURCE, ...args]))
}

function parseLine<T>(line: string, what: string): T {
  try {
    return JSON.parse(line) as T
  } catch {
    throw new Error(`${what}: unreadable output ${JSON.stringify(line)}`)
  }
}

/** A running agent inside one namespace. */
export class ProbeAgent {
  /** Addresses per interface (IPv4, and IPv6 but link-local), as a process inside the namespace sees them (`address/len`). */
  addresses: Record<string, string[]> = {}
  pid = 0
  private readonly child: ChildProcessWithoutNullStreams
  private readonly pending = new Map<number, (r: ProbeResult) => void>()
  private nextId = 1
  private stderr = ''
  private exited = false

  private constructor(
    readonly netns: string,
    readonly port: number,
  ) {
    const [file, ...args] = agentArgv(netns, ['serve', String(port)])
    this.child = spawn(file!, args, { stdio: ['pipe', 'pipe', 'pipe'] })
  }

  /** Starts an agent in `netns` and resolves once its service listens. */
  static async start(netns: string, port: number, timeoutMs = 10_000): Promise<ProbeAgent> {
    const agent = new ProbeAgent(netns, port)
    await agent.ready(timeoutMs)
    return agent
  }

  private ready(timeoutMs: number): Promise<void> {
    const what = `start probe agent in ${this.netns}`
    return new Promise((resolve, reject) => {
      let buffered = ''
      let started = false
      const timer = setTimeout(() => fail(new Error(`${what}: not listening after ${timeoutMs} ms`)), timeoutMs)
      const fail = (err: Error) => {
        clearTimeout(timer)
        if (!started) {
          started = true
          this.child.kill('SIGKILL')
          reject(err)
        }
      }
      this.child.stderr.on('data', (d: Buffer) => {
        this.stderr += d.toString()
      })
      this.child.stdin.on('error', () => {})
      this.child.on('error', (err) => fail(new Error(`${what}: ${err.message}`)))
      this.child.on('exit', (code) => {
        this.exited = true
        fail(new Error(`${what}: exited with ${code}: ${this.stderr.trim()}`))
        for (const resolvePending of this.pending.values()) resolvePending({ ok: false, error: `probe agent in ${this.netns} exited` })
        this.pending.clear()
      })
      this.child.stdout.setEncoding('utf8')
      this.child.stdout.on('data', (chunk: string) => {
        buffered += chunk
        let nl: number
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl)
          buffered = buffered.slice(nl + 1)
          if (!started) {
            const hello = parseLine<{ ready: boolean; pid?: number; addresses?: Record<string, string[]>; error?: string }>(line, what)
            if (!hello.ready) return fail(new Error(`${what}: ${hello.error}`))
            started = true
            clearTimeout(timer)
            this.pid = hello.pid ?? 0
            this.addresses = hello.addresses ?? {}
            resolve()
            continue
          }
          const answer = parseLine<{ id: number } & ProbeResult>(line, `probe agent in ${this.netns}`)
          const { id, ...result } = answer
          this.pending.get(id)?.(result as ProbeResult)
          this.pending.delete(id)
        }
      })
    })
  }

  /** Connects from inside this namespace to host:port and returns what both ends saw. */
  probe(host: string, port: number, timeoutMs = 2000): Promise<ProbeResult> {
    if (this.exited) return Promise.resolve({ ok: false, error: `probe agent in ${this.netns} exited` })
    const id = this.nextId++
    return new Promise((resolve) => {
      this.pending.set(id, resolve)
      this.child.stdin.write(JSON.stringify({ id, host, port, timeoutMs }) + '\n')
    })
  }

  /** Ends the agent (stdin closed → it exits; SIGKILL if it lingers). */
  async stop(): Promise<void> {
    if (this.exited) return
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    this.child.stdin.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 1000)
    await gone
    clearTimeout(timer)
  }
}

/** Starts one agent per namespace; if any fails, stops those that started and throws. */
export async function startProbeAgents(netnsList: readonly string[], port: number): Promise<Map<string, ProbeAgent>> {
  const settled = await Promise.allSettled(netnsList.map((ns) => ProbeAgent.start(ns, port)))
  const agents = new Map<string, ProbeAgent>()
  const errors: string[] = []
  settled.forEach((s, i) => {
    if (s.status === 'fulfilled') agents.set(netnsList[i]!, s.value)
    else errors.push(errorText(s.reason))
  })
  if (errors.length) {
    await stopProbeAgents(agents)
    throw new Error(errors.join('; '))
  }
  return agents
}

export async function stopProbeAgents(agents: Map<string, ProbeAgent>): Promise<void> {
  await Promise.all([...agents.values()].map((a) => a.stop()))
}

/** A second, short-lived process in `netns` connecting to host:port (the localhost requirement). */
export async function probeOnce(netns: string, host: string, port: number): Promise<ProbeResult> {
  const result = await run(agentArgv(netns, ['connect', host, String(port)]), { timeoutMs: 10_000 })
  if (result.code !== 0) return { ok: false, error: `probe client in ${netns}: exit ${result.code}: ${result.stderr.trim()}` }
  return parseLine<ProbeResult>(result.stdout.trim(), `probe client in ${netns}`)
}

export interface HttpAnswer {
  status: number
  body: string
  error?: string
}

/** GET `url` from inside `netns` (e.g. a daemon's /readyz on that namespace's loopback). */
export async function httpGetInNetns(netns: string, url: string, timeoutMs = 2000): Promise<HttpAnswer> {
  const result = await run(agentArgv(netns, ['get', url, String(timeoutMs)]), { timeoutMs: timeoutMs + 5000 })
  if (result.code !== 0) return { status: 0, body: '', error: `exit ${result.code}: ${result.stderr.trim()}` }
  return parseLine<HttpAnswer>(result.stdout.trim(), `GET ${url} in ${netns}`)
}
