// What flatnetd does when it must not trust its own configuration, or when something it cannot fix
// stands in the way — as a process in a throw-away node namespace with a file datastore:
// - a changed --cluster-cidr (a bad DaemonSet update) is refused: not ready, naming it, and the
//   last good routes and masquerade table stay in force (readiness gates the dataplane);
// - a --node-ip that is not an address of this host is refused the same way;
// - another CNI configuration that sorts before ours makes the node not ready, naming the file;
// - a peer route blocked by a foreign route is left alone, reported on every sync and in a metric,
//   and does not make the node not ready;
// - SIGHUP is logged and survived; flatnet_ready is the value /readyz answers with.
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { inNetns, runOk, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { openDatastore } from './datastore/index.js'
import { eventually, flatnetdMissingReason, nodeNamespace, routeLines, startFlatnetd, tempDir, type DaemonProcess } from './testing/harness.js'

const skip = flatnetdMissingReason()

async function nftTable(ns: Netns): Promise<string | undefined> {
  const r = await inNetns(ns, ['nft', 'list', 'table', 'inet', 'flatnet'])
  return r.code === 0 ? r.stdout : undefined
}

/** Waits until the daemon has finished `n` more syncs of `reconciler` than now. */
async function syncs(d: DaemonProcess, reconciler: string, n: number): Promise<void> {
  const count = () => d.logs.filter((l) => l.msg === 'reconcile done' && l.reconciler === reconciler).length
  const from = count()
  await eventually(`${n} more ${reconciler} syncs`, count, (c) => c >= from + n)
}

t.test('a changed --cluster-cidr is refused: not ready naming it; routes and masquerade keep their last good state', { skip }, async (t) => {
  const dir = tempDir(t, 'drefuse')
  const nss = testNamespaces(t, 'drefuse')
  const ns = await nodeNamespace(nss, '192.168.91.1/24')
  const storePath = join(dir, 'nodes.json')
  const store = await openDatastore({ kind: 'file', path: storePath })
  t.teardown(() => store.close())
  await store.claim({ name: 'b', nodeIP: '192.168.91.2', owner: 'test-b', clusterCidr: '10.244.0.0/16', prefixLength: 24 })
  const args = [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.91.1',
    '--datastore-file',
    storePath,
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    join(dir, 'net.d'),
    '--reconcile-interval',
    '0.5',
    '--log-level',
    'debug',
  ]
  const good = startFlatnetd(t, ns, [...args, '--cluster-cidr', '10.244.0.0/16'])
  await eventually(
    '/readyz 200',
    () => good.http('/readyz'),
    (r) => r.status === 200,
  )
  const routes = await routeLines(ns)
  t.same(routes, ['10.244.0.0/24 via 192.168.91.2 proto 200'])
  const table = await nftTable(ns)
  t.match(table, /ip saddr 10\.244\.0\.0\/16 ip daddr != 10\.244\.0\.0\/16 meta mark set 0x00000000 masquerade/)
  t.equal(await good.stop(), 0)

  // The same node restarted with another range: its held subnet 10.244.1.0/24 lies outside it.
  const bad = startFlatnetd(t, ns, [...args, '--cluster-cidr', '10.32.0.0/12'])
  const refused = await eventually(
    'not ready: configuration refused',
    () => bad.http('/readyz'),
    (r) => r.status === 503 && /configuration refused/.test(r.body),
    20_000,
  )
  t.comment(JSON.parse(refused.body).reason)
  t.match(JSON.parse(refused.body).reason, /10\.32\.0\.0\/12/, 'the reason names the configured range')
  await syncs(bad, 'forwarding', 3)
  t.same(await routeLines(ns), routes, 'the peer route stays (it lies outside the refused range)')
  t.equal(await nftTable(ns), table, 'the masquerade table stays for the last good range')
  t.ok(
    bad.logs.some((l) => l.level === 'error' && /configuration refused/.test(String(l.msg))),
    'an error log line says so',
  )
  t.notOk(
    bad.logs.some((l) => l.msg === 'reconcile done' && (l.reconciler === 'routes' || l.reconciler === 'masquerade')),
    'neither routes nor masquerade synced',
  )
  t.match((await bad.http('/metrics')).body, /^flatnet_ready 0$/m)
  t.equal(await bad.stop(), 0)

  // The range put back: accepted, ready, and nothing had to be rebuilt.
  const back = startFlatnetd(t, ns, [...args, '--cluster-cidr', '10.244.0.0/16'])
  await eventually(
    '/readyz 200 again',
    () => back.http('/readyz'),
    (r) => r.status === 200,
  )
  t.same(await routeLines(ns), routes)
  t.notOk(
    back.logs.some((l) => l.msg === 'masquerade table installed'),
    'the table found as it should be',
  )
  t.equal(await back.stop(), 0)
})

t.test('a --node-ip that is not an address of this host is refused: not ready naming it; no route is programmed', { skip }, async (t) => {
  const dir = tempDir(t, 'dnodeip')
  const nss = testNamespaces(t, 'dnodeip')
  const ns = await nodeNamespace(nss, '192.168.93.1/24')
  const storePath = join(dir, 'nodes.json')
  const store = await openDatastore({ kind: 'file', path: storePath })
  t.teardown(() => store.close())
  await store.claim({ name: 'b', nodeIP: '192.168.93.2', owner: 'test-b', clusterCidr: '10.244.0.0/16', prefixLength: 24 })
  const d = startFlatnetd(t, ns, [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.93.2',
    '--datastore-file',
    storePath,
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    join(dir, 'net.d'),
    '--reconcile-interval',
    '0.5',
    '--log-level',
    'debug',
  ])
  const r = await eventually(
    'not ready naming the address',
    () => d.http('/readyz'),
    (r) => r.status === 503 && /192\.168\.93\.2/.test(r.body) && /configuration refused/.test(r.body),
    20_000,
  )
  t.comment(JSON.parse(r.body).reason)
  await syncs(d, 'forwarding', 3)
  t.same(await routeLines(ns), [], 'no route programmed for a refused configuration')
  t.equal(await nftTable(ns), undefined, 'no masquerade table either')
  t.equal(await d.stop(), 0)
})

t.test('another CNI config first → not ready naming it; a blocked peer route is reported but not gating; SIGHUP survived', { skip }, async (t) => {
  const dir = tempDir(t, 'dshadow')
  const nss = testNamespaces(t, 'dshadow')
  const ns = await nodeNamespace(nss, '192.168.92.1/24')
  const storePath = join(dir, 'nodes.json')
  const store = await openDatastore({ kind: 'file', path: storePath })
  t.teardown(() => store.close())
  const peer = await store.claim({ name: 'b', nodeIP: '192.168.92.2', owner: 'test-b', clusterCidr: '10.244.0.0/16', prefixLength: 24 })
  // An admin's route holds the peer's subnet: flatnet must not replace it.
  await runOk(['ip', '-n', ns.name, 'route', 'add', peer.subnet, 'via', '192.168.92.254', 'proto', 'static'])
  const confDir = join(dir, 'net.d')
  const d = startFlatnetd(t, ns, [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.92.1',
    '--datastore-file',
    storePath,
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    confDir,
    '--reconcile-interval',
    '0.5',
    '--log-level',
    'debug',
  ])
  await eventually(
    '/readyz 200 despite the blocked route',
    () => d.http('/readyz'),
    (r) => r.status === 200,
  )
  await syncs(d, 'routes', 2)
  t.same(await routeLines(ns), [`${peer.subnet} via 192.168.92.254 proto static`], 'the foreign route left alone')
  const blockedLogs = d.logs.filter((l) => l.level === 'warn' && /a route of another owner holds this destination/.test(String(l.msg)) && l.peer === 'b')
  t.ok(blockedLogs.length >= 2, `logged on every sync that finds it (${blockedLogs.length} times)`)
  t.match((await d.http('/metrics')).body, /^flatnet_peer_routes_blocked 1$/m)

  // A leftover config that sorts first: the runtime would use it.
  writeFileSync(join(confDir, '05-other.conflist'), '{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge"}]}\n')
  const shadowed = await eventually(
    'not ready naming the file',
    () => d.http('/readyz'),
    (r) => r.status === 503,
    20_000,
  )
  t.match(JSON.parse(shadowed.body).reason, /conflist: 05-other\.conflist in .* sorts before 10-flatnet\.conflist/)
  t.match((await d.http('/metrics')).body, /^flatnet_ready 0$/m, 'the metric says the same as /readyz')
  t.ok(
    d.logs.some((l) => l.level === 'error' && /sorts before flatnet's/.test(String(l.msg)) && JSON.stringify(l.files) === '["05-other.conflist"]'),
    'an error log line names it',
  )
  rmSync(join(confDir, '05-other.conflist'))
  await eventually(
    '/readyz 200 once removed',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  t.match((await d.http('/metrics')).body, /^flatnet_ready 1$/m)

  process.kill(d.pid, 'SIGHUP')
  await eventually(
    'SIGHUP logged',
    () => d.logs.some((l) => /SIGHUP/.test(String(l.msg))),
    (x) => x,
  )
  await syncs(d, 'forwarding', 1)
  t.equal(d.exitCode(), undefined, 'still running after SIGHUP')
  t.equal((await d.http('/readyz')).status, 200)
  t.equal(await d.stop(), 0)
})
