// The check's judgement and the lab's naming, without a lab: what `lab check` concludes from what
// it observed, and how it prints it. (The e2e tests prove the observations are real.)
import t from 'tap'
import { evaluateCheck, judgeReadyz, plannedProbes, type Endpoint, type Observations, type ProbeRecord } from './check.js'
import { checkLabName, labAddress, labLayout, podName } from './layout.js'
import { renderCheck, table } from './report.js'

const endpoints: Endpoint[] = [
  { name: 'pod1a', kind: 'pod', netns: 'x-pod1a', address: '10.244.0.2', node: 'node1' },
  { name: 'pod1b', kind: 'pod', netns: 'x-pod1b', address: '10.244.0.3', node: 'node1' },
  { name: 'pod2a', kind: 'pod', netns: 'x-pod2a', address: '10.244.1.2', node: 'node2' },
  { name: 'node1', kind: 'node', netns: 'x-node1', address: '172.30.0.11', node: 'node1' },
  { name: 'node2', kind: 'node', netns: 'x-node2', address: '172.30.0.12', node: 'node2' },
  { name: 'outside', kind: 'outside', netns: 'x-outside', address: '172.30.0.1' },
]
const address = (name: string) => endpoints.find((e) => e.name === name)!.address
const nodeOf = (name: string) => endpoints.find((e) => e.name === name)!.node!

/** What a healthy flatnet network shows: no NAT between pods, masquerade to the outside and to other nodes. */
function healthy(): Observations {
  const probes: ProbeRecord[] = plannedProbes(endpoints).map(({ from, to }) => {
    let seen = from.address
    if (from.kind === 'pod' && (to.kind === 'outside' || (to.kind === 'node' && to.name !== from.node))) seen = address(from.node!)
    if (from.kind === 'node' && to.kind === 'pod' && to.node === from.name) seen = '10.244.0.1'
    return { from: from.name, to: to.name, toAddress: to.address, ok: true, sourceSeen: seen, sourceUsed: from.address }
  })
  const pods = endpoints.filter((e) => e.kind === 'pod')
  return {
    endpoints,
    probes,
    podInterfaceAddresses: Object.fromEntries(pods.map((p) => [p.name, [`${p.address}/32`]])),
    localhost: Object.fromEntries(pods.map((p) => [p.name, { ok: true, local: '127.0.0.1', pid: 200, reply: { peer: '127.0.0.1', local: '127.0.0.1', pid: 100 } }])),
    readyz: Object.fromEntries(endpoints.filter((e) => e.kind === 'node').map((n) => [n.name, { status: 200, body: JSON.stringify({ ready: true, node: n.name, subnet: '10.244.0.0/24' }) }])),
  }
}

const byId = (obs: Observations) => Object.fromEntries(evaluateCheck(obs).map((r) => [r.id, r]))

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
  obs.localhost.pod1a = { ok: true, local: '127.0.0.1', pid: 100, reply: { peer: '127.0.0.1', local: '127.0.0.1', pid: 100 } }
  obs.localhost.pod1b = { ok: false, error: 'ECONNREFUSED' }
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
  const requirements = evaluateCheck(obs)
  const text = renderCheck({
    lab: 'unit',
    ok: false,
    nodes: [
      { name: 'node1', address: '172.30.0.11' },
      { name: 'node2', address: '172.30.0.12' },
    ],
    pods: endpoints.filter((e) => e.kind === 'pod').map((e) => ({ name: e.name, node: e.node!, address: e.address })),
    outside: '172.30.0.1',
    requirements,
    probes: obs.probes,
    durationMs: 1234,
  })
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
  const text = renderCheck({
    lab: 'unit',
    ok: false,
    nodes: [
      { name: 'node1', address: '172.30.0.11' },
      { name: 'node2', address: '172.30.0.12' },
    ],
    pods: endpoints.filter((e) => e.kind === 'pod').map((e) => ({ name: e.name, node: e.node!, address: e.address })),
    outside: '172.30.0.1',
    requirements: evaluateCheck(obs),
    probes: obs.probes,
    durationMs: 1,
  })
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
