// A routed lab: nodes on two L2 segments joined by a router that routes node addresses only. With
// flatnetd's default backend (auto) the on-link pair (node1, node3 on br0) uses host-gw and every
// pair across the router uses VXLAN; the whole network model holds across the tunnel (no NAT
// between pods, masquerade to the outside unchanged), on the file datastore (IPv4) and on etcd
// (dual-stack); a capture on the node network shows the off-link traffic UDP-encapsulated and the
// on-link traffic plain. Each lab is built once and asked many questions.
import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import type { IpFamily } from '../../ipam/cidr.js'
import { ETCD_BINARY } from '../../lab/etcd.js'
import { runOk } from '../../lab/exec.js'
import { ProbeAgent, PROBE_PORT, type CheckReport, type LabStatus } from '../../lab/index.js'
import { startCapture } from '../../lab/testing/capture.js'
import { flatnetctl, labForTest, labNamespaces, labProcesses, labSkipReason } from '../../lab/testing/testLabs.js'

/** flatnetd's VXLAN UDP port (flannel's, the daemon's default). */
const VXLAN_PORT = 8472

function parse<T>(stdout: string, what: string): T {
  try {
    return JSON.parse(stdout) as T
  } catch {
    throw new Error(`${what}: not JSON: ${stdout.slice(0, 500)}`)
  }
}

const familyOf = (a: string): IpFamily => (a.includes(':') ? 6 : 4)

/** Builds the lab, returns its status; fails the test (and returns undefined) when `up` fails. */
async function routedLab(t: Test, name: string, extra: string[]): Promise<LabStatus | undefined> {
  const up = await flatnetctl(['lab', 'up', '--name', name, '--nodes', '3', '--pods-per-node', '1', '--topology', 'routed', ...extra], 120_000)
  t.equal(up.code, 0, `lab up --topology routed ${extra.join(' ')}: ${up.stderr}`)
  if (up.code !== 0) return undefined
  return parse<LabStatus>((await flatnetctl(['lab', 'status', '--name', name, '--json'])).stdout, 'lab status --json')
}

/** The whole matrix green, and the backend of every node pair: node1↔node3 on-link (host-gw), the rest over VXLAN. */
async function checkRouted(t: Test, name: string, status: LabStatus, families: IpFamily[]): Promise<CheckReport | undefined> {
  const check = await flatnetctl(['lab', 'check', '--name', name, '--json'])
  t.equal(check.code, 0, `lab check exits 0: ${check.stderr}`)
  const report = parse<CheckReport>(check.stdout, 'lab check --json')
  t.equal(report.ok, true, 'the check holds')
  t.same(report.families, families)
  for (const r of report.requirements) {
    // one pod per node: "same node" has no instance, every other row must have some
    const instances = r.id === 'pod-pod-same-node' || r.total > 0
    t.ok(
      instances && r.passed === r.total,
      `${r.title}${r.family ? ` (IPv${r.family})` : ''}: ${r.passed}/${r.total}${r.failures.length ? `: ${r.failures.map((f) => `${f.from}: ${f.detail}`).join('; ')}` : ''}`,
    )
  }
  const seen = report.backends.map((b) => `${b.family} ${b.from}>${b.to} ${b.backend}`)
  const want = families.flatMap((f) =>
    [
      ['node1', 'node2', 'vxlan'],
      ['node1', 'node3', 'host-gw'],
      ['node2', 'node1', 'vxlan'],
      ['node2', 'node3', 'vxlan'],
      ['node3', 'node1', 'host-gw'],
      ['node3', 'node2', 'vxlan'],
    ].map(([from, to, b]) => `${f} ${from}>${to} ${b}`),
  )
  t.same(seen, want, 'auto: host-gw between the nodes of one segment, VXLAN across the router, in every family')
  // The tunnel does not NAT: every pod→pod connection across it was seen from the sender's own IP.
  const podAddress = new Map(status.pods.map((p) => [p.name, p.addresses]))
  const podNode = new Map(status.pods.map((p) => [p.name, p.node]))
  const tunnelled = report.probes.filter((p) => podAddress.has(p.from) && podAddress.has(p.to) && [podNode.get(p.from), podNode.get(p.to)].includes('node2'))
  t.equal(tunnelled.length, 4 * families.length, 'pod2a ↔ pod1a, pod3a: 4 connections per family')
  for (const p of tunnelled)
    t.equal(
      p.sourceSeen,
      podAddress.get(p.from)!.find((a) => familyOf(a) === p.family),
      `${p.to} saw ${p.from} by its own IPv${p.family} address across the tunnel`,
    )
  // Masquerade to the outside, behind the router, is unchanged: the outside sees the node.
  const nodeAddresses = new Map(status.nodes.map((n) => [n.name, n.addresses]))
  const outside = report.probes.filter((p) => p.to === 'outside')
  t.equal(outside.length, 3 * families.length)
  for (const p of outside)
    t.equal(
      p.sourceSeen,
      nodeAddresses.get(podNode.get(p.from)!)!.find((a) => familyOf(a) === p.family),
      `the outside saw ${p.from} as its node`,
    )
  const human = await flatnetctl(['lab', 'check', '--name', name])
  t.match(human.stdout, /backend auto, routed node network: how each node reaches each peer's pods/)
  t.match(human.stdout, /node2 +vxlan +· +vxlan/, 'the human matrix shows node2 reaching both peers by VXLAN')
  return report
}

/** The router forwards between segments but has no route to any pod range: only node addresses. */
async function routerRoutes(name: string): Promise<string[]> {
  const routes = await Promise.all(['-4', '-6'].map(async (f) => (await runOk(['ip', '-n', `fnlab-${name}-router`, f, 'route', 'show'], { what: 'router routes' })).stdout.split('\n').filter(Boolean)))
  return routes.flat().filter((r) => !r.startsWith('fe80::'))
}

async function downLeavesNothing(t: Test, name: string): Promise<void> {
  const down = await flatnetctl(['lab', 'down', '--name', name])
  t.equal(down.code, 0, `lab down: ${down.stderr}`)
  t.same(await labNamespaces(name), [], 'no namespace left, the router included')
  t.same(await labProcesses(name), [], 'no process left')
}

t.test('routed lab, file datastore, IPv4: auto picks per pair, the model holds, VXLAN on the wire only off-link', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'vxlab')
  const status = await routedLab(t, name, [])
  if (!status) return
  t.equal(status.topology, 'routed')
  t.equal(status.backend, 'auto')
  t.same(
    status.nodes.map((n) => [n.name, n.segment, n.address]),
    [
      ['node1', 0, '172.30.0.11'],
      ['node2', 1, '172.30.1.12'],
      ['node3', 0, '172.30.0.13'],
    ],
    'round-robin over two segments: node1 and node3 share br0, node2 is alone on br1',
  )
  // Besides: the LoadBalancer pool, through every node (multipath: its nexthop lines follow it).
  t.same(
    (await routerRoutes(name)).filter((r) => !/^\s/.test(r)).map((r) => r.split(' ')[0]),
    ['172.30.0.0/24', '172.30.0.240/28', '172.30.1.0/24', '172.30.255.0/24'],
    'the router knows the segments, the uplink and the LoadBalancer pool, no pod range',
  )
  const report = await checkRouted(t, name, status, [4])
  if (!report) return

  // The wire: capture on node1's eth0 while pod1a talks to pod2a (off-link) and to pod3a (on-link).
  const pod = (node: string) => status.pods.find((p) => p.node === node)!
  const [p1, p2, p3] = [pod('node1'), pod('node2'), pod('node3')]
  const agents = await Promise.all([p1.namespace, p2.namespace, p3.namespace].map((ns) => ProbeAgent.start(ns, PROBE_PORT)))
  t.teardown(() => Promise.all(agents.map((a) => a.stop())))
  const capture = await startCapture(`fnlab-${name}-node1`, 'eth0', `udp port ${VXLAN_PORT} or (tcp port ${PROBE_PORT})`)
  const offLink = await agents[0]!.probe(p2.address, PROBE_PORT)
  const onLink = await agents[0]!.probe(p3.address, PROBE_PORT)
  const packets = await capture.stop()
  t.ok(offLink.ok && onLink.ok, 'both connections made during the capture')
  const node = new Map(status.nodes.map((n) => [n.name, n.address]))
  const encapsulated = packets.filter((p) => p.proto === 'UDP' && p.dstPort === VXLAN_PORT)
  t.ok(
    encapsulated.some((p) => p.src === node.get('node1') && p.dst === node.get('node2')),
    `pod1a → pod2a left node1 as UDP ${node.get('node1')} → ${node.get('node2')}:${VXLAN_PORT}`,
  )
  t.ok(
    encapsulated.some((p) => p.src === node.get('node2') && p.dst === node.get('node1')),
    `pod2a's answers arrived as UDP ${node.get('node2')} → ${node.get('node1')}:${VXLAN_PORT}`,
  )
  t.same(
    packets.filter((p) => [p.src, p.dst].includes(p2.address)).map((p) => p.line),
    [],
    'pod2a’s address never appears bare on the node network (only inside the tunnel)',
  )
  const plain = packets.filter((p) => p.proto === 'TCP')
  t.ok(
    plain.some((p) => p.src === p1.address && p.dst === p3.address && p.dstPort === PROBE_PORT),
    `pod1a → pod3a crossed the segment as plain TCP ${p1.address} → ${p3.address}:${PROBE_PORT}`,
  )
  t.same(
    encapsulated.filter((p) => [p.src, p.dst].includes(node.get('node3')!)).map((p) => p.line),
    [],
    'nothing is encapsulated between node1 and node3 (on-link)',
  )

  await downLeavesNothing(t, name)
})

const etcdSkip = labSkipReason() || (existsSync(ETCD_BINARY) ? false : `${ETCD_BINARY} missing: run scripts/install-deps.sh`)

t.test('routed lab, etcd datastore, dual-stack: the same in both families', { skip: etcdSkip }, async (t) => {
  const name = labForTest(t, 'vxlab')
  const status = await routedLab(t, name, ['--datastore', 'etcd', '--ip-family', 'dual'])
  if (!status) return
  t.equal(status.datastore.kind, 'etcd')
  t.same(
    status.nodes.map((n) => n.addresses),
    [
      ['172.30.0.11', 'fd00:172:30::11'],
      ['172.30.1.12', 'fd00:172:30:1::12'],
      ['172.30.0.13', 'fd00:172:30::13'],
    ],
  )
  const routes = await routerRoutes(name)
  t.same(
    routes.filter((r) => /^(10\.244|fd00:10:244)/.test(r)),
    [],
    `the router has no route to a pod range (${routes.length} routes)`,
  )
  await checkRouted(t, name, status, [4, 6])
  await downLeavesNothing(t, name)
})
