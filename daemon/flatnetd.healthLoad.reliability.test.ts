// The health server cannot be used to grow the daemon (issue 8 item 5): a real flatnetd in a node
// namespace takes 2000 connections that never finish a request (half-open, slowloris, oversized
// headers, an endless body) from a client process in the same namespace. Its descriptors and
// resident memory, read from /proc while the load runs, stay under stated bounds; once the
// server's time limits free the slots, /readyz answers again while the hostile client still holds
// its sockets. The bounds are on resources, never on time.
import { spawn } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { testNamespaces } from '../e2e/helpers/index.js'
import { HEALTH_LIMITS } from './health.js'
import { eventually, flatnetdMissingReason, nodeNamespace, startFlatnetd, tempDir } from './testing/harness.js'

const skip = flatnetdMissingReason()
const CLIENTS = 2000
const PORT = 9473
const generator = fileURLToPath(new URL('./testing/halfOpenClients.mjs', import.meta.url))
// Descriptors: the connection limit, plus a few the server may hold briefly while closing the
// surplus (accepted, then closed; 73 above the baseline at most was seen on a machine at load 60).
// Unbounded, the same load held one per connection (470 and rising on that machine).
const FD_BOUND = HEALTH_LIMITS.maxConnections + 32
// Memory: 64 connections of at most 8 KiB of headers each, plus what the reconcile loop and the
// GC do meanwhile. Unbounded, 8000 connections took the daemon from 58 to 140 MB.
const RSS_BOUND_MIB = 24

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024

interface GeneratorStats {
  phase: string
  tried: number
  connected: number
  closedByServer: number
  failed: number
  open: number
}

t.test('2000 never-finished requests leave the daemon within its descriptor and memory bounds, and it answers again', { skip }, async (t) => {
  const dir = tempDir(t, 'dload')
  const ns = await nodeNamespace(testNamespaces(t, 'dload'), '192.168.91.1/24')
  const d = startFlatnetd(
    t,
    ns,
    [
      '--node-name',
      'me',
      '--node-ip',
      '192.168.91.1',
      '--datastore-file',
      join(dir, 'nodes.json'),
      '--state-dir',
      join(dir, 'state'),
      '--cni-conf-dir',
      join(dir, 'net.d'),
      '--ipam-data-dir',
      join(dir, 'ipam'),
      '--reconcile-interval',
      '1',
    ],
    PORT,
  )
  await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    30_000,
  )
  // A few probes first, so the baseline includes a server that has answered (lazy allocations done).
  for (let i = 0; i < 5; i++) await d.http('/metrics')
  const before = { fds: fdCount(d.pid), rss: rssMiB(d.pid) }

  const client = spawn('ip', ['netns', 'exec', ns.name, process.execPath, generator, '127.0.0.1', String(PORT), String(CLIENTS)], { stdio: ['pipe', 'pipe', 'pipe'] })
  const closed = new Promise<void>((resolve) => client.on('close', () => resolve()))
  t.teardown(async () => {
    client.kill('SIGKILL')
    await closed
  })
  const lines: GeneratorStats[] = []
  let partial = ''
  client.stdout!.on('data', (b: Buffer) => {
    const parts = (partial + b.toString()).split('\n')
    partial = parts.pop() ?? ''
    for (const p of parts) if (p) lines.push(JSON.parse(p) as GeneratorStats)
  })
  let stderr = ''
  client.stderr!.on('data', (b: Buffer) => (stderr += b.toString()))

  // Sample the daemon the whole time the load is being built, and keep the peak.
  let peak = { ...before }
  const sample = () => {
    peak = { fds: Math.max(peak.fds, fdCount(d.pid)), rss: Math.max(peak.rss, rssMiB(d.pid)) }
  }
  const holding = await eventually(
    'the client holds its connections',
    () => (sample(), lines.find((l) => l.phase === 'holding')),
    (l) => l !== undefined,
    120_000,
  )
  sample()
  t.comment(`client: ${JSON.stringify(holding)}; daemon before ${before.fds} fds ${before.rss.toFixed(1)} MiB, peak ${peak.fds} fds ${peak.rss.toFixed(1)} MiB`)
  t.equal(stderr, '', 'the client ran')
  t.equal(holding!.tried, CLIENTS, 'every connection was tried')
  t.ok(holding!.open <= HEALTH_LIMITS.maxConnections, `the server keeps at most ${HEALTH_LIMITS.maxConnections} of them open (${holding!.open})`)
  t.ok(peak.fds - before.fds <= FD_BOUND, `descriptors grew by ${peak.fds - before.fds}, at most ${FD_BOUND}`)
  t.ok(peak.rss - before.rss <= RSS_BOUND_MIB, `resident memory grew by ${(peak.rss - before.rss).toFixed(1)} MiB, at most ${RSS_BOUND_MIB} MiB`)

  // The time limits free the slots the hostile connections took: probes get through again while
  // the client is still running and holding whatever the server left it.
  const ready = await eventually(
    '/readyz answers during the load',
    () => (sample(), d.http('/readyz')),
    (r) => r.status === 200,
    60_000,
  )
  t.equal(JSON.parse(ready.body).ready, true)
  t.equal(client.exitCode, null, 'the client was still holding its connections')
  t.ok(peak.fds - before.fds <= FD_BOUND && peak.rss - before.rss <= RSS_BOUND_MIB, `bounds held to the end (peak ${peak.fds} fds, ${peak.rss.toFixed(1)} MiB)`)

  client.stdin!.end()
  await closed
  t.equal(d.exitCode(), undefined, 'the daemon is still running')
  t.equal((await d.http('/healthz')).status, 200)
})
