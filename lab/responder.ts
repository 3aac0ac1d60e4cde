// A lab pod's one long-lived process (its "containers"): it lives inside the pod's network
// namespace for as long as the pod does, and
// - serves every containerPort of the pod, saying `{pod, peer, port, protocol}` — the pod's own
//   `namespace/name` and the source address that arrived, so a client can tell endpoints apart and
//   see any NAT:
//   - TCP: a connection whose first line is an HTTP request line gets an HTTP/1.1 response (so
//     `curl http://<node>:<nodePort>/` works as the Kubernetes docs show it), see HTTP_PATHS below;
//     any other first line gets the JSON line and the connection closes; a client that sends
//     nothing gets the JSON line after SILENT_CLIENT_MS (the lab's own probers send a line at once);
//   - UDP: every datagram gets one JSON datagram;
//   - a TCP first line or a UDP datagram `echo <text>` adds `echo: <text>` to the JSON: the payload
//     crossed the network both ways (the upstream "large requests" tests send 2 kB this way).
// - probes on request: a unix socket under the lab's directory (a file, so reachable from any
//   namespace) takes `{"id":1,"host":"10.244.1.2","port":80,"protocol":"TCP","connectTimeoutMs":300}`
//   lines and answers each with what the connection from inside the pod got.
// SCTP ports are declared on the Pod but get no socket: this kernel has no SCTP sockets
// (CONFIG_IP_SCTP is off; nftables can still match SCTP).
//
// It is started detached (the pod outlives the `flatnetctl` that made it) and ends with the pod's
// namespace: deleteNetns stops every process inside it. The source is plain JavaScript in a string
// so that dist/bin/flatnetctl carries it with no extra file to install.
import { spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { cleanEnvArgv, inNetns, nodeBinary } from './exec.js'
import type { LabLayout } from './layout.js'
import type { PodPort } from './podSpec.js'

export const RESPONDER_SOURCE = String.raw`'use strict'
const net = require('node:net')
const dgram = require('node:dgram')
const fs = require('node:fs')
const [podRef, controlPath, portsJson] = process.argv.slice(1)
const ports = JSON.parse(portsJson)
// A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d: name them as the packet carried them.
const plain = (a) => (typeof a === 'string' && a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a)
const facts = (peer, port, protocol, echo) => ({ pod: podRef, peer: plain(peer), port, protocol, ...(echo === undefined ? {} : { echo }) })
const answer = (peer, port, protocol, echo) => JSON.stringify(facts(peer, port, protocol, echo)) + '\n'
// 'echo <text>' (a TCP first line, a UDP datagram without its one trailing newline): the text to send back.
const echoOf = (line) => (line.startsWith('echo ') ? line.slice(5) : undefined)
const hello = (doc) => process.stdout.write(JSON.stringify(doc) + '\n')

// A TCP client that sends nothing (nc, a bare connect) is answered after this long: any HTTP
// client or lab prober speaks within microseconds of the handshake, on the same machine.
const SILENT_CLIENT_MS = 150
// The first line and HTTP headers are small; echo bodies and /bytes/N answers are capped so a
// mistyped N cannot make the pod allocate gigabytes.
const MAX_HEAD = 64 * 1024
const MAX_BODY = 4 * 1024 * 1024
const HTTP_REQUEST_LINE = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/

function httpResponse(socket, method, status, type, body) {
  const reason = { 200: 'OK', 400: 'Bad Request', 404: 'Not Found', 413: 'Payload Too Large' }[status]
  const head = 'HTTP/1.1 ' + status + ' ' + reason + '\r\nContent-Type: ' + type + '\r\nContent-Length: ' + body.length + '\r\nConnection: close\r\n\r\n'
  socket.end(method === 'HEAD' ? Buffer.from(head) : Buffer.concat([Buffer.from(head), body]))
}

// The paths, as agnhost netexec (the upstream e2e tests' server) names them where they overlap:
//   /            the JSON facts (pod, peer, port, protocol)
//   /hostname    the pod's name
//   /clientip    the client's address and port as the pod saw them (host:port, [v6]:port)
//   /echo?msg=X  X;  POST /echo: the request body
//   /bytes/N     N bytes (a download of a known size)
function serveHttp(socket, port, method, target, body) {
  const url = new URL(target, 'http://pod')
  const peer = plain(socket.remoteAddress)
  const text = (t) => Buffer.from(t)
  if (url.pathname === '/') return httpResponse(socket, method, 200, 'application/json', text(answer(peer, port, 'TCP')))
  if (url.pathname === '/hostname') return httpResponse(socket, method, 200, 'text/plain', text(podRef.slice(podRef.indexOf('/') + 1)))
  if (url.pathname === '/clientip') return httpResponse(socket, method, 200, 'text/plain', text((peer.includes(':') ? '[' + peer + ']' : peer) + ':' + socket.remotePort))
  if (url.pathname === '/echo') return httpResponse(socket, method, 200, 'text/plain', method === 'POST' ? body : text(url.searchParams.get('msg') || ''))
  const bytes = /^\/bytes\/(\d+)$/.exec(url.pathname)
  if (bytes) {
    const n = Number(bytes[1])
    if (n > MAX_BODY) return httpResponse(socket, method, 413, 'text/plain', text('at most ' + MAX_BODY + ' bytes\n'))
    return httpResponse(socket, method, 200, 'application/octet-stream', Buffer.alloc(n, 'x'))
  }
  httpResponse(socket, method, 404, 'text/plain', text('no ' + url.pathname + ' here: try / /hostname /clientip /echo?msg= /bytes/N\n'))
}

function serveTcp(socket, port) {
  socket.on('error', () => {})
  let received = Buffer.alloc(0)
  let decided = false
  const jsonAnswer = (echo) => {
    decided = true
    clearTimeout(silence)
    socket.end(answer(socket.remoteAddress, port, 'TCP', echo))
  }
  const silence = setTimeout(() => jsonAnswer(), SILENT_CLIENT_MS)
  const look = (ended) => {
    if (decided) return
    const nl = received.indexOf(10)
    if (nl < 0 && !ended && received.length < MAX_HEAD) return
    const first = received.subarray(0, nl < 0 ? received.length : nl).toString('latin1').replace(/\r$/, '')
    const request = HTTP_REQUEST_LINE.exec(first)
    if (!request) return jsonAnswer(echoOf(first))
    clearTimeout(silence)
    const headEnd = received.indexOf('\r\n\r\n')
    if (headEnd < 0) {
      if (ended || received.length >= MAX_HEAD) { decided = true; httpResponse(socket, request[1], 400, 'text/plain', Buffer.from('incomplete request head\n')) }
      return
    }
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(received.subarray(0, headEnd).toString('latin1'))?.[1] ?? 0)
    if (length > MAX_BODY) { decided = true; return httpResponse(socket, request[1], 413, 'text/plain', Buffer.from('at most ' + MAX_BODY + ' bytes\n')) }
    const body = received.subarray(headEnd + 4)
    if (body.length < length && !ended) return
    decided = true
    serveHttp(socket, port, request[1], request[2], body.subarray(0, length))
  }
  socket.on('data', (d) => { received = Buffer.concat([received, d]); look(false) })
  socket.on('end', () => look(true))
}

function listenTcp(port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => serveTcp(socket, port))
    // '::' also takes IPv4 (ipv6Only false); a namespace without IPv6 only has 0.0.0.0.
    server.once('error', (e) => {
      if (e.code !== 'EAFNOSUPPORT' && e.code !== 'EADDRNOTAVAIL') return reject(new Error('listen on TCP ' + port + ': ' + (e.code || e.message)))
      server.once('error', (e2) => reject(new Error('listen on TCP ' + port + ': ' + (e2.code || e2.message))))
      server.listen(port, '0.0.0.0', resolve)
    })
    server.listen({ port, host: '::', ipv6Only: false }, resolve)
  })
}

function listenUdp(port) {
  const bind = (type, host) =>
    new Promise((resolve, reject) => {
      const socket = dgram.createSocket({ type, ipv6Only: false })
      socket.once('error', reject)
      socket.on('message', (msg, rinfo) => socket.send(answer(rinfo.address, port, 'UDP', echoOf(msg.toString().replace(/\n$/, ''))), rinfo.port, rinfo.address))
      socket.bind(port, host, () => {
        socket.removeListener('error', reject)
        socket.on('error', () => {})
        resolve()
      })
    })
  return bind('udp6', '::').catch((e) => {
    if (e.code !== 'EAFNOSUPPORT' && e.code !== 'EADDRNOTAVAIL') throw new Error('listen on UDP ' + port + ': ' + (e.code || e.message))
    return bind('udp4', '0.0.0.0').catch((e2) => { throw new Error('listen on UDP ' + port + ': ' + (e2.code || e2.message)) })
  })
}

function parseAnswer(text) {
  try {
    return JSON.parse(text)
  } catch (e) {
    return undefined
  }
}

// A timer that ran out is judged only after the I/O that was already waiting is read: a process
// descheduled past its deadline on a loaded machine runs its expired timers before it polls, and
// would call a connection that completed long ago a timeout.
const lateTimer = (ms, fn) => setTimeout(() => setImmediate(fn), ms)

// TCP: a dropped SYN costs connectTimeoutMs; once connected the answer may take replyTimeoutMs
// (a loaded machine delays the responder's process, never the kernel's handshake).
function probeTcp(req, done) {
  let data = ''
  let finished = false
  let connected = false
  const socket = net.connect({ host: req.host, port: req.port })
  const finish = (doc) => { if (!finished) { finished = true; clearTimeout(timer); socket.destroy(); done(doc) } }
  let timer = lateTimer(req.connectTimeoutMs, () => connected || finish({ ok: false, error: 'no connection within ' + req.connectTimeoutMs + ' ms' }))
  socket.on('connect', () => {
    connected = true
    // Speak first: the responder answers a line at once instead of waiting out a silent client.
    socket.write(req.payload === undefined ? 'probe\n' : 'echo ' + req.payload + '\n')
    clearTimeout(timer)
    timer = lateTimer(req.replyTimeoutMs, () => finish({ ok: false, error: 'connected, no answer within ' + req.replyTimeoutMs + ' ms' }))
  })
  socket.on('error', (e) => finish({ ok: false, error: e.code || e.message }))
  socket.on('data', (d) => { data += d })
  socket.on('end', () => {
    const reply = parseAnswer(data)
    finish(reply ? { ok: true, local: plain(socket.localAddress), reply } : { ok: false, error: 'unreadable answer ' + JSON.stringify(data) })
  })
}

// UDP: one datagram out, the answer datagram back; an ICMP port unreachable surfaces as
// ECONNREFUSED on a connected socket. Silence for timeoutMs is "no answer".
function probeUdp(req, done) {
  let finished = false
  const socket = dgram.createSocket({ type: req.host.includes(':') ? 'udp6' : 'udp4' })
  const finish = (doc) => { if (!finished) { finished = true; clearTimeout(timer); try { socket.close() } catch (e) {} done(doc) } }
  const timer = lateTimer(req.connectTimeoutMs, () => finish({ ok: false, error: 'no answer within ' + req.connectTimeoutMs + ' ms' }))
  socket.on('error', (e) => finish({ ok: false, error: e.code || e.message }))
  socket.on('message', (msg) => {
    const reply = parseAnswer(msg.toString())
    finish(reply ? { ok: true, local: plain(socket.address().address), reply } : { ok: false, error: 'unreadable answer ' + JSON.stringify(msg.toString()) })
  })
  socket.connect(req.port, req.host, (err) => {
    if (err) return finish({ ok: false, error: err.code || err.message })
    socket.send(req.payload === undefined ? 'probe\n' : 'echo ' + req.payload + '\n', (e) => { if (e) finish({ ok: false, error: e.code || e.message }) })
  })
}

function serveControl() {
  try { fs.unlinkSync(controlPath) } catch (e) {}
  const server = net.createServer((client) => {
    let buffered = ''
    client.setEncoding('utf8')
    client.on('error', () => {})
    client.on('data', (chunk) => {
      buffered += chunk
      let nl
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const req = JSON.parse(buffered.slice(0, nl))
        buffered = buffered.slice(nl + 1)
        const probe = req.protocol === 'UDP' ? probeUdp : probeTcp
        probe(req, (res) => { if (!client.destroyed) client.write(JSON.stringify({ id: req.id, ...res }) + '\n') })
      }
    })
  })
  return new Promise((resolve, reject) => {
    server.once('error', (e) => reject(new Error('listen on ' + controlPath + ': ' + (e.code || e.message))))
    server.listen(controlPath, resolve)
  })
}

Promise.all([
  ...ports.filter((p) => p.protocol === 'TCP').map((p) => listenTcp(p.port)),
  ...ports.filter((p) => p.protocol === 'UDP').map((p) => listenUdp(p.port)),
  serveControl(),
]).then(
  () => hello({ ready: true, pid: process.pid }),
  (e) => { hello({ ready: false, error: e.message }); process.exit(1) },
)
process.on('SIGTERM', () => { try { fs.unlinkSync(controlPath) } catch (e) {} process.exit(0) })
`

/** Where the responder of the pod with this sandbox id takes probe requests (sun_path is 108 bytes: keep it short). */
export function controlSocketPath(lab: LabLayout, containerId: string): string {
  return join(lab.dir, 'pods', `${containerId.slice(0, 12)}.sock`)
}

export function responderLogPath(lab: LabLayout, containerId: string): string {
  return join(lab.dir, 'pods', `${containerId.slice(0, 12)}.log`)
}

/**
 * Starts the pod's responder inside `netns` and resolves with its pid once every TCP/UDP port and
 * the control socket listen. It is detached: it lives until the pod's namespace is deleted.
 */
export async function startResponder(lab: LabLayout, pod: { ref: string; netns: string; containerId: string; ports: readonly PodPort[] }, timeoutMs = 10_000): Promise<number> {
  const control = controlSocketPath(lab, pod.containerId)
  return startPodProcess(lab, pod, [nodeBinary, '-e', RESPONDER_SOURCE, pod.ref, control, JSON.stringify(pod.ports)], 'responder', timeoutMs)
}

/**
 * Starts a pod's process (`argv`, run inside the pod's namespace with a clean environment) and
 * resolves with its pid once it printed `{"ready":true}` on stdout; its stderr goes to the pod's
 * log file. The responder is one such process, the lab's cluster add-ons another.
 */
export async function startPodProcess(lab: LabLayout, pod: { ref: string; netns: string; containerId: string }, command: readonly string[], role: string, timeoutMs = 10_000): Promise<number> {
  const what = `start the ${role} of pod ${pod.ref} in ${pod.netns}`
  await mkdir(join(lab.dir, 'pods'), { recursive: true })
  const argv = cleanEnvArgv({}, inNetns(pod.netns, command))
  const log = openSync(responderLogPath(lab, pod.containerId), 'a')
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', 'pipe', log] })
    return await new Promise<number>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => fail(`not listening after ${timeoutMs} ms`), timeoutMs)
      const fail = (why: string) => {
        clearTimeout(timer)
        child.kill('SIGKILL')
        reject(new Error(`${what}: ${why}`))
      }
      child.once('error', (err) => fail(err.message))
      child.once('exit', (code) => fail(`exited with ${code} (log ${responderLogPath(lab, pod.containerId)})`))
      child.stdout!.setEncoding('utf8')
      child.stdout!.on('data', (chunk: string) => {
        out += chunk
        const nl = out.indexOf('\n')
        if (nl < 0) return
        clearTimeout(timer)
        let hello: { ready?: boolean; pid?: number; error?: string } = {}
        try {
          hello = JSON.parse(out.slice(0, nl)) as typeof hello
        } catch {
          return fail(`unreadable output ${JSON.stringify(out.slice(0, nl))}`)
        }
        if (!hello.ready) return fail(hello.error ?? 'not ready')
        // It says nothing more on stdout: let it go on without us.
        child.removeAllListeners('exit')
        child.stdout!.destroy()
        child.unref()
        resolve(child.pid!)
      })
    })
  } finally {
    closeSync(log)
  }
}

export async function removeResponderFiles(lab: LabLayout, containerId: string): Promise<void> {
  await rm(controlSocketPath(lab, containerId), { force: true })
  await rm(responderLogPath(lab, containerId), { force: true })
}

export type ProbeProtocol = 'TCP' | 'UDP'

/** What a responder answered: who it is and the source address it saw. */
export interface ResponderAnswer {
  pod: string
  peer: string
  port: number
  protocol: ProbeProtocol
  /** The probe's `payload`, as it came back (absent when the probe sent none). */
  echo?: string
}

export type PodProbeResult = { ok: true; local: string; reply: ResponderAnswer } | { ok: false; error: string }

export interface ProbeRequest {
  host: string
  port: number
  protocol: ProbeProtocol
  /** TCP: until the handshake completes; UDP: until the answer arrives. */
  connectTimeoutMs?: number
  /** TCP: from the handshake to the answer. */
  replyTimeoutMs?: number
  /** Sent as `echo <payload>` and returned in the answer's `echo` (no newline in it: TCP reads one line). */
  payload?: string
}

/** A connection to one pod's responder control socket: probes made from inside that pod. */
export class PodProber {
  private buffered = ''
  private nextId = 1
  private readonly pending = new Map<number, (r: PodProbeResult) => void>()
  private closed: string | undefined

  private constructor(
    readonly pod: string,
    private readonly socket: Socket,
  ) {
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      this.buffered += chunk
      let nl: number
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl)
        this.buffered = this.buffered.slice(nl + 1)
        const { id, ...result } = JSON.parse(line) as { id: number } & PodProbeResult
        this.pending.get(id)?.(result as PodProbeResult)
        this.pending.delete(id)
      }
    })
    const end = (why: string) => {
      this.closed = why
      for (const resolve of this.pending.values()) resolve({ ok: false, error: `responder of ${pod}: ${why}` })
      this.pending.clear()
    }
    socket.on('error', (err) => end(err.message))
    socket.on('close', () => end('control connection closed'))
  }

  static open(pod: string, controlPath: string): Promise<PodProber> {
    return new Promise((resolve, reject) => {
      const socket = connect(controlPath)
      socket.once('error', (err) => reject(new Error(`connect to the responder of pod ${pod} (${controlPath}): ${err.message}`)))
      socket.once('connect', () => {
        socket.removeAllListeners('error')
        resolve(new PodProber(pod, socket))
      })
    })
  }

  probe(req: ProbeRequest): Promise<PodProbeResult> {
    if (this.closed) return Promise.resolve({ ok: false, error: `responder of ${this.pod}: ${this.closed}` })
    const id = this.nextId++
    return new Promise((resolve) => {
      this.pending.set(id, resolve)
      this.socket.write(JSON.stringify({ id, connectTimeoutMs: 300, replyTimeoutMs: 2000, ...req }) + '\n')
    })
  }

  close(): void {
    this.socket.destroy()
  }
}
