// The program each namespace of a services kernel test runs (`ip netns exec NS node -e SOURCE NAME PORTS…`):
// - a backend on every given port: TCP on [::] (IPv4 too) and UDP on each of the namespace's
//   addresses, answering every connection or datagram with `<NAME> <peer address>`, so a test
//   sees which endpoint a Service chose and which source address reached it (masqueraded or not);
// - a client driven by JSON lines on stdin, one JSON line back per request:
//   {"id":1,"proto":"tcp","host":"10.96.0.10","port":80} → {"id":1,"ok":true,"reply":"x/a 10.244.1.11","ms":3}
//   or {"id":1,"ok":false,"error":"ECONNREFUSED","ms":1}.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'

const AGENT_SOURCE = String.raw`'use strict'
const net = require('node:net'), dgram = require('node:dgram'), readline = require('node:readline')
const [name, ...rest] = process.argv.slice(1)
const ports = rest.map(Number).filter((p) => p > 0)
const plain = (a) => a.replace(/^::ffff:/, '')
// UDP is bound per address: a reply must leave from the address the datagram came to.
const addresses = [...new Set(Object.values(require('node:os').networkInterfaces()).flat().filter((a) => !a.address.startsWith('fe80')).map((a) => a.address))]
let pending = ports.length * (1 + addresses.length)
const up = () => { if (--pending === 0) process.stdout.write(JSON.stringify({ ready: true }) + '\n') }
for (const port of ports) {
  net.createServer((c) => { c.on('error', () => {}); c.end(name + ' ' + plain(c.remoteAddress)) }).listen({ port, host: '::' }, up)
  for (const address of addresses) {
    const u = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4')
    u.on('message', (m, r) => u.send(name + ' ' + plain(r.address), r.port, r.address))
    u.bind(port, address, up)
  }
}
if (ports.length === 0) process.stdout.write(JSON.stringify({ ready: true }) + '\n')
process.on('uncaughtException', (e) => process.stderr.write('services agent: ' + (e.stack || e) + '\n'))
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const r = JSON.parse(line)
  const t0 = Date.now()
  let done = false
  const end = (doc) => { if (!done) { done = true; clearTimeout(timer); process.stdout.write(JSON.stringify({ id: r.id, ms: Date.now() - t0, ...doc }) + '\n') } }
  // A timer that ran out is judged after the I/O already waiting is read (a descheduled process
  // runs expired timers before it polls: an answer that came in time would count as a timeout).
  const timer = setTimeout(() => setImmediate(() => end({ ok: false, error: 'timeout' })), r.timeoutMs || 2000)
  if (r.proto === 'udp') {
    const u = dgram.createSocket(r.host.includes(':') ? 'udp6' : 'udp4')
    const close = () => { try { u.close() } catch {} }
    u.on('error', (e) => { close(); end({ ok: false, error: e.code || e.message }) })
    u.on('message', (m) => { close(); end({ ok: true, reply: m.toString() }) })
    // A fixed source port makes every probe one UDP "connection" to conntrack (one entry, kept).
    const go = () => u.connect(r.port, r.host, () => u.send('hi'))
    if (r.sourcePort) u.bind(r.sourcePort, go)
    else go()
    return
  }
  const c = net.connect({ host: r.host, port: r.port })
  let data = ''
  c.on('data', (d) => (data += d))
  c.on('end', () => end({ ok: true, reply: data }))
  c.on('error', (e) => end({ ok: false, error: e.code || e.message }))
})
`

export interface ServiceProbe {
  proto?: 'tcp' | 'udp'
  host: string
  port: number
  timeoutMs?: number
  /** UDP only: send from this port (every probe then belongs to one conntrack entry). */
  sourcePort?: number
}

export interface ProbeAnswer {
  ok: boolean
  /** `<backend name> <client address as the backend saw it>` */
  reply?: string
  error?: string
  ms: number
}

/** A running agent (backend and client) in a namespace. */
export class ServiceAgent {
  private next = 1
  private readonly waiting = new Map<number, (doc: ProbeAnswer) => void>()
  private readonly ready: Promise<void>

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    netns: string,
  ) {
    const stderr: string[] = []
    child.stderr.on('data', (d: Buffer) => stderr.push(d.toString()))
    let markReady: () => void = () => {}
    this.ready = new Promise<void>((resolve, reject) => {
      markReady = resolve
      child.once('exit', (code) => {
        const e = `services agent in ${netns} exited ${code}: ${stderr.join('')}`
        for (const answer of this.waiting.values()) answer({ ok: false, error: e, ms: 0 })
        reject(new Error(e))
      })
    })
    this.ready.catch(() => {})
    createInterface({ input: child.stdout }).on('line', (line) => {
      const doc = JSON.parse(line) as ProbeAnswer & { id?: number; ready?: boolean }
      if (doc.ready) markReady()
      else if (doc.id !== undefined) this.waiting.get(doc.id)?.(doc)
    })
  }

  /** Starts the agent in `netns`, answering as `name` on `ports`. */
  static async start(netns: string, name: string, ports: readonly number[]): Promise<ServiceAgent> {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', AGENT_SOURCE, name, ...ports.map(String)], { stdio: ['pipe', 'pipe', 'pipe'] })
    const agent = new ServiceAgent(child, netns)
    await agent.ready
    return agent
  }

  request(req: ServiceProbe): Promise<ProbeAnswer> {
    const id = this.next++
    return new Promise((resolve) => {
      this.waiting.set(id, (doc) => {
        this.waiting.delete(id)
        resolve(doc)
      })
      this.child.stdin.write(JSON.stringify({ id, ...req }) + '\n')
    })
  }

  stop(): void {
    this.child.kill('SIGKILL')
  }
}
