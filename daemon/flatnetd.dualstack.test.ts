// flatnetd started dual-stack (--cluster-cidr 10.244.0.0/16,fd00:10:244::/56), as a process in a
// node namespace, against the file datastore and a real etcd: it claims a subnet of each family
// in one claim, detects the IPv6 node address from the IPv6 default route when --node-ip gives
// only the IPv4 one, writes both subnets into the conflist in cluster-range order, and reports
// both in /readyz and /metrics. A family whose range is exhausted keeps the node not ready,
// naming the family, and nothing of the other family is claimed.
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { runOk, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { openDatastore, type ClaimRequest, type Datastore } from './datastore/index.js'
import { startEtcd } from './datastore/testing/etcdTestServer.js'
import { eventually, flatnetdMissingReason, nodeNamespace, startFlatnetd, tempDir } from './testing/harness.js'
import { relayIntoNetns } from './testing/nsRelay.js'

const skip = flatnetdMissingReason()
const etcdSkip = skip ?? (statSync('/usr/bin/etcd', { throwIfNoEntry: false }) ? undefined : '/usr/bin/etcd missing (Debian etcd-server)')
const v4 = '10.244.0.0/16'
const v6 = 'fd00:10:244::/56'

/** A dual-stack peer claim, as another flatnetd would make it. */
function dualClaim(name: string, ip4: string, ip6: string, v6Range = v6): ClaimRequest {
  return { name, nodeIP: ip4, nodeIPs: [ip4, ip6], owner: `test-${name}`, clusterCidr: v4, prefixLength: 24, moreRanges: [{ clusterCidr: v6Range, prefixLength: 64 }] }
}

/** A node namespace with an IPv6 address on its LAN (no DAD: it must be usable at once) and an IPv6 default route. */
async function dualNode(t: Test, tag: string, lan4: string, lan6: string): Promise<Netns> {
  const ns = await nodeNamespace(testNamespaces(t, tag), lan4)
  await runOk(['ip', '-n', ns.name, 'addr', 'add', lan6, 'dev', 'lan0', 'nodad'])
  await runOk(['ip', '-n', ns.name, '-6', 'route', 'add', 'default', 'via', lan6.replace(/::\d+\/64$/, '::fe'), 'dev', 'lan0'])
  return ns
}

interface Backend {
  name: string
  skip: string | undefined
  open(t: Test, ns: Netns, dir: string): Promise<{ store: Datastore; flags: string[] }>
}

const backends: Backend[] = [
  {
    name: 'file',
    skip,
    async open(t, _ns, dir) {
      const path = join(dir, 'nodes.json')
      const store = await openDatastore({ kind: 'file', path })
      t.teardown(() => store.close())
      return { store, flags: ['--datastore-file', path] }
    },
  },
  {
    name: 'etcd',
    skip: etcdSkip,
    async open(t, ns) {
      const etcd = await startEtcd()
      t.teardown(() => etcd.stop())
      await relayIntoNetns(t, ns, 2379, Number(new URL(etcd.endpoint).port))
      // A generous deadline for the test's own client: the machine is shared and often loaded.
      const store = await openDatastore({ kind: 'etcd', endpoints: [etcd.endpoint], leaseTtlSeconds: 3600, timeoutMs: 30_000 })
      t.teardown(() => store.close())
      return { store, flags: ['--datastore', 'etcd', '--etcd-endpoints', 'http://127.0.0.1:2379'] }
    },
  },
]

for (const backend of backends) {
  t.test(`${backend.name} datastore: a dual-stack daemon claims a subnet of each family and writes both into the conflist`, { skip: backend.skip }, async (t) => {
    const dir = tempDir(t, `dual${backend.name}`)
    const ns = await dualNode(t, `dual${backend.name}`, '192.168.89.1/24', 'fd00:89::1/64')
    const { store, flags } = await backend.open(t, ns, dir)
    // A dual-stack peer, and one written as the previous version wrote them (IPv4 only).
    await store.claim(dualClaim('b', '192.168.89.2', 'fd00:89::2'))
    await store.claim({ name: 'old', nodeIP: '192.168.89.3', owner: 'test-old', clusterCidr: v4, prefixLength: 24 })
    const confDir = join(dir, 'net.d')
    const d = startFlatnetd(t, ns, [
      '--node-name',
      'me',
      '--node-ip',
      '192.168.89.1',
      '--cluster-cidr',
      `${v4},${v6}`,
      '--service-cidr',
      '10.96.0.0/16,fd00:10:96::/112',
      ...flags,
      '--state-dir',
      join(dir, 'state'),
      '--cni-conf-dir',
      confDir,
      '--ipam-data-dir',
      join(dir, 'ipam'),
      '--reconcile-interval',
      '0.5',
      '--no-masquerade',
      '--cni-path',
      '/usr/lib/cni',
    ])
    const ready = await eventually(
      '/readyz 200',
      () => d.http('/readyz'),
      (r) => r.status === 200,
      60_000,
    )
    const body = JSON.parse(ready.body) as { subnet: string; subnets: string[] }
    // b holds 10.244.0.0/24 and fd00:10:244::/64, old 10.244.1.0/24 (and no IPv6 subnet).
    t.same([body.subnet, body.subnets], ['10.244.2.0/24', ['10.244.2.0/24', 'fd00:10:244:1::/64']], '/readyz: the lowest free subnet of each family')
    const conflist = JSON.parse(readFileSync(join(confDir, '10-flatnet.conflist'), 'utf8')) as { plugins: Array<{ type: string; ranges?: string[] }> }
    t.same(conflist.plugins[0]?.ranges, ['10.244.2.0/24', 'fd00:10:244:1::/64'], 'conflist ranges: both subnets, in --cluster-cidr order')
    const me = (await store.list()).find((n) => n.name === 'me')
    t.same(
      me && [me.subnet, me.nodeIP, me.subnets, me.nodeIPs],
      ['10.244.2.0/24', '192.168.89.1', ['10.244.2.0/24', 'fd00:10:244:1::/64'], ['192.168.89.1', 'fd00:89::1']],
      'the record holds both families; the IPv6 address detected from the IPv6 default route',
    )
    const metrics = (await d.http('/metrics')).body
    t.match(metrics, /^flatnet_node_subnet_info\{subnet="10\.244\.2\.0\/24",node="me"\} 1$/m)
    t.match(metrics, /^flatnet_node_subnet_info\{subnet="fd00:10:244:1::\/64",node="me"\} 1$/m)
  })
}

t.test('file datastore: an exhausted IPv6 range keeps a dual-stack node not ready, naming the family; no IPv4 subnet is taken', { skip }, async (t) => {
  const dir = tempDir(t, 'dualfull')
  const ns = await dualNode(t, 'dualfull', '192.168.89.1/24', 'fd00:89::1/64')
  const path = join(dir, 'nodes.json')
  const store = await openDatastore({ kind: 'file', path })
  t.teardown(() => store.close())
  const tiny = 'fd00:99::/64' // exactly one /64
  await store.claim(dualClaim('b', '192.168.89.2', 'fd00:89::2', tiny))
  const confDir = join(dir, 'net.d')
  const d = startFlatnetd(t, ns, [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.89.1,fd00:89::1',
    '--cluster-cidr',
    `${v4},${tiny}`,
    '--service-cidr',
    '10.96.0.0/16',
    '--datastore-file',
    path,
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    confDir,
    '--reconcile-interval',
    '0.5',
    '--no-masquerade',
  ])
  const notReady = await eventually(
    '/readyz names the exhausted family',
    () => d.http('/readyz'),
    (r) => r.status === 503 && /IPv6 cluster range fd00:99::\/64 is exhausted/.test(r.body),
    60_000,
  )
  t.equal(notReady.status, 503, 'not ready')
  t.same(
    (await store.list()).map((n) => n.name),
    ['b'],
    'me holds nothing: no IPv4 subnet was taken without its IPv6 one',
  )
  t.throws(() => readFileSync(join(confDir, '10-flatnet.conflist')), 'no conflist written')
})
