// The program each namespace of a policy kernel test runs (`ip netns exec NS node -e SOURCE PORTS`):
// - a server on every given port: TCP on [::] (IPv4 too) answering "ok" then echoing, and UDP on
//   each of the namespace's addresses answering each datagram with "ok";
// - a prober driven by JSON lines on stdin, answering one JSON line per request:
//   {"id":1,"op":"probe","proto":"tcp","host":"10.244.1.10","port":80,"source":"10.244.2.10"}
//   → {"id":1,"ok":true} or {"id":1,"ok":false,"error":"ECONNRESET"};
//   "open" keeps the TCP connection (by id), "send" writes on a kept one and waits for the echo;
//   "flood" sends UDP datagrams for durationMs and answers {"ok":true,"sent":N}.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'

export const POLICY_AGENT_SOURCE = String.raw`'use strict'
const net = require('node:net'), dgram = require('node:dgram'), readline = require('node:readline')
const ports = process.argv.slice(1).map(Number).filter((p) => p > 0)
// UDP is bound per address: a reply leaves from the address the datagram came to (a socket on
// 0.0.0.0 would answer from the outgoing interface's first address, which no client accepts).
const addresses = [...new Set(Object.values(require('node:os').networkInterfaces()).flat().filter((a) => !a.address.startsWith('fe80')).map((a) => a.address))]
let pending = ports.length * (1 + addresses.length)
const up = () => { if (--pending === 0) process.stdout.write(JSON.stringify({ ready: true }) + '\n') }
for (const port of ports) {
  const s = net.createServer((c) => { c.on('error', () => {}); c.write('ok'); c.on('data', (d) => c.write(d)) })
  s.listen({ port, host: '::' }, up)
  for (const address of addresses) {
    const u = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4')
    u.on('message', (m, r) => u.send('ok', r.port, r.address))
    u.bind(port, address, up)
  }
}
if (ports.length === 0) process.stdout.write(JSON.stringify({ ready: true }) + '\n')
// A test's agent must answer every request: nothing it meets ends it.
process.on('uncaughtException', (e) => process.stderr.write('policy agent: ' + (e.stack || e) + '\n'))
const kept = new Map()
const out = (doc) => process.stdout.write(JSON.stringify(doc) + '\n')
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const r = JSON.parse(line)
  let done = false
  const finish = (doc) => { if (!done) { done = true; out({ id: r.id, ...doc }) } }
  // A timer that ran out is judged after the I/O already waiting is read (a descheduled process
  // runs expired timers before it polls: an answer that came in time would count as a timeout).
  const timer = setTimeout(() => setImmediate(() => finish({ ok: false, error: 'timeout' })), r.timeoutMs || 1500)
  const end = (doc) => { clearTimeout(timer); finish(doc) }
  if (r.op === 'send') {
    const c = kept.get(r.conn)
    if (!c) return end({ ok: false, error: 'no such connection' })
    c.once('data', () => end({ ok: true }))
    c.once('error', (e) => end({ ok: false, error: e.code || e.message }))
    c.write('ping')
    return
  }
  if (r.op === 'flood') {
    // Datagrams as fast as the socket takes them for durationMs; the answer counts those sent.
    const u = dgram.createSocket(r.host.includes(':') ? 'udp6' : 'udp4')
    let sent = 0
    const until = Date.now() + r.durationMs
    u.on('error', () => {})
    u.bind({ address: r.source, port: 0 }, () => {
      const burst = () => {
        if (Date.now() >= until) { clearTimeout(timer); u.close(); return finish({ ok: true, sent }) }
        let left = 64
        const next = () => { if (--left === 0) setImmediate(burst) }
        for (let i = 0; i < 64; i++) u.send('x', r.port, r.host, () => { sent++; next() })
      }
      burst()
    })
    return
  }
  if (r.proto === 'udp') {
    const u = dgram.createSocket(r.host.includes(':') ? 'udp6' : 'udp4')
    let open = true
    const close = () => { if (open) { open = false; try { u.close() } catch {} } }
    u.on('error', (e) => { close(); end({ ok: false, error: e.code || e.message }) })
    u.on('message', () => { close(); end({ ok: true }) })
    u.bind({ address: r.source, port: 0 }, () => u.connect(r.port, r.host, () => u.send('hi')))
    return
  }
  const c = net.connect({ host: r.host, port: r.port, localAddress: r.source })
  c.on('error', (e) => end({ ok: false, error: e.code || e.message }))
  c.once('data', () => {
    if (r.op === 'open') kept.set(r.id, c)
    else c.destroy()
    end({ ok: true })
  })
})
`

export interface ProbeRequest {
  op?: 'probe' | 'open' | 'send' | 'flood'
  proto?: 'tcp' | 'udp'
  host?: string
  port?: number
  source?: string
  /** For `send`: the id of the `open` request whose connection to use. */
  conn?: number
  timeoutMs?: number
  /** For `flood`: how long to send. */
  durationMs?: number
}

/** A running agent in a namespace. */
export class PolicyAgent {
  private next = 1
  private readonly waiting = new Map<number, (doc: { ok: boolean; error?: string; sent?: number }) => void>()
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
        const e = `policy agent in ${netns} exited ${code}: ${stderr.join('')}`
        for (const answer of this.waiting.values()) answer({ ok: false, error: e })
        reject(new Error(e))
      })
    })
    this.ready.catch(() => {}) // a later exit is answered through `waiting`
    createInterface({ input: child.stdout }).on('line', (line) => {
      const doc = JSON.parse(line) as { id?: number; ok: boolean; error?: string; sent?: number; ready?: boolean }
      if (doc.ready) markReady()
      else if (doc.id !== undefined) this.waiting.get(doc.id)?.(doc)
    })
  }

  static async start(netns: string, ports: readonly number[]): Promise<PolicyAgent> {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', POLICY_AGENT_SOURCE, ...ports.map(String)], { stdio: ['pipe', 'pipe', 'pipe'] })
    const agent = new PolicyAgent(child, netns)
    await agent.ready
    return agent
  }

  /** Sends one request; resolves with the agent's answer (and the id, for `open`). */
  request(req: ProbeRequest): Promise<{ id: number; ok: boolean; error?: string; sent?: number }> {
    const id = this.next++
    return new Promise((resolve) => {
      this.waiting.set(id, (doc) => {
        this.waiting.delete(id)
        resolve({ id, ...doc })
      })
      this.child.stdin.write(JSON.stringify({ id, op: 'probe', ...req }) + '\n')
    })
  }

  stop(): void {
    this.child.kill('SIGKILL')
  }
}
