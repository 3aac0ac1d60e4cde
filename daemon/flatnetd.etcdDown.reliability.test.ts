// The datastore goes away under a running daemon: etcd frozen with SIGSTOP for 30 s (the nastier
// outage — connections stay open and simply stop answering, so every request runs into its
// deadline). Meanwhile the routes stay, a pod's traffic through them keeps flowing, /readyz says
// not ready and names the datastore, /healthz stays 200 and the process never exits. When etcd
// returns the daemon catches up by itself: a peer registered after the outage gets its route,
// its own claim (whose lease ran out while etcd was frozen) is taken again with the same subnet.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { inNetns, runOk, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { openDatastore, type ClaimRequest } from './datastore/index.js'
import { startEtcd } from './datastore/testing/etcdTestServer.js'
import { eventually, flatnetdMissingReason, routeLines, startFlatnetd, tempDir } from './testing/harness.js'
import { relayIntoNetns } from './testing/nsRelay.js'

const OUTAGE_MS = 30_000
const cluster = '10.244.0.0/16'
const etcdMissing = (() => {
  try {
    readFileSync('/usr/bin/etcd')
    return undefined
  } catch {
    return '/usr/bin/etcd missing (Debian etcd-server)'
  }
})()

const claim = (name: string, nodeIP: string): ClaimRequest => ({ name, nodeIP, owner: `test-${name}`, clusterCidr: cluster, prefixLength: 24 })

/** The pid of the etcd serving `endpoint` (the test's own, found by its command line). */
function etcdPid(endpoint: string): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
      if (argv[0] === '/usr/bin/etcd' && argv.includes(endpoint)) return Number(entry)
    } catch {
      // exited meanwhile
    }
  }
  throw new Error(`no etcd process serving ${endpoint}`)
}

const ip = (ns: Netns, ...args: string[]) => runOk(['ip', '-n', ns.name, ...args])
const ping = async (from: Netns, to: string) => (await inNetns(from, ['ping', '-c', '1', '-W', '2', to])).code === 0

t.test(`etcd frozen for ${OUTAGE_MS / 1000} s: routes and pod traffic stay, not ready naming the datastore, alive; catches up after`, { skip: flatnetdMissingReason() ?? etcdMissing }, async (t) => {
  const etcd = await startEtcd()
  t.teardown(() => etcd.stop())
  const pid = etcdPid(etcd.endpoint)
  let frozen = false
  t.teardown(() => {
    if (frozen) process.kill(pid, 'SIGCONT')
  })
  // The test's own client plays the other nodes: its claims live for an hour.
  const store = await openDatastore({ kind: 'etcd', endpoints: [etcd.endpoint], leaseTtlSeconds: 3600 })
  t.teardown(() => store.close())
  const p1 = await store.claim(claim('p1', '192.168.91.2'))

  // Node `me` (the daemon) and node `p1` (a namespace whose pod address sits on lo) on one link;
  // a pod namespace wired to `me` ptp-style, as the plugin does.
  const dir = tempDir(t, 'detcd')
  const nss = testNamespaces(t, 'detcd')
  const [me, peer, pod] = [await nss.create('me'), await nss.create('p1'), await nss.create('pod')]
  for (const ns of [me, peer, pod]) await ip(ns, 'link', 'set', 'lo', 'up')
  await ip(me, 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer.name)
  await ip(me, 'addr', 'add', '192.168.91.1/24', 'dev', 'lan0')
  await ip(me, 'link', 'set', 'lan0', 'up')
  await ip(peer, 'addr', 'add', '192.168.91.2/24', 'dev', 'eth0')
  await ip(peer, 'link', 'set', 'eth0', 'up')
  const peerPodIP = p1.subnet.replace(/\.0\/24$/, '.5')
  await ip(peer, 'addr', 'add', `${peerPodIP}/32`, 'dev', 'lo')

  // The daemon reaches the test's etcd through a relay listening inside its namespace.
  await relayIntoNetns(t, me, 2379, Number(new URL(etcd.endpoint).port))
  const endpoint = 'http://127.0.0.1:2379'
  const d = startFlatnetd(t, me, [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.91.1',
    '--datastore',
    'etcd',
    '--etcd-endpoints',
    endpoint,
    // A lease longer than the outage: with the default 30 s, a frozen etcd lets the claim expire
    // (etcd's lessor counts the frozen time) and a node registering right after the outage can take
    // this node's subnet while its pods still hold addresses from it — seen in this test, reported
    // in the README. Renewed every 20 s, so the outage is noticed within 25 s.
    '--lease-ttl',
    '60',
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    join(dir, 'net.d'),
    '--reconcile-interval',
    '1',
    '--no-masquerade',
  ])
  const ready = await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  const subnet = JSON.parse(ready.body).subnet as string
  const gw = subnet.replace(/\.0\/24$/, '.1')
  const podIP = subnet.replace(/\.0\/24$/, '.5')
  await ip(peer, 'route', 'add', subnet, 'via', '192.168.91.1')
  await ip(me, 'link', 'add', 'vpod', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name)
  await ip(me, 'addr', 'add', `${gw}/32`, 'dev', 'vpod')
  await ip(me, 'link', 'set', 'vpod', 'up')
  await ip(me, 'route', 'add', `${podIP}/32`, 'dev', 'vpod')
  await ip(pod, 'addr', 'add', `${podIP}/32`, 'dev', 'eth0')
  await ip(pod, 'link', 'set', 'eth0', 'up')
  await ip(pod, 'route', 'add', gw, 'dev', 'eth0', 'scope', 'link')
  await ip(pod, 'route', 'add', 'default', 'via', gw)
  await eventually(
    "pod reaches the peer node's pod address through the daemon's route",
    () => ping(pod, peerPodIP),
    (ok) => ok,
  )
  const routesBefore = await routeLines(me)
  t.same(
    routesBefore.filter((l) => l.endsWith('proto 200')),
    [`${p1.subnet} via 192.168.91.2 proto 200`],
    'the peer route, before the outage',
  )

  // The outage.
  process.kill(pid, 'SIGSTOP')
  frozen = true
  const start = Date.now()
  const seen = { checks: 0, routesChanged: 0, pingFailed: 0, healthNot200: 0, pings: 0 }
  let notReadyAfterMs: number | undefined
  let reason = ''
  while (Date.now() - start < OUTAGE_MS) {
    seen.checks++
    if (JSON.stringify(await routeLines(me)) !== JSON.stringify(routesBefore)) seen.routesChanged++
    if ((await d.http('/healthz')).status !== 200) seen.healthNot200++
    if (seen.checks % 3 === 0) {
      seen.pings++
      if (!(await ping(pod, peerPodIP))) seen.pingFailed++
    }
    const r = await d.http('/readyz')
    if (r.status === 503 && notReadyAfterMs === undefined && /datastore etcd/.test(r.body)) {
      notReadyAfterMs = Date.now() - start
      reason = JSON.parse(r.body).reason as string
    }
    if (d.exitCode() !== undefined) break
    await new Promise((r) => setTimeout(r, 500))
  }
  t.comment(`during the outage: ${JSON.stringify(seen)}; not ready after ${notReadyAfterMs} ms: ${reason}`)
  t.equal(d.exitCode(), undefined, 'the daemon never exited (same process throughout)')
  t.equal(seen.routesChanged, 0, `routes unchanged at each of ${seen.checks} checks`)
  t.equal(seen.pingFailed, 0, `the pod reached the peer's pod address at each of ${seen.pings} pings`)
  t.equal(seen.healthNot200, 0, '/healthz 200 throughout: a restart would not help')
  t.ok(notReadyAfterMs !== undefined, '/readyz went 503')
  t.match(reason, new RegExp(`datastore etcd unavailable .*${endpoint.replace(/[.:/]/g, '\\$&')}`), 'the reason names the datastore and its endpoint')
  t.match(reason, /keeping the routes/, 'and says the routes are kept')
  t.ok(
    d.logs.some((l) => l.level === 'error' && l.msg === 'datastore trouble: not ready; routes stay as they are; retrying'),
    'logged once as an error',
  )

  // etcd returns; another node registers right away.
  process.kill(pid, 'SIGCONT')
  frozen = false
  const p2 = await eventually(
    'claim p2 once etcd answers',
    () => store.claim(claim('p2', '192.168.91.3')).catch((e: Error) => e),
    (r) => !(r instanceof Error),
    30_000,
  )
  if (p2 instanceof Error) throw p2
  await eventually(
    'route to p2',
    () => routeLines(me),
    (r) => r.includes(`${p2.subnet} via 192.168.91.3 proto 200`),
    30_000,
  )
  const back = await eventually(
    '/readyz 200 again',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    30_000,
  )
  t.equal(JSON.parse(back.body).subnet, subnet, 'the same subnet as before the outage (pods keep their addresses)')
  t.equal((await store.list()).find((n) => n.name === 'me')?.subnet, subnet, 'held again in etcd')
  t.ok(
    d.logs.some((l) => l.msg === 'datastore readable again'),
    'the recovery is logged',
  )
  t.ok(await ping(pod, peerPodIP), 'pod traffic still flows')
  t.same(
    (await routeLines(me)).filter((l) => l.endsWith('proto 200')),
    [`${p1.subnet} via 192.168.91.2 proto 200`, `${p2.subnet} via 192.168.91.3 proto 200`].sort(),
  )
  t.equal(d.exitCode(), undefined)
  t.equal(await d.stop(), 0, 'SIGTERM: clean exit')
})
