// A real, throw-away etcd for tests (Debian package etcd-server): loopback only, random free
// ports, a temp data dir; stopped and removed by the returned stop().
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface EtcdTestServer {
  endpoint: string
  stop(): Promise<void>
}

/** A port nothing listens on right now (bound to 0 and released). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(500) })
    return response.ok && ((await response.json()) as { health?: unknown }).health === 'true'
  } catch {
    return false
  }
}

export async function startEtcd(binary = '/usr/bin/etcd'): Promise<EtcdTestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'flatnet-etcd-'))
  const [clientPort, peerPort] = [await freeLoopbackPort(), await freeLoopbackPort()]
  const endpoint = `http://127.0.0.1:${clientPort}`
  const peer = `http://127.0.0.1:${peerPort}`
  let stderr = ''
  const child: ChildProcess = spawn(binary, [
    '--name', 'flatnet-test',
    '--data-dir', dataDir,
    '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `flatnet-test=${peer}`, '--initial-cluster-state', 'new',
    '--logger', 'zap', '--log-level', 'error',
  ], { stdio: ['ignore', 'ignore', 'pipe'] })
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let gone = false
  void exited.then(() => { gone = true })
  const stop = async () => {
    if (!gone) {
      child.kill('SIGKILL')
      await exited
    }
    await rm(dataDir, { recursive: true, force: true })
  }
  const deadline = Date.now() + 20_000
  while (!(await healthy(endpoint))) {
    if (gone || Date.now() > deadline) {
      await stop()
      throw new Error(`start etcd on ${endpoint}: ${gone ? 'it exited' : 'not healthy after 20 s'}: ${stderr.trim()}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return { endpoint, stop }
}
