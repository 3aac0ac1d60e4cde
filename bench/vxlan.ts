// VXLAN convergence of flatnetd: `node bench/run.mjs vxlan [N]` (default 1000).
//
// One real flatnetd (--backend auto) runs in a throw-away namespace whose lan0 holds
// 172.20.0.1/16. Two rounds of N peers each are registered in the file datastore in one claimMany:
//   - reference: N on-link peers (172.20.x.y) → N host-gw routes;
//   - vxlan: N off-link peers (172.21.x.y, publishing backend auto and a VTEP MAC) → N neighbour
//     entries, N FDB entries and N onlink routes through flatnet.vxlan.
// For each: from claimMany committed to every entry present (the namespace dumped every few ms),
// every entry then checked exactly, and the daemon's RSS (VmRSS) and peak (VmHWM). The VXLAN time
// is reported as a ratio to the host-gw reference of the same run (the machine may be loaded by
// other work: absolute times are indicative only). Peers are claimed under a short lease, so each
// round leaves before the next; the leaving is timed too.
// Prints a table, writes JSON to bench/results/, removes its namespace, files and process.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TestNamespaces } from '../e2e/helpers/index.js'
import type { ClaimRequest, SeedingDatastore } from '../daemon/datastore/index.js'
import { openSeedingDatastore } from '../daemon/datastore/testing/seeding.js'
import { DAEMON_ROUTE_PROTOCOL } from '../daemon/routes.js'
import { eventually, flatnetdMissingReason, nodeNamespace, startFlatnetd, tempDir } from '../daemon/testing/harness.js'
import { VXLAN_DEVICE, vtepMacOf } from '../daemon/vxlan.js'
import { listFdb, listNeighbours, NUD_PERMANENT } from '../net/neigh.js'
import { openNetns, warmThreadPool } from '../net/netns.js'
import { closeRtnl, linkByName, listRoutes, openRtnl, type Rtnl } from '../net/rtnl.js'
import { benchCleanup } from './measure.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const N = Number(process.argv[2] ?? 1000)
if (!Number.isInteger(N) || N < 1 || N > 60000) {
  console.error('usage: node bench/run.mjs vxlan [N]   (1 ≤ N ≤ 60000; default 1000)')
  process.exit(2)
}
const CLUSTER = '10.0.0.0/8'
const PEER_LEASE_S = 8
const POLL_MS = 5
const { teardown: t, cleanUp } = benchCleanup()

function memoryOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024 }
}

interface Entries {
  routes: Map<string, string | undefined>
  neighbours: Map<string, string | undefined>
  fdb: Map<string, string | undefined>
}

async function entries(rtnl: Rtnl): Promise<Entries> {
  const routes = new Map<string, string | undefined>()
  for (const r of await listRoutes(rtnl, 4)) if (r.protocol === DAEMON_ROUTE_PROTOCOL) routes.set(`${r.dst}/${r.dstLength}`, r.gateway)
  const dev = await linkByName(rtnl, VXLAN_DEVICE[4])
  const neighbours = new Map<string, string | undefined>()
  const fdb = new Map<string, string | undefined>()
  if (dev) {
    for (const n of await listNeighbours(rtnl, 4, dev.index)) if (n.state & NUD_PERMANENT) neighbours.set(n.address, n.mac)
    for (const f of await listFdb(rtnl, dev.index)) if (f.dst) fdb.set(f.mac, f.dst)
  }
  return { routes, neighbours, fdb }
}

async function until(rtnl: Rtnl, done: (e: Entries) => boolean, timeoutMs: number): Promise<{ at: number; last: Entries }> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const last = await entries(rtnl)
    const at = performance.timeOrigin + performance.now()
    if (done(last)) return { at, last }
    if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms (${last.routes.size} routes, ${last.neighbours.size} neighbours, ${last.fdb.size} fdb entries)`)
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
}

function peer(kind: 'hostgw' | 'vxlan', i: number): ClaimRequest {
  const host = i + 1
  const [x, y] = [Math.floor(host / 254), (host % 254) + 1]
  const name = `${kind}-${i}`
  const req: ClaimRequest = { name, nodeIP: `172.${kind === 'hostgw' ? 20 : 21}.${x}.${y}`, owner: 'bench', clusterCidr: CLUSTER, prefixLength: 24 }
  return kind === 'vxlan' ? { ...req, backend: 'auto', vtepMac: vtepMacOf(name) } : req
}

interface Row {
  backend: 'host-gw' | 'vxlan'
  n: number
  entries: number
  convergeMs: number
  removeMs: number
  rssMiB: number
  peakMiB: number
  verified: boolean
}

async function round(store: SeedingDatastore, rtnl: Rtnl, pid: number, kind: 'hostgw' | 'vxlan'): Promise<Row> {
  const records = await store.claimMany(Array.from({ length: N }, (_, i) => peer(kind, i)))
  const registered = performance.timeOrigin + performance.now()
  const vx = kind === 'vxlan'
  const conv = await until(rtnl, (e) => e.routes.size === N && (!vx || (e.neighbours.size === N && e.fdb.size === N)), 60_000)
  const mem = memoryOf(pid)
  const e = conv.last
  const verified = records.every((r) => {
    const network = r.subnet.split('/')[0]!
    if (!vx) return e.routes.get(r.subnet) === r.nodeIP
    return e.routes.get(r.subnet) === network && e.neighbours.get(network) === r.vtepMac && e.fdb.get(r.vtepMac!) === r.nodeIP
  })
  const expires = Date.parse(records[0]!.updatedAt) + PEER_LEASE_S * 1000
  const gone = await until(rtnl, (x) => x.routes.size === 0 && x.neighbours.size === 0 && x.fdb.size === 0, PEER_LEASE_S * 1000 + 60_000)
  return { backend: vx ? 'vxlan' : 'host-gw', n: N, entries: vx ? 3 * N : N, convergeMs: conv.at - registered, removeMs: gone.at - expires, ...mem, verified }
}

async function main(): Promise<void> {
  const missing = flatnetdMissingReason()
  if (missing) throw new Error(missing)
  const started = Date.now()
  await warmThreadPool()
  const nss = new TestNamespaces('vxbench')
  t.teardown(() => nss.removeAll())
  const ns = await nodeNamespace(nss, '172.20.0.1/16')
  const dir = tempDir(t, 'vxbench')
  const storePath = join(dir, 'nodes.json')
  const store = await openSeedingDatastore({ kind: 'file', path: storePath, leaseTtlSeconds: PEER_LEASE_S })
  t.teardown(() => store.close())
  const daemon = startFlatnetd(t, ns, [
    '--node-name',
    'self',
    '--node-ip',
    '172.20.0.1',
    '--cluster-cidr',
    CLUSTER,
    '--service-cidr',
    '192.168.250.0/24',
    '--backend',
    'auto',
    '--datastore-file',
    storePath,
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    join(dir, 'net.d'),
    '--reconcile-interval',
    '600',
    '--log-level',
    process.env.BENCH_LOG_LEVEL ?? 'warn',
  ])
  t.teardown(() => daemon.stop('SIGTERM'))
  await eventually(
    'flatnetd ready',
    () => daemon.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  const handle = openNetns(ns.path)
  const rtnl = openRtnl(handle)
  t.teardown(() => {
    closeRtnl(rtnl)
    handle.close()
  })
  const idle = memoryOf(daemon.pid)
  const rows: Row[] = []
  for (const kind of ['hostgw', 'vxlan'] as const) {
    rows.push(await round(store, rtnl, daemon.pid, kind))
    const r = rows.at(-1)!
    console.error(`${r.backend}: ${N} peers converged in ${r.convergeMs.toFixed(0)} ms, removed in ${r.removeMs.toFixed(0)} ms, RSS ${r.rssMiB.toFixed(1)} MiB`)
  }
  const stopCode = await daemon.stop('SIGTERM')
  const [ref, vx] = rows as [Row, Row]
  const results = {
    benchmark: 'vxlan',
    when: new Date(started).toISOString(),
    durationSec: (Date.now() - started) / 1000,
    cluster: CLUSTER,
    peerLeaseSeconds: PEER_LEASE_S,
    pollMs: POLL_MS,
    idle,
    rows,
    convergeRatio: vx.convergeMs / ref.convergeMs,
    stopExitCode: stopCode,
  }
  console.log(`\nflatnetd VXLAN convergence — ${N} off-link peers (neighbour + FDB + route each) vs ${N} on-link peers (host-gw route each), same daemon, same run`)
  const head = ['backend', 'peers', 'entries', 'converge ms', 'remove ms', 'RSS MiB', 'peak RSS MiB', 'exact']
  const cells = rows.map((r) => [r.backend, String(r.n), String(r.entries), r.convergeMs.toFixed(0), r.removeMs.toFixed(0), r.rssMiB.toFixed(1), r.peakMiB.toFixed(1), r.verified ? 'yes' : 'NO'])
  const widths = head.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c]!.length)))
  for (const row of [head, ...cells]) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   '))
  console.log(
    `\nVXLAN / host-gw convergence: ${results.convergeRatio.toFixed(2)}× (idle RSS ${idle.rssMiB.toFixed(1)} MiB). remove: lease expiry → no entry left (includes the file watch's ≤ 500 ms expiry detection).`,
  )
  const out = join(root, 'bench', 'results')
  mkdirSync(out, { recursive: true })
  const file = join(out, `vxlan-${results.when.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n')
  console.log(`JSON: ${file}  (${results.durationSec.toFixed(0)} s)`)
}

main()
  .catch((e) => {
    console.error(`bench vxlan: ${(e as Error).stack ?? e}`)
    process.exitCode = 1
  })
  .finally(() => cleanUp())
