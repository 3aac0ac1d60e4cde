// The routed topology's plan and the backend a node uses per peer, without a lab: where nodes go,
// which backend each pair should use, how a node's routes are read back as backends, and how the
// check prints them. (e2e/lab/lab-routed.test.ts proves it on a real lab.)
import t from 'tap'
import { peerBackends, type CheckReport, type PairBackend } from './check.js'
import { backendOfRoute, type PeerRoute } from './kernelView.js'
import { hostOfAddress, labLayout, segmentAddress, segmentCidr, segmentOfNode } from './layout.js'
import { expectedBackend, expectedPeerRoutes, planNode, routesMatch } from './nodes.js'
import { renderBackends, renderCheck } from './report.js'
import { parseLabState, type LabState } from './state.js'
import { routedSegments } from './topology.js'

t.test('a routed lab: segments, addresses, round-robin placement', async (t) => {
  t.same(routedSegments(2, [4, 6]), [
    { segment: 0, bridge: 'br0', cidrs: ['172.30.0.0/24', 'fd00:172:30::/64'], gateways: ['172.30.0.1', 'fd00:172:30::1'] },
    { segment: 1, bridge: 'br1', cidrs: ['172.30.1.0/24', 'fd00:172:30:1::/64'], gateways: ['172.30.1.1', 'fd00:172:30:1::1'] },
  ])
  t.equal(segmentAddress(255, 1, 6), 'fd00:172:30:255::1', 'the uplink mirrors its IPv4 spelling')
  t.equal(segmentCidr(3, 4), '172.30.3.0/24')
  t.same(
    [1, 2, 3, 4, 5].map((id) => segmentOfNode(id, 2)),
    [0, 1, 0, 1, 0],
  )
  t.same(
    [1, 2, 3, 4].map((id) => segmentOfNode(id, 3)),
    [0, 1, 2, 0],
  )
  t.equal(hostOfAddress('fd00:172:30:1::12'), 12)
  t.equal(hostOfAddress('172.30.1.12'), 12)

  const lab = labLayout('unit', '/tmp/labs')
  t.equal(lab.routerNetns, 'fnlab-unit-router')
  const state = {
    ipFamily: 'dual',
    nextNodeId: 1,
    nodes: [],
    network: { cidrs: ['172.30.0.0/16', 'fd00:172:30::/48'], segments: routedSegments(2, [4, 6]) },
  } as unknown as LabState
  for (let i = 0; i < 3; i++) state.nodes.push(planNode(lab, state))
  t.same(
    state.nodes.map((n) => [n.name, n.segment, n.addresses]),
    [
      ['node1', 0, ['172.30.0.11', 'fd00:172:30::11']],
      ['node2', 1, ['172.30.1.12', 'fd00:172:30:1::12']],
      ['node3', 0, ['172.30.0.13', 'fd00:172:30::13']],
    ],
    'node ids go round-robin over the segments; host numbers stay unique across segments',
  )
  state.nodes = state.nodes.filter((n) => n.name !== 'node2')
  const node4 = planNode(lab, state)
  t.same([node4.segment, node4.address], [1, '172.30.1.12'], 'a freed host number is reused, on the new node’s own segment')

  const flat = { ipFamily: 'ipv4', nextNodeId: 1, nodes: [], network: { cidrs: ['172.30.0.0/24'] } } as unknown as LabState
  const n1 = planNode(lab, flat)
  t.same([n1.segment, n1.address], [undefined, '172.30.0.11'], 'a flat lab is as before: no segment recorded')

  const old = parseLabState(
    '/x',
    JSON.stringify({
      kind: 'flatnet/lab',
      formatVersion: 1,
      name: 'o',
      clusterCidr: '10.244.0.0/16',
      network: { cidr: '172.30.0.0/24', outsideAddress: '172.30.0.1', infraAddress: '172.30.0.2' },
      nodes: [],
      pods: [],
    }),
  )
  t.equal(old.topology, 'flat', 'a state from before topologies is a flat lab')
  t.equal(old.backend, undefined, 'and ran the daemon’s default backend')
})

t.test('which backend a pair should use', async (t) => {
  t.same(
    (['host-gw', 'vxlan', 'auto'] as const).map((b) => [b, expectedBackend(b, true), expectedBackend(b, false)]),
    [
      ['host-gw', 'host-gw', 'none'],
      ['vxlan', 'vxlan', 'vxlan'],
      ['auto', 'host-gw', 'vxlan'],
    ],
  )
  t.equal(backendOfRoute(undefined), 'none')
  t.equal(backendOfRoute({ dst: '10.244.1.0/24', gateway: '172.30.0.12', dev: 'eth0' }), 'host-gw')
  t.equal(backendOfRoute({ dst: '10.244.1.0/24', gateway: '10.244.1.0', dev: 'flatnet.vxlan' }), 'vxlan')
  t.equal(backendOfRoute({ dst: 'fd00:10:244:1::/64', gateway: 'fd00:10:244:1::', dev: 'flatnet.vxlan6' }), 'vxlan')
})

const node = (name: string, segment: number, subnets: string[], addresses: string[]) => ({
  name,
  id: 1,
  netns: `x-${name}`,
  address: addresses[0]!,
  addresses,
  bridgePort: 'n',
  segment,
  dir: '/d',
  podsCreated: 0,
  subnets,
})
const node1 = node('node1', 0, ['10.244.0.0/24', 'fd00:10:244::/64'], ['172.30.0.11', 'fd00:172:30::11'])
const node2 = node('node2', 1, ['10.244.1.0/24', 'fd00:10:244:1::/64'], ['172.30.1.12', 'fd00:172:30:1::12'])
const node3 = node('node3', 0, ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['172.30.0.13', 'fd00:172:30::13'])
const nodes = [node1, node2, node3]

/** What node1 of a healthy mixed dual-stack lab programs under auto: node3 on-link, node2 over VXLAN. */
const node1Routes: PeerRoute[] = [
  { dst: '10.244.1.0/24', gateway: '10.244.1.0', dev: 'flatnet.vxlan' },
  { dst: '10.244.2.0/24', gateway: '172.30.0.13', dev: 'eth0' },
  { dst: 'fd00:10:244:1::/64', gateway: 'fd00:10:244:1::', dev: 'flatnet.vxlan6' },
  { dst: 'fd00:10:244:2::/64', gateway: 'fd00:172:30::13', dev: 'eth0' },
]

t.test('lab up waits for the routes each pair’s backend implies', async (t) => {
  const want = expectedPeerRoutes({ nodes, backend: undefined }, node1)
  t.same(
    want.map((r) => [r.dst, r.backend, r.gateway]),
    [
      ['10.244.1.0/24', 'vxlan', undefined],
      ['10.244.2.0/24', 'host-gw', '172.30.0.13'],
      ['fd00:10:244:1::/64', 'vxlan', undefined],
      ['fd00:10:244:2::/64', 'host-gw', 'fd00:172:30::13'],
    ],
    'no --backend: the daemon’s auto',
  )
  t.ok(routesMatch(node1Routes, want))
  t.notOk(routesMatch(node1Routes.slice(1), want), 'a missing VXLAN route is not converged')
  const hostGwEverywhere = node1Routes.map((r) => (r.dev === 'eth0' ? r : { ...r, gateway: '172.30.1.12', dev: 'eth0' }))
  t.notOk(routesMatch(hostGwEverywhere, want), 'a host-gw route where VXLAN is expected is not converged')
  t.same(
    expectedPeerRoutes({ nodes, backend: 'host-gw' }, node1).map((r) => r.dst),
    ['10.244.2.0/24', 'fd00:10:244:2::/64'],
    'host-gw: an off-link peer gets no route at all',
  )
  t.same(
    expectedPeerRoutes({ nodes, backend: 'vxlan' }, node1).map((r) => r.backend),
    ['vxlan', 'vxlan', 'vxlan', 'vxlan'],
  )
})

t.test('the backend per node pair, read from the routes each node programmed', async (t) => {
  const routes = {
    node1: node1Routes,
    // node2 has lost its IPv6 route to node1, and reaches node3 by a host-gw route it cannot have made on its own
    node2: [
      { dst: '10.244.0.0/24', gateway: '10.244.0.0', dev: 'flatnet.vxlan' },
      { dst: '10.244.2.0/24', gateway: '172.30.0.13', dev: 'eth0' },
      { dst: 'fd00:10:244:2::/64', gateway: 'fd00:10:244:2::', dev: 'flatnet.vxlan6' },
    ],
    node3: [
      { dst: '10.244.0.0/24', gateway: '172.30.0.11', dev: 'eth0' },
      { dst: '10.244.1.0/24', gateway: '10.244.1.0', dev: 'flatnet.vxlan' },
      // the kernel's spelling of a subnet may differ from the daemon's
      { dst: 'fd00:10:244:0::/64', gateway: 'fd00:172:30::11', dev: 'eth0' },
      { dst: 'fd00:10:244:1::/64', gateway: 'fd00:10:244:1::', dev: 'flatnet.vxlan6' },
    ],
  }
  const pairs = peerBackends(nodes, routes, [4, 6], 'auto')
  const brief = (p: PairBackend) => `${p.family} ${p.from}>${p.to} ${p.backend}${p.backend === p.expected ? '' : ` (expected ${p.expected})`}`
  t.same(pairs.map(brief), [
    '4 node1>node2 vxlan',
    '4 node1>node3 host-gw',
    '4 node2>node1 vxlan',
    '4 node2>node3 host-gw (expected vxlan)',
    '4 node3>node1 host-gw',
    '4 node3>node2 vxlan',
    '6 node1>node2 vxlan',
    '6 node1>node3 host-gw',
    '6 node2>node1 none (expected vxlan)',
    '6 node2>node3 vxlan',
    '6 node3>node1 host-gw',
    '6 node3>node2 vxlan',
  ])

  const report = {
    lab: 'unit',
    ok: false,
    topology: 'routed',
    backend: 'auto',
    backends: pairs,
    families: [4, 6],
    nodes: nodes.map((n) => ({ name: n.name, address: n.address, addresses: n.addresses })),
    pods: [],
    outside: '172.30.255.1',
    outsideAddresses: ['172.30.255.1', 'fd00:172:30:255::1'],
    requirements: [],
    probes: [],
    durationMs: 10,
  } as CheckReport
  t.same(renderBackends(report).slice(1), [
    "backend auto, routed node network: how each node reaches each peer's pods (6 vxlan, 5 host-gw, 1 none; a cell with two words: IPv4/IPv6)",
    ['BACKEND \\ TO  node1         node2  node3', 'node1         ·             vxlan  host-gw', 'node2         vxlan/none ✗  ·      host-gw/vxlan ✗', 'node3         host-gw       vxlan  ·'].join(
      '\n',
    ),
  ])
  const text = renderCheck(report)
  t.match(
    text,
    /2 node pairs not on the expected backend \(backend auto\):\n✗ node2 → node3 \(IPv4\): uses host-gw, expected vxlan \(route 10\.244\.2\.0\/24 via 172\.30\.0\.13 dev eth0\)\n✗ node2 → node1 \(IPv6\): uses none, expected vxlan\n/,
  )
  t.match(text, /all 9 requirements hold in IPv4 and IPv6, but 2 node pairs are not on the expected backend: FAIL/)
  t.same(renderBackends({ ...report, nodes: report.nodes.slice(0, 1) }), [], 'one node: no pairs, no table')
})
