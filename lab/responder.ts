// A lab pod's one long-lived process (its "containers"): it lives inside the pod's network
// namespace for as long as the pod does, and
// - serves every containerPort of the pod: a TCP connection gets one JSON line, a UDP datagram one
//   JSON datagram, both saying `{pod, peer, port, protocol}` — the pod's own `namespace/name` and
//   the source address that arrived, so a client can tell endpoints apart and see any NAT;
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
const answer = (peer, port, protocol) => JSON.stringify({ pod: podRef, peer: plain(peer), port, protocol }) + '\n'
const hello = (doc) => process.stdout.write(JSON.stringify(doc) + '\n')

function listenTcp(port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      socket.on('error', () => {})
      socket.end(answer(socket.remoteAddress, port, 'TCP'))
    })
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
      socket.on('message', (msg, rinfo) => socket.send(answer(rinfo.address, port, 'UDP'), rinfo.port, rinfo.address))
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

// TCP: a dropped SYN costs connectTimeoutMs; once connected the answer may take replyTimeoutMs
// (a loaded machine delays the responder's process, never the kernel's handshake).
function probeTcp(req, done) {
  let data = ''
  let finished = false
  let connected = false
  const socket = net.connect({ host: req.host, port: req.port })
  const finish = (doc) => { if (!finished) { finished = true; clearTimeout(timer); socket.destroy(); done(doc) } }
  let timer = setTimeout(() => finish({ ok: false, error: 'no connection within ' + req.connectTimeoutMs + ' ms' }), req.connectTimeoutMs)
  socket.on('connect', () => {
    connected = true
    clearTimeout(timer)
    timer = setTimeout(() => finish({ ok: false, error: 'connected, no answer within ' + req.replyTimeoutMs + ' ms' }), req.replyTimeoutMs)
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
  const timer = setTimeout(() => finish({ ok: false, error: 'no answer within ' + req.connectTimeoutMs + ' ms' }), req.connectTimeoutMs)
  socket.on('error', (e) => finish({ ok: false, error: e.code || e.message }))
  socket.on('message', (msg) => {
    const reply = parseAnswer(msg.toString())
    finish(reply ? { ok: true, local: plain(socket.address().address), reply } : { ok: false, error: 'unreadable answer ' + JSON.stringify(msg.toString()) })
  })
  socket.connect(req.port, req.host, (err) => {
    if (err) return finish({ ok: false, error: err.code || err.message })
    socket.send('probe\n', (e) => { if (e) finish({ ok: false, error: e.code || e.message }) })
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
  const what = `start the responder of pod ${pod.ref} in ${pod.netns}`
  await mkdir(join(lab.dir, 'pods'), { recursive: true })
  const control = controlSocketPath(lab, pod.containerId)
  const argv = cleanEnvArgv({}, inNetns(pod.netns, [nodeBinary, '-e', RESPONDER_SOURCE, pod.ref, control, JSON.stringify(pod.ports)]))
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
