// Long-lived TCP connections for the lab's reliability tests (test-only; flatnetctl does not import
// it): a connection that stays ESTABLISHED for a whole test and exchanges data both ways every few
// milliseconds, every answer checked, so a test can tell whether it survived what happened to the
// network meanwhile (a daemon killed and restarted, tables rewritten). The lab's responder and
// probe agents cannot: they answer one line and close.
//
// One small program, run inside a namespace (`ip netns exec NS node -e SOURCE MODE …`):
// - `serve NAME PORT`: a TCP server on [::] (IPv4 too; 0.0.0.0 where the namespace has no IPv6)
//   answering every line `ping <n> <token>` with `pong <n> <token> <NAME>`, on as many connections
//   as come, for as long as they stay;
// - `hold HOST PORT INTERVAL_MS`: one connection to HOST:PORT sending `ping <n> <token>` every
//   INTERVAL_MS (n counting from 1, a fresh random token each) and checking each answer: it must
//   be the next pong in order, carry that ping's token and come from the backend that answered
//   the first ping (a connection whose NAT changed would reach another backend, or none). Anything
//   else — a wrong answer, an answer overdue by REPLY_DEADLINE_MS, an error, the connection
//   closing — is recorded as a fault with its time. On stdin: `report` prints the counters,
//   `stop` stops sending, waits for the answers in flight, prints the counters and exits.
// Both print `{"ready":true,…}` first (hold: after the first pong, naming the backend).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'
import { cleanEnvArgv, inNetns, nodeBinary } from '../exec.js'

const STREAM_SOURCE = String.raw`'use strict'
const net = require('node:net')
const crypto = require('node:crypto')
const readline = require('node:readline')
const [mode, a, b, c] = process.argv.slice(1)
const out = (doc) => process.stdout.write(JSON.stringify(doc) + '\n')
// A reply this late is a fault, not a slow machine: on this project's loaded 2-core machines a
// pong comes back within milliseconds, and a connection whose packets are dropped retransmits for
// minutes before its socket reports anything.
const REPLY_DEADLINE_MS = 3000

function lines(socket, onLine) {
  let buffered = ''
  socket.setEncoding('utf8')
  socket.on('data', (d) => {
    buffered += d
    let nl
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      onLine(line)
    }
  })
}

if (mode === 'serve') {
  const [name, port] = [a, Number(b)]
  const serve = (socket) => {
    socket.on('error', () => {})
    lines(socket, (line) => {
      const m = /^ping (\d+) (\w+)$/.exec(line)
      socket.write(m ? 'pong ' + m[1] + ' ' + m[2] + ' ' + name + '\n' : 'unknown ' + JSON.stringify(line) + '\n')
    })
  }
  const server = net.createServer(serve)
  server.once('error', (e) => {
    if (e.code !== 'EAFNOSUPPORT' && e.code !== 'EADDRNOTAVAIL') { out({ ready: false, error: 'listen on TCP ' + port + ': ' + (e.code || e.message) }); process.exit(1) }
    server.once('error', (e2) => { out({ ready: false, error: 'listen on TCP ' + port + ': ' + (e2.code || e2.message) }); process.exit(1) })
    server.listen(port, '0.0.0.0', () => out({ ready: true, pid: process.pid }))
  })
  server.listen({ port, host: '::', ipv6Only: false }, () => out({ ready: true, pid: process.pid }))
  process.stdin.on('data', () => {})
  process.stdin.on('end', () => process.exit(0))
} else if (mode === 'hold') {
  const [host, port, intervalMs] = [a, Number(b), Number(c)]
  const stats = { sent: 0, answered: 0, backend: '', local: '', faults: [], maxReplyMs: 0, open: false }
  const inFlight = new Map() // n → { token, at }
  let next = 1
  let expected = 1
  let ticker
  let stopping = false
  const fault = (why) => stats.faults.length < 50 && stats.faults.push(new Date().toISOString() + ' ' + why)
  const report = () => out({ report: true, ...stats, inFlight: inFlight.size })
  const finish = () => { report(); process.exit(0) }
  const socket = net.connect({ host, port })
  const ping = () => {
    const n = next++
    const token = crypto.randomBytes(8).toString('hex')
    inFlight.set(n, { token, at: Date.now() })
    stats.sent++
    socket.write('ping ' + n + ' ' + token + '\n')
  }
  socket.on('connect', () => {
    stats.open = true
    stats.local = socket.localAddress + ':' + socket.localPort
    ping()
    ticker = setInterval(() => {
      if (!stopping) ping()
      for (const [n, p] of inFlight) if (Date.now() - p.at > REPLY_DEADLINE_MS && !p.late) { p.late = true; fault('ping ' + n + ': no answer within ' + REPLY_DEADLINE_MS + ' ms') }
    }, intervalMs)
  })
  lines(socket, (line) => {
    const m = /^pong (\d+) (\w+) (\S+)$/.exec(line)
    const n = m ? Number(m[1]) : 0
    const p = inFlight.get(n)
    if (!m || !p || n !== expected || m[2] !== p.token) return fault('answer ' + JSON.stringify(line) + ' while waiting for pong ' + expected)
    if (!stats.backend) { stats.backend = m[3]; out({ ready: true, pid: process.pid, backend: stats.backend, local: stats.local }) }
    else if (m[3] !== stats.backend) fault('pong ' + n + ' from ' + m[3] + ', the connection began with ' + stats.backend)
    inFlight.delete(n)
    expected++
    stats.answered++
    stats.maxReplyMs = Math.max(stats.maxReplyMs, Date.now() - p.at)
    if (stopping && inFlight.size === 0) finish()
  })
  socket.on('error', (e) => fault('connection error ' + (e.code || e.message)))
  socket.on('close', () => {
    stats.open = false
    clearInterval(ticker)
    if (!stopping) fault('connection closed')
    if (!stats.backend) out({ ready: false, error: stats.faults.join('; ') || 'closed before the first answer' })
  })
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'report') report()
    if (line === 'stop') {
      stopping = true
      if (inFlight.size === 0 || !stats.open) finish()
      setTimeout(() => { fault('stop: ' + inFlight.size + ' answers still missing after ' + REPLY_DEADLINE_MS + ' ms'); finish() }, REPLY_DEADLINE_MS)
    }
  })
} else {
  process.stderr.write('streams: unknown mode ' + mode + '\n')
  process.exit(2)
}
`

/** What a held connection went through, counted by its client. */
export interface HoldReport {
  /** Pings sent and answered correctly (in order, with their token, by the first backend). */
  sent: number
  answered: number
  /** The backend (its `serve` NAME) that answered the first ping. */
  backend: string
  /** The connection's own address:port inside its namespace. */
  local: string
  /** Every wrong, overdue or missing answer, error or close, with its time (at most 50). */
  faults: string[]
  /** The slowest answer's round trip. */
  maxReplyMs: number
  /** Whether the connection is still established. */
  open: boolean
  /** Pings not answered yet. */
  inFlight: number
}

/** One process of the program above in `netns`; resolves when its first line says it is ready. */
class StreamProcess {
  private readonly child: ChildProcessWithoutNullStreams
  private readonly waiting: Array<(doc: Record<string, unknown>) => void> = []
  private stderr = ''
  private exited = false
  readonly started: Promise<Record<string, unknown>>

  constructor(
    readonly what: string,
    netns: string,
    args: readonly string[],
  ) {
    const [file, ...rest] = cleanEnvArgv({}, inNetns(netns, [nodeBinary, '-e', STREAM_SOURCE, ...args]))
    this.child = spawn(file!, rest, { stdio: ['pipe', 'pipe', 'pipe'] })
    this.child.stdin.on('error', () => {})
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()))
    this.started = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: not ready after 10 s`)), 10_000)
      this.waiting.push((doc) => {
        clearTimeout(timer)
        if (doc.ready) resolve(doc)
        else reject(new Error(`${what}: ${String(doc.error)}`))
      })
      this.child.once('close', (code) => {
        this.exited = true
        clearTimeout(timer)
        reject(new Error(`${what}: exited with ${code}: ${this.stderr.trim()}`))
        for (const w of this.waiting.splice(0)) w({ ready: false, error: `${what}: exited with ${code}: ${this.stderr.trim()}` })
      })
    })
    this.started.catch(() => this.kill())
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      let doc: Record<string, unknown>
      try {
        doc = JSON.parse(line) as Record<string, unknown>
      } catch {
        doc = { ready: false, error: `unreadable output ${JSON.stringify(line)}` }
      }
      this.waiting.shift()?.(doc)
    })
  }

  /** Sends a command line and resolves with the next line printed (undefined once the process is gone). */
  ask(command: string): Promise<Record<string, unknown> | undefined> {
    if (this.exited) return Promise.resolve(undefined)
    return new Promise((resolve) => {
      this.waiting.push((doc) => resolve(doc.error && !doc.report ? undefined : doc))
      this.child.stdin.write(command + '\n')
    })
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL')
  }
}

/** A `serve` process: answers pings on `port` inside `netns`, as `name`. */
export class StreamServer {
  private constructor(private readonly proc: StreamProcess) {}

  static async start(netns: string, name: string, port: number): Promise<StreamServer> {
    const proc = new StreamProcess(`stream server ${name} on port ${port} in ${netns}`, netns, ['serve', name, String(port)])
    await proc.started
    return new StreamServer(proc)
  }

  stop(): void {
    this.proc.kill()
  }
}

/** A `hold` process: one connection from inside `netns` to host:port, pinging every `intervalMs`. */
export class HeldConnection {
  private constructor(
    private readonly proc: StreamProcess,
    /** The backend that answered the first ping. */
    readonly backend: string,
    readonly target: string,
  ) {}

  /** Connects and resolves once the first ping is answered. */
  static async open(netns: string, host: string, port: number, intervalMs: number): Promise<HeldConnection> {
    const target = `${host.includes(':') ? `[${host}]` : host}:${port}`
    const proc = new StreamProcess(`held connection from ${netns} to ${target}`, netns, ['hold', host, String(port), String(intervalMs)])
    const hello = await proc.started
    return new HeldConnection(proc, String(hello.backend), target)
  }

  /** The counters so far. */
  async report(): Promise<HoldReport> {
    return this.reportOf(await this.proc.ask('report'), 'report')
  }

  /** Stops pinging, waits for the answers in flight (at most 3 s), and returns the final counters. */
  async close(): Promise<HoldReport> {
    return this.reportOf(await this.proc.ask('stop'), 'stop')
  }

  private reportOf(doc: Record<string, unknown> | undefined, command: string): HoldReport {
    if (!doc) throw new Error(`${command} held connection to ${this.target} (backend ${this.backend}): its process is gone`)
    return doc as unknown as HoldReport
  }

  /** Ends the process at once (teardown). */
  kill(): void {
    this.proc.kill()
  }
}
