// flatnetd as a process, in a throw-away namespace playing the node, with a file datastore:
// what it writes (conflist, owner id), programs (routes, ip_forward) and answers (/readyz,
// /metrics), how it follows the datastore, and that SIGTERM leaves routes and conflist in place.
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import t from 'tap'
import { runOk, sysctl, testNamespaces } from '../e2e/helpers/index.js'
import { openDatastore, type ClaimRequest } from './datastore/index.js'
import { openSeedingDatastore } from './datastore/testing/seeding.js'
import { eventually, flatnetdMissingReason, flatnetdStaleReason, nodeNamespace, routeLines, startConflistReader, startFlatnetd, tempDir } from './testing/harness.js'

/** /readyz lists every reconciler this daemon runs; on a ready node each is in its wanted state. */
const READY_RECONCILERS = ['forwarding', 'routes', 'vxlan', 'antispoof', 'conflist', 'masquerade', 'policy', 'services'].map((name) => ({ name, ok: true, gates: true }))

const skip = flatnetdMissingReason()
const cluster = '10.244.0.0/16'

function claim(name: string, nodeIP: string): ClaimRequest {
  return { name, nodeIP, owner: `test-${name}`, clusterCidr: cluster, prefixLength: 24 }
}

// esbuild leaves an unchanged output file alone, so an older mtime does not prove a stale binary:
// say so loudly, but do not fail on it (CI builds right before testing).
t.test('binary is current', { skip }, async (t) => {
  const stale = await flatnetdStaleReason()
  if (stale) t.comment(`WARNING: ${stale} (or its output did not change)`)
  t.pass('checked')
})

t.test('a node daemon: subnet, conflist, routes, readiness, metrics, following the datastore, SIGTERM', { skip }, async (t) => {
  const dir = tempDir(t, 'dproc')
  const nss = testNamespaces(t, 'dproc')
  const ns = await nodeNamespace(nss, '192.168.77.1/24')
  const storePath = join(dir, 'nodes.json')
  const store = await openSeedingDatastore({ kind: 'file', path: storePath })
  t.teardown(() => store.close())
  // Two peers registered before the daemon starts: one on-link, one not.
  await store.claimMany([claim('b', '192.168.77.2'), claim('far', '172.31.9.9')])
  // Left over from before the start: a route of a node that left meanwhile, and an admin's route.
  await runOk(['ip', '-n', ns.name, 'route', 'add', '10.244.60.0/24', 'via', '192.168.77.60', 'proto', '200'])
  await runOk(['ip', '-n', ns.name, 'route', 'add', '10.99.0.0/16', 'via', '192.168.77.254', 'proto', 'static'])
  await runOk(['ip', 'netns', 'exec', ns.name, 'sh', '-c', 'echo 0 > /proc/sys/net/ipv4/ip_forward'])

  const confDir = join(dir, 'net.d')
  const conflist = join(confDir, '10-flatnet.conflist')
  const args = [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.77.1',
    '--datastore-file',
    storePath,
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    confDir,
    '--ipam-data-dir',
    join(dir, 'ipam'),
    '--reconcile-interval',
    '0.5',
    '--log-level',
    'debug',
    '--cni-path',
    '/usr/lib/cni',
  ]
  const d = startFlatnetd(t, ns, args)
  const ready = await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
  )
  t.same(JSON.parse(ready.body), { ready: true, node: 'me', subnet: '10.244.2.0/24', reconcilers: READY_RECONCILERS }, 'the lowest free subnet (b and far hold .0 and .1)')

  t.same(
    JSON.parse(readFileSync(conflist, 'utf8')),
    {
      // Debian 12's portmap (on --cni-path) speaks up to 1.0.0: the list can be no newer.
      cniVersion: '1.0.0',
      name: 'flatnet',
      plugins: [
        // --backend auto (the default) reserves the VXLAN overhead: lan0's 1500 - 50.
        { type: 'flatnet', ranges: ['10.244.2.0/24'], mtu: 1450, dataDir: join(dir, 'ipam') },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    "conflist with this node's subnet",
  )
  t.same(
    await routeLines(ns),
    ['10.244.0.0/24 via 192.168.77.2 proto 200', '10.99.0.0/16 via 192.168.77.254 proto static'],
    'route to the on-link peer; none to the off-link one; the stale proto-200 route gone; the static route untouched',
  )
  t.ok(
    d.logs.some((l) => l.level === 'warn' && l.peer === 'far' && /not on-link/.test(String(l.reason))),
    'a warning names the off-link peer and why',
  )
  t.equal(await sysctl('net.ipv4.ip_forward', ns), '1', "forwarding on in the daemon's namespace")
  const ownerFile = join(dir, 'state', 'owner-id')
  t.equal(statSync(ownerFile).mode & 0o777, 0o600, 'owner id is private')
  const owner = readFileSync(ownerFile, 'utf8').trim()
  t.equal((await store.list()).find((n) => n.name === 'me')?.owner, owner, 'the claim is held under that owner id')

  const metrics = (await d.http('/metrics')).body
  for (const line of [
    /^flatnet_routes_programmed{family="ipv4"} 1$/m,
    /^flatnet_node_subnet_info\{subnet="10\.244\.2\.0\/24",node="me"\} 1$/m,
    /^flatnet_ready 1$/m,
    /^flatnet_reconcile_errors_total 0$/m,
    /^flatnet_datastore_errors_total 0$/m,
    /^# TYPE flatnet_reconcile_duration_seconds histogram$/m,
    /^flatnet_reconcile_duration_seconds_count [1-9]\d*$/m,
  ])
    t.match(metrics, line)
  t.equal((await d.http('/healthz')).status, 200)
  t.equal((await d.http('/nope')).status, 404)

  // Changes in the datastore reach the kernel without a restart.
  await store.claim(claim('c', '192.168.77.3'))
  await eventually(
    'route to new node c',
    () => routeLines(ns),
    (r) => r.includes('10.244.3.0/24 via 192.168.77.3 proto 200'),
  )
  await store.remove('b')
  await eventually(
    'route of removed node b gone',
    () => routeLines(ns),
    (r) => !r.some((x) => x.startsWith('10.244.0.0/24')),
  )
  t.same(await routeLines(ns), ['10.244.3.0/24 via 192.168.77.3 proto 200', '10.99.0.0/16 via 192.168.77.254 proto static'])

  // Passes keep running (interval 0.5 s) but an unchanged conflist is never rewritten.
  const before = statSync(conflist)
  const passes = d.logs.filter((l) => l.msg === 'reconcile done').length
  await eventually(
    'three more reconcile passes',
    () => d.logs.filter((l) => l.msg === 'reconcile done').length,
    (n) => n >= passes + 3,
  )
  const after = statSync(conflist)
  t.same([after.ino, after.mtimeMs], [before.ino, before.mtimeMs], 'same inode, same mtime')
  t.equal(d.logs.filter((l) => l.msg === 'conflist written').length, 1, 'written once')

  t.equal(await d.stop('SIGTERM'), 0, 'SIGTERM → exit 0')
  t.ok(
    d.logs.some((l) => l.msg === 'stopped'),
    'it stopped by itself (not killed after the grace time)',
  )
  t.same(await routeLines(ns), ['10.244.3.0/24 via 192.168.77.3 proto 200', '10.99.0.0/16 via 192.168.77.254 proto static'], 'routes stay after SIGTERM')
  t.same(statSync(conflist).ino, after.ino, 'conflist stays after SIGTERM')
  t.same(d.junk, [], 'nothing but JSON log lines on stdout')

  // A restart keeps the subnet (same owner id) and does not rewrite the unchanged conflist.
  const again = startFlatnetd(t, ns, args)
  const ready2 = await eventually(
    '/readyz 200 after restart',
    () => again.http('/readyz'),
    (r) => r.status === 200,
  )
  t.equal(JSON.parse(ready2.body).subnet, '10.244.2.0/24')
  t.equal(statSync(conflist).ino, after.ino)
  t.equal(await again.stop('SIGINT'), 0, 'SIGINT → exit 0 too')

  // Removed while down, with a lower subnet free (b left): it asks for its conflist's subnet again,
  // so pods still running with addresses from it keep working.
  t.equal(await store.remove('me'), true)
  const third = startFlatnetd(t, ns, args)
  const ready3 = await eventually(
    '/readyz 200 after removal while down',
    () => third.http('/readyz'),
    (r) => r.status === 200,
  )
  t.equal(JSON.parse(ready3.body).subnet, '10.244.2.0/24', "the conflist's subnet, not the lowest free 10.244.0.0/24")
  t.equal(await third.stop(), 0)
})

t.test('a claim lost while running (lease ran out) is claimed again, and the conflist follows', { skip }, async (t) => {
  const dir = tempDir(t, 'dlost')
  const nss = testNamespaces(t, 'dlost')
  const ns = await nodeNamespace(nss, '192.168.78.1/24')
  const storePath = join(dir, 'nodes.json')
  // The test's own claims never expire; the daemon's run under a 2 s lease.
  const store = await openDatastore({ kind: 'file', path: storePath })
  t.teardown(() => store.close())
  const confDir = join(dir, 'net.d')
  const d = startFlatnetd(t, ns, [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.78.1',
    '--datastore-file',
    storePath,
    '--lease-ttl',
    '2',
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    confDir,
    '--reconcile-interval',
    '0.5',
  ])
  await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
  )
  const subnetOf = () => JSON.parse(readFileSync(join(confDir, '10-flatnet.conflist'), 'utf8')).plugins[0].ranges[0] as string
  t.equal(subnetOf(), '10.244.0.0/24')
  // A runtime reading the conflist all along never sees it partial or missing.
  const stopFile = join(dir, 'stop-reader')
  const reader = startConflistReader(join(confDir, '10-flatnet.conflist'), stopFile)
  t.teardown(() => reader.kill())
  await reader.started
  // The daemon freezes (a stalled node) until its lease runs out; another node takes the subnet.
  // Not while it holds the store's write slot: a live holder frozen mid-write blocks every writer
  // of the file store by design (its slot is only passed over once the holder is dead), which is
  // another scenario than a stalled node. Under a loaded machine a write takes long enough that
  // a blind SIGSTOP lands inside one every few runs.
  await freezeOutsideStoreWrite(d.pid, storePath)
  t.teardown(() => {
    if (d.exitCode() === undefined) process.kill(d.pid, 'SIGCONT')
  })
  await eventually(
    "the frozen node's claim expires",
    () => store.list(),
    (nodes) => !nodes.some((n) => n.name === 'me'),
  )
  t.equal((await store.claim(claim('intruder', '192.168.78.9'))).subnet, '10.244.0.0/24')
  process.kill(d.pid, 'SIGCONT')
  await eventually('conflist with the new subnet', subnetOf, (s) => s === '10.244.1.0/24')
  writeFileSync(stopFile, '')
  const seen = await reader.done
  t.same(
    { partial: seen.partial, missing: seen.missing, versions: seen.versions },
    { partial: 0, missing: 0, versions: 2 },
    `reader (${seen.reads} reads) saw the old and the new file, never a partial or missing one`,
  )
  const ready = await eventually(
    '/readyz 200 again',
    () => d.http('/readyz'),
    (r) => r.status === 200,
  )
  t.equal(JSON.parse(ready.body).subnet, '10.244.1.0/24')
  t.equal((await store.list()).find((n) => n.name === 'me')?.subnet, '10.244.1.0/24')
  t.ok(
    d.logs.some((l) => l.level === 'warn' && /claim lost/.test(String(l.msg))),
    'the loss is logged',
  )
  await eventually(
    'route to the node that took the old subnet',
    () => routeLines(ns),
    (r) => r.includes('10.244.0.0/24 via 192.168.78.9 proto 200'),
  )
  t.equal(await d.stop(), 0)
})

t.test('the conflist follows what the chained portmap speaks: none on the CNI path → flatnet alone at 1.0.0 (what containerd 1.6 reads), with a warning', { skip }, async (t) => {
  const dir = tempDir(t, 'dchain')
  const nss = testNamespaces(t, 'dchain')
  const ns = await nodeNamespace(nss, '192.168.78.1/24')
  const confDir = join(dir, 'net.d')
  const emptyBin = join(dir, 'bin')
  mkdirSync(emptyBin)
  const d = startFlatnetd(t, ns, [
    '--node-name',
    'solo',
    '--node-ip',
    '192.168.78.1',
    '--datastore-file',
    join(dir, 'nodes.json'),
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    confDir,
    '--ipam-data-dir',
    join(dir, 'ipam'),
    '--reconcile-interval',
    '0.5',
    '--cni-path',
    emptyBin,
  ])
  await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
  )
  const list = JSON.parse(readFileSync(join(confDir, '10-flatnet.conflist'), 'utf8'))
  t.equal(list.cniVersion, '1.0.0')
  t.same(
    list.plugins.map((p: { type: string }) => p.type),
    ['flatnet'],
    'portmap left out',
  )
  t.ok(
    d.logs.some((l) => l.level === 'warn' && /no portmap plugin on the CNI path/.test(String(l.msg))),
    'a warning says hostPort will not work',
  )
  // the admin installs a portmap (a copy of Debian's): the next pass picks it up
  copyFileSync('/usr/lib/cni/portmap', join(emptyBin, 'portmap'))
  chmodSync(join(emptyBin, 'portmap'), 0o755)
  const again = await eventually(
    'conflist with portmap',
    async () => JSON.parse(readFileSync(join(confDir, '10-flatnet.conflist'), 'utf8')),
    (l) => l.plugins.length === 2,
  )
  t.equal(again.cniVersion, '1.0.0')
  await d.stop('SIGTERM')
})

/** SIGSTOPs `pid` at a moment it holds no write slot of the file store at `storePath`. */
async function freezeOutsideStoreWrite(pid: number, storePath: string): Promise<void> {
  const dir = dirname(storePath)
  const slotPrefix = `${basename(storePath)}.lock.`
  const holdsSlot = () =>
    readdirSync(dir).some((f) => {
      if (!f.startsWith(slotPrefix)) return false
      try {
        return (JSON.parse(readFileSync(join(dir, f), 'utf8')) as { pid?: number }).pid === pid
      } catch {
        return false // removed meanwhile, or written by another writer's format
      }
    })
  for (let attempt = 0; attempt < 200; attempt++) {
    process.kill(pid, 'SIGSTOP')
    if (!holdsSlot()) return
    process.kill(pid, 'SIGCONT')
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 30))
  }
  throw new Error(`flatnetd ${pid} held a write slot of ${storePath} at every one of 200 tries`)
}
