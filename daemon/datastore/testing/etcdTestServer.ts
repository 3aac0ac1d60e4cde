// A real, throw-away etcd for tests (Debian package etcd-server): loopback only, random free
// ports, a temp data dir; stopped and removed by the returned stop().
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface EtcdTestServer {
  endpoint: string
  /** Kills etcd (SIGKILL), waits downMs, starts it again on the same ports and data dir. */
  restart(downMs?: number): Promise<void>
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
  const args = [
    '--name',
    'flatnet-test',
    '--data-dir',
    dataDir,
    '--listen-client-urls',
    endpoint,
    '--advertise-client-urls',
    endpoint,
    '--listen-peer-urls',
    peer,
    '--initial-advertise-peer-urls',
    peer,
    '--initial-cluster',
    `flatnet-test=${peer}`,
    '--initial-cluster-state',
    'new',
    '--logger',
    'zap',
    '--log-level',
    'error',
  ]
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()

  const kill = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
    child = undefined
  }
  const launch = async () => {
    let stderr = ''
    const c = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    child = c
    c.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000)
    })
    exited = new Promise<void>((resolve) => c.once('exit', () => resolve()))
    const deadline = Date.now() + 20_000
    while (!(await healthy(endpoint))) {
      const gone = c.exitCode !== null || c.signalCode !== null
      if (gone || Date.now() > deadline) {
        await kill()
        throw new Error(`start etcd on ${endpoint}: ${gone ? 'it exited' : 'not healthy after 20 s'}: ${stderr.trim()}`)
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const stop = async () => {
    await kill()
    await rm(dataDir, { recursive: true, force: true })
  }
  try {
    await launch()
  } catch (err) {
    await stop()
    throw err
  }
  return {
    endpoint,
    stop,
    // Same ports and data: clients see an outage, then the same cluster again.
    async restart(downMs = 0) {
      await kill()
      await new Promise((r) => setTimeout(r, downMs))
      await launch()
    },
  }
}
