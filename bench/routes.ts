// Route convergence of flatnetd: `node bench/run.mjs routes [--dual] [N …]` (default 100 1000 5000).
//
// --dual: a dual-stack cluster (10.0.0.0/8 and fd00:10::/48, /24 and /64 per node), lan0 also
// holds fd00:20::1/64, and every peer has an address of each family: N peers are 2N routes
// (issue 9's target: 5000 dual-stack peers, 10 000 routes, converge in ≤ 2 s).
//
// One real flatnetd runs in a throw-away namespace whose lan0 holds 172.20.0.1/16, so peers at
// 172.20.x.y are on-link (no traffic flows; routes only need an on-link gateway). For each N, N
// peers of a 10.0.0.0/8 cluster (/24 each) are registered in the file datastore in one claimMany;
// we measure, by dumping the namespace's routing table every few ms:
//   - converge: from the registration (claimMany committed) to all N `proto 200` routes present
//     (and then check every one is exactly `<subnet> via <nodeIP>`);
//   - remove: the peers were claimed under a short lease, so they all leave at one instant (their
//     expiry); from that instant to no `proto 200` route left. This includes the file datastore's
//     detection of expiry (its watch re-reads at least every 500 ms): what an operator would see.
//   - the daemon's RSS (VmRSS) after convergence, and its peak (VmHWM).
// Targets (issue 3): 5000 routes converge in ≤ 2 s; RSS ≤ 100 MB at 5000 nodes.
// Prints a table, writes JSON to bench/results/, removes its namespace, files and process.
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TestNamespaces, runOk } from '../e2e/helpers/index.js'
import { nodeFamilies, type ClaimRequest, type SeedingDatastore } from '../daemon/datastore/index.js'
import { openSeedingDatastore } from '../daemon/datastore/testing/seeding.js'
import { DAEMON_ROUTE_PROTOCOL } from '../daemon/routes.js'
import { eventually, flatnetdBinary, flatnetdMissingReason, nodeNamespace, startFlatnetd, tempDir } from '../daemon/testing/harness.js'
import { openNetns, warmThreadPool, type NetnsHandle } from '../net/netns.js'
import { closeRtnl, listRoutes, openRtnl, type Rtnl } from '../net/rtnl.js'
import { benchCleanup } from './measure.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const DUAL = process.argv.includes('--dual')
const sizes = process.argv
  .slice(2)
  .filter((a) => a !== '--dual')
  .map(Number)
if (sizes.length === 0) sizes.push(100, 1000, 5000)
if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 60000)) {
  console.error('usage: node bench/run.mjs routes [--dual] [N …]   (1 ≤ N ≤ 60000; default 100 1000 5000)')
  process.exit(2)
}
const CLUSTER = '10.0.0.0/8'
const CLUSTER6 = 'fd00:10::/48'
/** Routes per peer: one per family. */
const FAMILIES = DUAL ? 2 : 1
/** Peers' lease: long enough to converge and check, short enough to keep the run brief. */
const PEER_LEASE_S = 6
const POLL_MS = 5

const { teardown: t, cleanUp } = benchCleanup()

function memoryOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024 }
}

async function ownRoutes(rtnl: Rtnl): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>()
  for (const family of DUAL ? ([4, 6] as const) : ([4] as const)) {
    for (const r of await listRoutes(rtnl, family)) if (r.protocol === DAEMON_ROUTE_PROTOCOL) out.set(`${r.dst}/${r.dstLength}`, r.gateway)
  }
  return out
}

/** Polls the kernel until `done(count)`; returns when, and how many dumps it took. */
async function until(rtnl: Rtnl, done: (count: number) => boolean, timeoutMs: number): Promise<{ at: number; dumps: number }> {
  const deadline = Date.now() + timeoutMs
  for (let dumps = 1; ; dumps++) {
    const count = (await ownRoutes(rtnl)).size
    const at = performance.timeOrigin + performance.now()
    if (done(count)) return { at, dumps }
    if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms (${count} proto ${DAEMON_ROUTE_PROTOCOL} routes)`)
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
}

/** Peer i (1-based) of round `round`: node IP 172.20.x.y (never .0, never the daemon's 172.20.0.1), and fd00:20::x:y with --dual. */
function peer(round: number, i: number): ClaimRequest {
  // Distinct addresses (flatnetd refuses two nodes of one address): 172.20.x.y with y in 1..254, from 172.20.0.3 on.
  const host = i + 1
  const [x, y] = [Math.floor(host / 254), (host % 254) + 1]
  const nodeIP = `172.20.${x}.${y}`
  const req: ClaimRequest = { name: `r${round}-p${i}`, nodeIP, owner: 'bench', clusterCidr: CLUSTER, prefixLength: 24 }
  if (!DUAL) return req
  return { ...req, nodeIPs: [nodeIP, `fd00:20::${x ? `${x.toString(16)}:` : ''}${y.toString(16)}`], moreRanges: [{ clusterCidr: CLUSTER6, prefixLength: 64 }] }
}

interface Row {
  n: number
  /** claimMany's own time (the datastore's, before the daemon can react). */
  claimMs: number
  convergeMs: number
  removeMs: number
  rssMiB: number
  peakMiB: number
  verified: boolean
}

async function round(store: SeedingDatastore, rtnl: Rtnl, pid: number, http: (path: string) => Promise<{ body: string }>, n: number, index: number): Promise<Row> {
  const reqs = Array.from({ length: n }, (_, k) => peer(index, k + 1))
  const claimStart = performance.now()
  const records = await store.claimMany(reqs)
  const registered = performance.timeOrigin + performance.now()
  const claimMs = performance.now() - claimStart
  // The peers' lease runs from updatedAt, set when claimMany began: a claim slower than the lease
  // would hand the daemon peers that are already gone.
  if (claimMs > PEER_LEASE_S * 1000 * 0.5) throw new Error(`claimMany of ${n} peers took ${claimMs.toFixed(0)} ms, too close to the ${PEER_LEASE_S} s lease`)
  const conv = await until(rtnl, (c) => c === n * FAMILIES, 30_000)
  const routes = await ownRoutes(rtnl)
  const verified = records.every((r) => nodeFamilies(r).every((f) => f.nodeIP !== undefined && routes.get(f.subnet) === f.nodeIP) && nodeFamilies(r).length === FAMILIES)
  const mem = memoryOf(pid)
  if (process.env.BENCH_SNAPSHOT && n === 5000) {
    process.kill(pid, 'SIGUSR2')
    await new Promise((r) => setTimeout(r, 8000))
  }
  if (process.env.BENCH_HEAP) {
    const m = (await http('/metrics')).body
    console.error(
      `N=${n}: heap used ${(Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(m)?.[1]) / 1048576).toFixed(1)} MiB of ${(Number(/^nodejs_heap_size_total_bytes (\S+)$/m.exec(m)?.[1]) / 1048576).toFixed(1)} MiB`,
    )
  }
  // All peers leave at once when their lease runs out.
  const expires = Date.parse(records[0]!.updatedAt) + PEER_LEASE_S * 1000
  const gone = await until(rtnl, (c) => c === 0, PEER_LEASE_S * 1000 + 30_000)
  return { n, claimMs, convergeMs: conv.at - registered, removeMs: gone.at - expires, ...mem, verified }
}

async function main(): Promise<void> {
  const missing = flatnetdMissingReason()
  if (missing) throw new Error(missing)
  const started = Date.now()
  await warmThreadPool()
  const nss = new TestNamespaces('broutes')
  t.teardown(() => nss.removeAll())
  const ns = await nodeNamespace(nss, '172.20.0.1/16')
  if (DUAL) await runOk(['ip', '-n', ns.name, 'addr', 'add', 'fd00:20::1/64', 'dev', 'lan0', 'nodad'])
  const dir = tempDir(t, 'broutes')
  const storePath = join(dir, 'nodes.json')
  const store = await openSeedingDatastore({ kind: 'file', path: storePath, leaseTtlSeconds: PEER_LEASE_S })
  t.teardown(() => store.close())
  // The periodic pass is set far out: what is measured is the reaction to datastore changes.
  const daemon = startFlatnetd(t, ns, [
    '--node-name',
    'self',
    '--node-ip',
    DUAL ? '172.20.0.1,fd00:20::1' : '172.20.0.1',
    '--cluster-cidr',
    DUAL ? `${CLUSTER},${CLUSTER6}` : CLUSTER,
    ...(DUAL ? ['--node-prefix-length', '24,64'] : []),
    // The default service range (10.96.0.0/16) lies inside 10.0.0.0/8, which flatnetd refuses.
    '--service-cidr',
    '192.168.250.0/24',
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
  const handle: NetnsHandle = openNetns(ns.path)
  const rtnl = openRtnl(handle)
  t.teardown(() => {
    closeRtnl(rtnl)
    handle.close()
  })
  const idle = memoryOf(daemon.pid)

  const rows: Row[] = []
  for (const [i, n] of sizes.entries()) {
    try {
      rows.push(await round(store, rtnl, daemon.pid, daemon.http, n, i))
    } catch (e) {
      const tail = daemon.logs.slice(-Number(process.env.BENCH_TAIL ?? 15)).map((l) => JSON.stringify(l).slice(0, 400))
      tail.push(`/readyz: ${(await daemon.http('/readyz').catch((err: Error) => ({ body: err.message }))).body.slice(0, 2000)}`)
      throw new Error(
        `N=${n}: ${(e as Error).message}\nflatnetd ${daemon.exitCode() === undefined ? 'running' : `exited ${daemon.exitCode()}`}; last log lines:\n${tail.join('\n')}\nstderr: ${daemon.stderr().slice(-2000)}`,
      )
    }
    const r = rows.at(-1)!
    console.error(`N=${n}: converged in ${r.convergeMs.toFixed(0)} ms, removed in ${r.removeMs.toFixed(0)} ms, RSS ${r.rssMiB.toFixed(1)} MiB`)
  }
  const metrics = (await daemon.http('/metrics')).body
  const reconcile = {
    count: Number(/^flatnet_reconcile_duration_seconds_count (\S+)$/m.exec(metrics)?.[1]),
    sumSeconds: Number(/^flatnet_reconcile_duration_seconds_sum (\S+)$/m.exec(metrics)?.[1]),
    errors: Number(/^flatnet_reconcile_errors_total (\S+)$/m.exec(metrics)?.[1]),
  }
  const stopCode = await daemon.stop('SIGTERM')

  const results = {
    benchmark: 'routes',
    when: new Date(started).toISOString(),
    durationSec: (Date.now() - started) / 1000,
    binary: flatnetdBinary,
    binaryBytes: statSync(flatnetdBinary).size,
    /** Flags the daemon inherited (e.g. --max-semi-space-size=2 to try a smaller young generation). */
    nodeOptions: process.env.NODE_OPTIONS ?? '',
    cluster: DUAL ? `${CLUSTER},${CLUSTER6}` : CLUSTER,
    dualStack: DUAL,
    routesPerPeer: FAMILIES,
    peerLeaseSeconds: PEER_LEASE_S,
    pollMs: POLL_MS,
    idle,
    rows,
    reconcile,
    stopExitCode: stopCode,
    targets: {
      converge5000Ms: 2000,
      rss5000MB: 100,
    },
  }
  report(results)
  const out = join(root, 'bench', 'results')
  mkdirSync(out, { recursive: true })
  const file = join(out, `routes-${results.when.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n')
  console.log(`\nJSON: ${file}  (${results.durationSec.toFixed(0)} s)`)
}

function report(r: { rows: Row[]; binaryBytes: number; nodeOptions: string; idle: { rssMiB: number }; reconcile: { count: number; sumSeconds: number; errors: number } }): void {
  const head = ['peers N', 'routes', 'converge ms', 'remove ms', 'RSS MiB', 'peak RSS MiB', 'routes exact']
  const rows = r.rows.map((x) => [String(x.n), String(x.n * FAMILIES), x.convergeMs.toFixed(0), x.removeMs.toFixed(0), x.rssMiB.toFixed(1), x.peakMiB.toFixed(1), x.verified ? 'yes' : 'NO'])
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)))
  console.log(
    DUAL
      ? `\nflatnetd route convergence, dual stack — clusters ${CLUSTER} (/24 per node) and ${CLUSTER6} (/64), peers on-link on 172.20.0.0/16 and fd00:20::/64, file datastore`
      : `\nflatnetd route convergence — cluster ${CLUSTER} (/24 per node), peers on-link on 172.20.0.0/16, file datastore`,
  )
  for (const row of [head, ...rows]) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   '))
  console.log(
    `\nbinary ${(r.binaryBytes / 1048576).toFixed(1)} MiB${r.nodeOptions ? `, NODE_OPTIONS=${r.nodeOptions}` : ''}; idle RSS before the first round: ${r.idle.rssMiB.toFixed(1)} MiB; ${r.reconcile.count} reconcile passes, ${(r.reconcile.sumSeconds * 1000).toFixed(0)} ms in total, ${r.reconcile.errors} failed`,
  )
  console.log("converge: claimMany committed → all N routes in the kernel. remove: the peers' lease expiry → no proto 200 route left (includes the file watch's ≤ 500 ms expiry detection).")
  const big = r.rows.find((x) => x.n === 5000)
  if (big) {
    const ok = (b: boolean) => (b ? 'met' : 'NOT met')
    console.log(DUAL ? 'targets (issues 3 and 9):' : 'targets (issue 3):')
    console.log(`  ${5000 * FAMILIES} routes (5000 peers) converge ≤ 2 s: ${big.convergeMs.toFixed(0)} ms → ${ok(big.convergeMs <= 2000)}`)
    console.log(`  RSS ≤ 100 MB at 5000 nodes: ${(big.peakMiB * 1.048576).toFixed(1)} MB peak → ${ok(big.peakMiB * 1.048576 <= 100)}`)
  }
}

main()
  .catch((e) => {
    console.error(`bench routes: ${(e as Error).stack ?? e}`)
    process.exitCode = 1
  })
  .finally(() => cleanUp())
