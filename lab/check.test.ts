// The check's judgement and the lab's naming, without a lab: what `lab check` concludes from what
// it observed, and how it prints it. (The e2e tests prove the observations are real.)
import t from 'tap'
import type { IpFamily } from '../ipam/cidr.js'
import { addressOf, canonicalAddress, evaluateCheck, judgeReadyz, plannedProbes, type CheckReport, type Endpoint, type Observations, type ProbeRecord, type RequirementResult } from './check.js'
import { clusterCidrsFor } from './lab.js'
import { checkLabName, defaultClusterCidrs, familiesOf, labAddress, labLayout, podName } from './layout.js'
import { renderCheck, table } from './report.js'
import { parseLabState } from './state.js'

/** A dual-stack lab's endpoints: 2 nodes, 3 pods, the outside, each with an IPv4 and an IPv6 address. */
const dualEndpoints: Endpoint[] = [
  { name: 'pod1a', kind: 'pod', netns: 'x-pod1a', addresses: ['10.244.0.2', 'fd00:10:244::2'], node: 'node1' },
  { name: 'pod1b', kind: 'pod', netns: 'x-pod1b', addresses: ['10.244.0.3', 'fd00:10:244::3'], node: 'node1' },
  { name: 'pod2a', kind: 'pod', netns: 'x-pod2a', addresses: ['10.244.1.2', 'fd00:10:244:1::2'], node: 'node2' },
  { name: 'node1', kind: 'node', netns: 'x-node1', addresses: ['172.30.0.11', 'fd00:172:30::11'], node: 'node1' },
  { name: 'node2', kind: 'node', netns: 'x-node2', addresses: ['172.30.0.12', 'fd00:172:30::12'], node: 'node2' },
  { name: 'outside', kind: 'outside', netns: 'x-outside', addresses: ['172.30.0.1', 'fd00:172:30::1'] },
]

/** The same lab restricted to some families (an IPv4 or an IPv6 lab). */
function endpointsIn(families: readonly IpFamily[]): Endpoint[] {
  return dualEndpoints.map((e) => ({ ...e, addresses: e.addresses.filter((a) => families.includes(a.includes(':') ? 6 : 4)) }))
}

const endpoints = endpointsIn([4])
const address = (name: string, family: IpFamily = 4) =>
  addressOf(
    dualEndpoints.find((e) => e.name === name)!,
    family,
  )!
const nodeOf = (name: string) => dualEndpoints.find((e) => e.name === name)!.node!
const gateway: Record<IpFamily, (node: string) => string> = { 4: (n) => (n === 'node1' ? '10.244.0.1' : '10.244.1.1'), 6: (n) => (n === 'node1' ? 'fd00:10:244::1' : 'fd00:10:244:1::1') }

/** What a healthy flatnet network shows, per family: no NAT between pods, masquerade to the outside and to other nodes. */
function healthy(families: IpFamily[] = [4], eps: Endpoint[] = endpointsIn(families)): Observations {
  const probes: ProbeRecord[] = plannedProbes(eps, families).map(({ from, to, family }) => {
    let seen = addressOf(from, family)!
    if (from.kind === 'pod' && (to.kind === 'outside' || (to.kind === 'node' && to.name !== from.node))) seen = address(from.node!, family)
    if (from.kind === 'node' && to.kind === 'pod' && to.node === from.name) seen = gateway[family](from.name)
    return { family, from: from.name, to: to.name, toAddress: addressOf(to, family)!, ok: true, sourceSeen: seen, sourceUsed: addressOf(from, family)! }
  })
  const pods = eps.filter((e) => e.kind === 'pod')
  const loopback = { 4: '127.0.0.1', 6: '::1' } as const
  return {
    families,
    endpoints: eps,
    probes,
    podInterfaceAddresses: Object.fromEntries(pods.map((p) => [p.name, p.addresses.map((a) => `${a}/${a.includes(':') ? 128 : 32}`)])),
    localhost: Object.fromEntries(
      pods.map((p) => [p.name, Object.fromEntries(families.map((f) => [f, { ok: true, local: loopback[f], pid: 200, reply: { peer: loopback[f], local: loopback[f], pid: 100 } }]))]),
    ),
    readyz: Object.fromEntries(eps.filter((e) => e.kind === 'node').map((n) => [n.name, { status: 200, body: JSON.stringify({ ready: true, node: n.name, subnet: '10.244.0.0/24' }) }])),
  }
}

const byId = (obs: Observations) => Object.fromEntries(evaluateCheck(obs).map((r) => [r.id, r]))
const byRow = (obs: Observations) => Object.fromEntries(evaluateCheck(obs).map((r) => [`${r.id}${r.family ? `/${r.family}` : ''}`, r]))
const counts = (rows: RequirementResult[]) => Object.fromEntries(rows.map((x) => [`${x.id}${x.family ? `/${x.family}` : ''}`, [x.passed, x.total, x.ok]]))

/** The report `lab check` would print for these observations. */
function reportOf(obs: Observations): CheckReport {
  const requirements = evaluateCheck(obs)
  const nodes = obs.endpoints.filter((e) => e.kind === 'node')
  const pods = obs.endpoints.filter((e) => e.kind === 'pod')
  const outside = obs.endpoints.find((e) => e.kind === 'outside')!
  return {
    lab: 'unit',
    ok: requirements.every((q) => q.ok),
    topology: 'flat',
    backend: 'auto',
    backends: [],
    families: obs.families,
    nodes: nodes.map((e) => ({ name: e.name, address: e.addresses[0]!, addresses: e.addresses })),
    pods: pods.map((e) => ({ name: e.name, node: e.node!, address: e.addresses[0]!, addresses: e.addresses })),
    outside: outside.addresses[0]!,
    outsideAddresses: outside.addresses,
    requirements,
    probes: obs.probes,
    durationMs: 1234,
  }
}

t.test('every pair of the model is probed exactly once', async (t) => {
  const pairs = plannedProbes(endpoints).map((p) => `${p.from.name}>${p.to.name}`)
  t.equal(new Set(pairs).size, pairs.length)
  // 3 pods: 6 pod→pod; 2 nodes × 3 pods node→pod; 3 pods × (2 nodes + outside).
  t.equal(pairs.length, 6 + 6 + 9)
  t.notOk(
    pairs.some((p) => p.startsWith('outside>')),
    'nothing is probed from the outside',
  )
})

t.test('a healthy network passes every requirement with the right counts', async (t) => {
  const r = byId(healthy())
  t.same(Object.fromEntries(Object.values(r).map((x) => [x.id, [x.passed, x.total, x.ok]])), {
    'daemons-ready': [2, 2, true],
    'pod-pod-same-node': [2, 2, true],
    'pod-pod-across-nodes': [4, 4, true],
    'node-pod': [6, 6, true],
    'pod-node': [6, 6, true],
    'source-preserved': [6, 6, true],
    'own-ip': [3, 3, true],
    localhost: [3, 3, true],
    masquerade: [3, 3, true],
  })
})

t.test('pod→pod traffic NATed to the node address fails "source preserved" and "own IP", not reachability', async (t) => {
  const obs = healthy()
  for (const p of obs.probes) if (p.from === 'pod1a' && p.to === 'pod2a') p.sourceSeen = address('node1')
  const r = byId(obs)
  t.equal(r['pod-pod-across-nodes']!.ok, true)
  t.equal(r['source-preserved']!.ok, false)
  t.same(
    r['source-preserved']!.failures.map((f) => [f.from, f.to]),
    [['pod1a', 'pod2a']],
  )
  t.match(r['source-preserved']!.failures[0]!.detail, /saw source 172\.30\.0\.11, pod1a is 10\.244\.0\.2/)
  t.equal(r['own-ip']!.ok, false)
  t.match(r['own-ip']!.failures[0]!.detail, /pod2a saw it as 172\.30\.0\.11/)
})

t.test('a failed connection fails its requirement and names both ends', async (t) => {
  const obs = healthy()
  const p = obs.probes.find((x) => x.from === 'node2' && x.to === 'pod1b')!
  Object.assign(p, { ok: false, error: 'EHOSTUNREACH', sourceSeen: undefined, sourceUsed: undefined })
  const r = byId(obs)
  t.equal(r['node-pod']!.ok, false)
  t.same(r['node-pod']!.failures, [{ from: 'node2', to: 'pod1b', detail: 'connect to 10.244.0.3:7300: EHOSTUNREACH' }])
  t.equal(r['pod-pod-same-node']!.ok, true, 'other requirements are unaffected')
})

t.test('the pod seeing another address on its interface fails "own IP"', async (t) => {
  const obs = healthy()
  obs.podInterfaceAddresses.pod2a = ['10.244.1.9/32']
  const r = byId(obs)
  t.same(
    r['own-ip']!.failures.map((f) => f.from),
    ['pod2a'],
  )
  t.match(r['own-ip']!.failures[0]!.detail, /eth0 inside the pod has 10\.244\.1\.9\/32, the plugin assigned 10\.244\.1\.2\/32/)
})

t.test('localhost needs a second process: an answer from the same pid does not count', async (t) => {
  const obs = healthy()
  obs.localhost.pod1a = { 4: { ok: true, local: '127.0.0.1', pid: 100, reply: { peer: '127.0.0.1', local: '127.0.0.1', pid: 100 } } }
  obs.localhost.pod1b = { 4: { ok: false, error: 'ECONNREFUSED' } }
  const r = byId(obs)
  t.same(
    r.localhost!.failures.map((f) => f.from),
    ['pod1a', 'pod1b'],
  )
})

t.test("pod → outside must arrive from the pod's own node", async (t) => {
  const obs = healthy()
  obs.probes.find((x) => x.from === 'pod2a' && x.to === 'outside')!.sourceSeen = address('pod2a')
  const r = byId(obs)
  t.same(
    r.masquerade!.failures.map((f) => f.from),
    ['pod2a'],
  )
  t.match(r.masquerade!.failures[0]!.detail, new RegExp(`saw source 10\\.244\\.1\\.2, ${nodeOf('pod2a')} is 172\\.30\\.0\\.12`))
})

t.test('with one node there is nothing to prove across nodes: n/a, not a failure', async (t) => {
  const one = endpoints.filter((e) => e.node !== 'node2')
  const obs = healthy()
  const kept: Observations = {
    families: [4],
    endpoints: one,
    probes: obs.probes.filter((p) => one.some((e) => e.name === p.from) && one.some((e) => e.name === p.to)),
    podInterfaceAddresses: obs.podInterfaceAddresses,
    localhost: { pod1a: obs.localhost.pod1a!, pod1b: obs.localhost.pod1b! },
    readyz: { node1: obs.readyz.node1! },
  }
  const r = byId(kept)
  t.equal(r['pod-pod-across-nodes']!.total, 0)
  t.equal(r['pod-pod-across-nodes']!.ok, true)
  t.match(r['pod-pod-across-nodes']!.note, /two nodes/)
})

t.test('the human matrix marks each cell and lists failures', async (t) => {
  const obs = healthy()
  obs.probes.find((x) => x.from === 'pod1a' && x.to === 'pod2a')!.sourceSeen = address('node1')
  const text = renderCheck(reportOf(obs))
  t.match(text, /^✗\s+source address preserved pod → pod \(no NAT\)\s+5\/6$/m)
  t.match(text, /^✓\s+pod → pod across nodes\s+4\/4$/m)
  const row = text.split('\n').find((l) => l.startsWith('pod1a '))!
  t.same(row.split(/\s+/).slice(2), ['·', '✓', '✗', '✓', '✓', '✓'], 'pod1a → pod2a is marked ✗ because of the source address')
  t.match(text, /✗ source address preserved pod → pod \(no NAT\): pod1a → pod2a: pod2a saw source 172\.30\.0\.11/)
  t.match(text, /2 of 9 requirements FAIL/)
})

t.test('a node whose flatnetd does not answer fails the daemon row, naming the node, while traffic still passes', async (t) => {
  const obs = healthy()
  obs.readyz.node2 = { status: 0, body: '', error: 'ECONNREFUSED' }
  const r = byId(obs)
  t.equal(r['daemons-ready']!.ok, false)
  t.same(r['daemons-ready']!.failures, [{ from: 'node2', detail: 'flatnetd not answering on http://127.0.0.1:9473/readyz: ECONNREFUSED' }])
  t.equal(r['node-pod']!.ok, true, 'the kernel state a dead daemon left still carries traffic')
  const text = renderCheck(reportOf(obs))
  t.match(text, /^✗\s+every node's flatnetd is ready\s+1\/2$/m)
  t.match(text, /✗ every node's flatnetd is ready: node2: flatnetd not answering .*ECONNREFUSED/)
})

t.test('a not-ready flatnetd fails the daemon row with its own reasons; extra fields in /readyz change nothing', async (t) => {
  const obs = healthy()
  obs.readyz.node1 = {
    status: 503,
    body: JSON.stringify({ ready: false, node: 'node1', reasons: ['datastore not open', 'routes not reconciled yet'], reconcilers: [{ name: 'routes', ready: false }] }),
  }
  obs.readyz.node2 = { status: 200, body: JSON.stringify({ ready: true, node: 'node2', reconcilers: [{ name: 'routes', ready: true }] }) }
  const r = byId(obs)
  t.same(r['daemons-ready']!.failures, [{ from: 'node1', detail: 'flatnetd not ready (/readyz 503): datastore not open; routes not reconciled yet' }])
  t.equal(r['daemons-ready']!.passed, 1, 'node2, ready with a longer body, passes')
  t.same(judgeReadyz({ status: 200, body: '{"ready":false}' }).ready, false, 'a 200 that says not ready is not ready')
  t.match(judgeReadyz({ status: 500, body: 'oops' }).detail, /\/readyz 500\): body "oops"/)
})

t.test('table pads by characters, not bytes', async (t) => {
  t.equal(
    table([
      ['✓', 'a'],
      ['xx', 'b'],
    ]),
    '✓   a\nxx  b',
  )
})

t.test('lab names, namespaces and addresses', async (t) => {
  t.throws(() => checkLabName('a-b'), /no '-'/)
  t.throws(() => checkLabName(''), /lab name/)
  checkLabName('t1file0a3f')
  const lab = labLayout('demo', '/tmp/labs')
  t.same([lab.prefix, lab.netNetns, lab.outsideNetns, lab.stateFile], ['fnlab-demo-', 'fnlab-demo-net', 'fnlab-demo-outside', '/tmp/labs/demo/lab.json'])
  t.same(
    [0, 1, 25, 26, 27].map((k) => podName(3, k)),
    ['pod3a', 'pod3b', 'pod3z', 'pod3aa', 'pod3ab'],
  )
  t.equal(labAddress(11), '172.30.0.11')
  t.throws(() => labAddress(255))
})

t.test('an IPv6 lab: every requirement is proven in IPv6, with the IPv4 counts', async (t) => {
  const obs = healthy([6])
  const rows = evaluateCheck(obs)
  t.same(counts(rows), {
    'daemons-ready': [2, 2, true],
    'pod-pod-same-node/6': [2, 2, true],
    'pod-pod-across-nodes/6': [4, 4, true],
    'node-pod/6': [6, 6, true],
    'pod-node/6': [6, 6, true],
    'source-preserved/6': [6, 6, true],
    'own-ip/6': [3, 3, true],
    'localhost/6': [3, 3, true],
    'masquerade/6': [3, 3, true],
  })
  t.ok(
    obs.probes.every((p) => p.family === 6 && p.toAddress.includes(':')),
    'every probe is IPv6, to an IPv6 address',
  )
})

t.test('a dual-stack lab proves every requirement once per family, the families side by side', async (t) => {
  const obs = healthy([4, 6])
  t.equal(obs.probes.length, 2 * 21, 'each pair is probed in both families')
  const rows = evaluateCheck(obs)
  t.same(
    rows.map((r) => `${r.id}${r.family ? `/${r.family}` : ''}`),
    [
      'daemons-ready',
      'pod-pod-same-node/4',
      'pod-pod-same-node/6',
      'pod-pod-across-nodes/4',
      'pod-pod-across-nodes/6',
      'node-pod/4',
      'node-pod/6',
      'pod-node/4',
      'pod-node/6',
      'source-preserved/4',
      'source-preserved/6',
      'own-ip/4',
      'own-ip/6',
      'localhost/4',
      'localhost/6',
      'masquerade/4',
      'masquerade/6',
    ],
  )
  t.ok(
    rows.every((r) => r.ok && r.passed === r.total && r.total > 0),
    'all hold',
  )
  const text = renderCheck(reportOf(obs))
  t.match(text, /IPv4 and IPv6 — the Kubernetes network model/)
  t.match(text, /^\s+REQUIREMENT\s+IPv4\s+IPv6$/m)
  t.match(text, /^✓\s+pod → pod across nodes\s+4\/4\s+4\/4$/m)
  t.match(text, /^✓\s+every node's flatnetd is ready\s+2\/2$/m, 'readiness is one cell: a daemon serves both families')
  const row = text.split('\n').find((l) => l.startsWith('pod1a '))!
  t.match(row, /^pod1a\s+10\.244\.0\.2 fd00:10:244::2\s+··\s+✓✓\s+✓✓\s+✓✓\s+✓✓\s+✓✓$/, 'each cell shows IPv4 then IPv6')
  t.match(text, /all 9 requirements hold in IPv4 and IPv6 \(42 connections/)
})

t.test('dual-stack: IPv6 traffic leaving un-masqueraded fails the IPv6 row only, and says so', async (t) => {
  const obs = healthy([4, 6])
  obs.probes.find((p) => p.family === 6 && p.from === 'pod2a' && p.to === 'outside')!.sourceSeen = 'fd00:10:244:1::2'
  const r = byRow(obs)
  t.equal(r['masquerade/4']!.ok, true)
  t.equal(r['masquerade/6']!.ok, false)
  t.same(r['masquerade/6']!.failures, [{ from: 'pod2a', to: 'outside', detail: 'the outside saw source fd00:10:244:1::2, node2 is fd00:172:30::12' }])
  const text = renderCheck(reportOf(obs))
  t.match(text, /^✗\s+pod → outside the cluster leaves as its node's IP\s+3\/3\s+2\/3$/m)
  t.match(
    text.split('\n').find((l) => l.startsWith('pod2a '))!,
    /✓✗$/,
    'pod2a → outside: IPv4 ✓, IPv6 ✗',
  )
  t.match(text, /✗ pod → outside the cluster leaves as its node's IP \(IPv6\): pod2a → outside: the outside saw source fd00:10:244:1::2/)
  t.match(text, /1 of 9 requirements FAIL/)
})

t.test('dual-stack: a pod the plugin gave only an IPv4 address fails every IPv6 row it takes part in, by name', async (t) => {
  const eps = dualEndpoints.map((e) => (e.name === 'pod2a' ? { ...e, addresses: ['10.244.1.2'] } : e))
  const obs = healthy([4, 6], eps)
  const r = byRow(obs)
  for (const row of ['pod-pod-same-node/4', 'pod-pod-across-nodes/4', 'own-ip/4', 'masquerade/4', 'pod-pod-same-node/6', 'localhost/4']) t.equal(r[row]!.ok, true, `${row} holds`)
  t.same(
    r['own-ip/6']!.failures.map((f) => [f.from, f.detail]),
    [['pod2a', 'the plugin assigned no IPv6 address (eth0 has no IPv6 address)']],
  )
  t.same(
    r['pod-pod-across-nodes/6']!.failures.map((f) => [f.from, f.to, f.detail]),
    [
      ['pod1a', 'pod2a', 'pod2a has no IPv6 address'],
      ['pod1b', 'pod2a', 'pod2a has no IPv6 address'],
      ['pod2a', 'pod1a', 'pod2a has no IPv6 address'],
      ['pod2a', 'pod1b', 'pod2a has no IPv6 address'],
    ],
  )
  t.equal(r['node-pod/6']!.total, 6, 'node → pod2a counts (and fails) in IPv6 too')
  t.equal(r['node-pod/6']!.passed, 4)
  t.equal(r['masquerade/6']!.failures[0]!.detail, 'pod2a has no IPv6 address')
  t.equal(r['localhost/6']!.ok, true, 'its loopback works whatever the plugin did')
})

t.test('IPv6 localhost must be answered on ::1 by another process', async (t) => {
  const obs = healthy([4, 6])
  obs.localhost.pod1a![6] = { ok: false, error: 'EADDRNOTAVAIL' }
  const r = byRow(obs)
  t.equal(r['localhost/4']!.ok, true)
  t.same(r['localhost/6']!.failures, [{ from: 'pod1a', detail: 'connect to [::1]:7300: EADDRNOTAVAIL' }])
})

t.test('IPv6 addresses are compared in one canonical spelling', async (t) => {
  t.equal(canonicalAddress('FD00:10:244:1:0:0:0:2'), 'fd00:10:244:1::2')
  t.equal(canonicalAddress('fd00:172:30:0::11'), 'fd00:172:30::11')
  t.equal(canonicalAddress('10.244.0.2'), '10.244.0.2')
  t.equal(canonicalAddress(undefined), undefined)
})

t.test('lab families: addresses, cluster ranges, and the states written before families', async (t) => {
  t.same(familiesOf('ipv4'), [4])
  t.same(familiesOf('ipv6'), [6])
  t.same(familiesOf('dual'), [4, 6])
  t.same(defaultClusterCidrs('dual'), ['10.244.0.0/16', 'fd00:10:244::/56'])
  t.same(defaultClusterCidrs('ipv6'), ['fd00:10:244::/56'])
  t.equal(labAddress(11, 6), 'fd00:172:30::11')
  t.equal(canonicalAddress(labAddress(254, 6)), labAddress(254, 6), 'node addresses are written canonically, as the kernel prints them')
  t.same(clusterCidrsFor('dual', ['10.10.0.0/16', 'fd00:99::/56']), ['10.10.0.0/16', 'fd00:99::/56'])
  t.throws(() => clusterCidrsFor('dual', ['fd00:99::/56', '10.10.0.0/16']), /does not fit --ip-family dual: give one range per family \(IPv4, then IPv6\)/)
  t.throws(() => clusterCidrsFor('ipv6', ['10.10.0.0/16']), /does not fit --ip-family ipv6/)
  t.throws(() => clusterCidrsFor('ipv5' as never), /--ip-family must be one of ipv4, ipv6, dual/)
  const old = {
    kind: 'flatnet/lab',
    formatVersion: 1,
    name: 'old',
    createdAt: '2026-01-01T00:00:00Z',
    clusterCidr: '10.244.0.0/16',
    network: { cidr: '172.30.0.0/24', netns: 'fnlab-old-net', bridge: 'br0', outsideNetns: 'fnlab-old-outside', outsideAddress: '172.30.0.1', infraAddress: '172.30.0.2' },
    datastore: { kind: 'file', path: '/x' },
    daemonLogLevel: 'info',
    nextNodeId: 2,
    nodes: [{ name: 'node1', id: 1, netns: 'fnlab-old-node1', address: '172.30.0.11', bridgePort: 'n1', dir: '/d', subnet: '10.244.0.0/24', podsCreated: 1 }],
    pods: [{ name: 'pod1a', node: 'node1', netns: 'fnlab-old-pod1a', containerId: 'c', ifname: 'eth0', address: '10.244.0.2', result: {} }],
  }
  const state = parseLabState('/x/lab.json', JSON.stringify(old))
  t.equal(state.ipFamily, 'ipv4', 'a state without families is an IPv4 lab')
  t.same(state.clusterCidrs, ['10.244.0.0/16'])
  t.same(state.network.outsideAddresses, ['172.30.0.1'])
  t.same(state.nodes[0]!.addresses, ['172.30.0.11'])
  t.same(state.nodes[0]!.subnets, ['10.244.0.0/24'])
  t.same(state.pods[0]!.addresses, ['10.244.0.2'])
})
