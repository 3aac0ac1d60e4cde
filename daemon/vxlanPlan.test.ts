// The VXLAN backend's decisions as pure functions (no root): the per-peer choice of the shared
// peer plan, the entry diff of one device, the pods' MTU and the VTEP MAC.
import t from 'tap'
import { parseCidr } from '../ipam/index.js'
import type { RouteInfo } from '../net/rtnl.js'
import type { NodeBackend, NodeRecord } from './datastore/types.js'
import { desiredRoutes, diffRoutes } from './routes.js'
import { NUD_PERMANENT, diffVxlan, podMtuFor, vtepMacOf } from './vxlan.js'

const cluster = parseCidr('10.244.0.0/16')
const connected: RouteInfo = { family: 4, dst: '192.168.1.0', dstLength: 24, scope: 253, protocol: 2, table: 254, type: 1, priority: 0, oif: 2 }

function node(name: string, subnet: string, nodeIP: string, backend?: NodeBackend, mac = true): NodeRecord {
  const r: NodeRecord = { name, subnet, nodeIP, owner: name, updatedAt: 'x' }
  if (backend) r.backend = backend
  if (backend && mac) r.vtepMac = vtepMacOf(name)
  return r
}

const self = node('me', '10.244.0.0/24', '192.168.1.1', 'auto')
const onLink = node('near', '10.244.1.0/24', '192.168.1.2', 'auto')
const offLink = node('far', '10.244.2.0/24', '172.16.0.2', 'auto')
const old = node('old', '10.244.3.0/24', '172.16.0.3')
const plan = (backend: NodeBackend, nodes: NodeRecord[]) => desiredRoutes({ nodes, self: 'me', clusters: [cluster], kernelRoutes: [connected], localAddresses: ['192.168.1.1'], backend })

t.test('the peer plan: auto tunnels off-link peers only, vxlan every peer, host-gw none; a peer without a VTEP MAC is never tunnelled', async (t) => {
  const auto = plan('auto', [self, onLink, offLink, old])
  t.same(
    auto.routes.map((r) => r.node),
    ['near'],
    'auto: host-gw to the on-link peer',
  )
  t.same(
    auto.tunnels.map((p) => [p.node, p.dst, p.dstLength, p.gateway, p.vtepMac]),
    [['far', '10.244.2.0', 24, '172.16.0.2', vtepMacOf('far')]],
    'auto: VXLAN to the off-link peer',
  )
  t.match(auto.skipped, [{ node: 'old', reason: /not on-link .* publishes no VTEP MAC/ }], 'an off-link peer of an earlier flatnet is skipped, saying why')
  const vx = plan('vxlan', [{ ...self, backend: 'vxlan' }, onLink, offLink])
  t.same(
    vx.tunnels.map((p) => p.node),
    ['far', 'near'],
    'vxlan: every peer tunnelled',
  )
  t.same(vx.routes, [])
  const hostGw = plan('host-gw', [self, onLink, offLink])
  t.same(
    hostGw.routes.map((r) => r.node),
    ['near'],
  )
  t.same(hostGw.tunnels, [])
  t.match(hostGw.skipped, [{ node: 'far', reason: /--backend host-gw/ }], 'host-gw: the off-link peer is skipped, naming the flag')
  const peerAsks = plan('auto', [self, { ...onLink, backend: 'vxlan' }])
  t.same(
    peerAsks.tunnels.map((p) => p.node),
    ['near'],
    'a peer running --backend vxlan is tunnelled even when on-link (both directions on one path)',
  )
  const peerHostGw = plan('auto', [self, node('hg', '10.244.4.0/24', '172.16.0.4', 'host-gw')])
  t.same(peerHostGw.tunnels, [], 'a host-gw peer is never tunnelled')
})

t.test('routes and vxlan each own their routes: host-gw leaves routes through the vxlan device alone, and takes a destination over in place', async (t) => {
  const viaVxlan: RouteInfo = { family: 4, dst: '10.244.2.0', dstLength: 24, gateway: '10.244.2.0', oif: 9, scope: 0, protocol: 200, table: 254, type: 1, priority: 0 }
  const viaVxlan2: RouteInfo = { ...viaVxlan, dst: '10.244.1.0', gateway: '10.244.1.0' }
  const diff = diffRoutes([{ node: 'near', dst: '10.244.1.0', dstLength: 24, gateway: '192.168.1.2' }], [viaVxlan, viaVxlan2], (r) => r.oif === 9)
  t.same(diff.remove, [], 'a tunnel route is never removed by the routes reconciler')
  t.same(
    diff.replace.map((r) => r.dst),
    ['10.244.1.0'],
    'a peer moving to host-gw: its tunnel route is replaced in place',
  )
  t.same(diff.add, [])
})

t.test('the diff of one device: adds neighbour, FDB, route; removes in reverse kinds; keeps what is right; leaves foreign routes', async (t) => {
  const far = plan('auto', [self, offLink]).tunnels
  const mac = vtepMacOf('far')
  const empty = diffVxlan(far, { index: 9, neighbours: [], fdb: [], routes: [] })
  t.same(empty.setNeighbours, [{ address: '10.244.2.0', mac }])
  t.same(empty.setFdb, [{ mac, dst: '172.16.0.2' }])
  t.same(
    empty.setRoutes.map((r) => [r.dst, r.gateway, r.replace]),
    [['10.244.2.0', '10.244.2.0', undefined]],
  )
  const route: RouteInfo = { family: 4, dst: '10.244.2.0', dstLength: 24, gateway: '10.244.2.0', oif: 9, scope: 0, protocol: 200, table: 254, type: 1, priority: 0 }
  const steady = diffVxlan(far, {
    index: 9,
    neighbours: [{ family: 4, index: 9, address: '10.244.2.0', mac, state: NUD_PERMANENT }],
    fdb: [{ index: 9, mac, dst: '172.16.0.2', state: NUD_PERMANENT, flags: 2 }],
    routes: [route],
  })
  t.same(steady.kept, { neighbours: 1, fdb: 1, routes: 1 }, 'all in place: nothing to do')
  t.same([steady.setNeighbours, steady.setFdb, steady.setRoutes, steady.removeRoutes, steady.removeFdb, steady.removeNeighbours], [[], [], [], [], [], []])
  const gone = diffVxlan([], {
    index: 9,
    neighbours: [
      { family: 4, index: 9, address: '10.244.2.0', mac, state: NUD_PERMANENT },
      { family: 4, index: 9, address: '10.244.7.7', mac: '02:00:00:00:00:07', state: 0x02 },
      { family: 4, index: 3, address: '192.168.1.77', mac: '02:00:00:00:00:77', state: NUD_PERMANENT },
    ],
    fdb: [
      { index: 9, mac, dst: '172.16.0.2', state: NUD_PERMANENT, flags: 2 },
      { index: 4, mac: '02:00:00:00:00:99', dst: '172.16.0.9', state: NUD_PERMANENT, flags: 2 },
    ],
    routes: [route, { ...route, dst: '10.244.5.0', gateway: '192.168.1.5', oif: 2, protocol: 4 }],
  })
  t.same(
    gone.removeRoutes.map((r) => r.dst),
    ['10.244.2.0'],
    'the peer left: its route goes; a static route elsewhere stays',
  )
  t.same(gone.removeFdb, [{ mac, dst: '172.16.0.2' }], "its FDB entry goes; another device's stays")
  t.same(gone.removeNeighbours, [{ address: '10.244.2.0', mac }], 'its permanent neighbour goes; a reachable (kernel) one and another device’s stay')
  const moved = diffVxlan(
    far.map((p) => ({ ...p, gateway: '172.16.0.20' })),
    { index: 9, neighbours: [{ family: 4, index: 9, address: '10.244.2.0', mac, state: NUD_PERMANENT }], fdb: [{ index: 9, mac, dst: '172.16.0.2', state: NUD_PERMANENT, flags: 2 }], routes: [route] },
  )
  t.same(moved.setFdb, [{ mac, dst: '172.16.0.20' }], 'a peer with a new node address: its FDB entry is set to it')
  t.same(moved.removeFdb, [{ mac, dst: '172.16.0.2' }], 'and the old remote removed')
  const hostGwRoute: RouteInfo = { ...route, gateway: '192.168.1.2', oif: 2 }
  t.same(
    diffVxlan(far, { index: 9, neighbours: [], fdb: [], routes: [hostGwRoute] }).setRoutes.map((r) => r.replace),
    [true],
    "host-gw's route to the destination is taken over in place",
  )
  const foreign = diffVxlan(far, { index: 9, neighbours: [], fdb: [], routes: [{ ...hostGwRoute, protocol: 4 }] })
  t.same(foreign.setRoutes, [], 'a route of another owner is not replaced')
  t.equal(foreign.blocked.length, 1, 'it is reported')
})

t.test('pod MTU and VTEP MAC', async (t) => {
  t.equal(podMtuFor('host-gw', [{ family: 4, mtu: 1500 }]), undefined, 'host-gw: the conflist carries no MTU')
  t.equal(podMtuFor('auto', [{ family: 4, mtu: 1500 }]), 1450, 'auto reserves the IPv4 overhead')
  t.equal(
    podMtuFor('vxlan', [
      { family: 4, mtu: 9000 },
      { family: 6, mtu: 1500 },
    ]),
    1430,
    'dual-stack: the smallest, IPv6 underlay costs 70',
  )
  t.equal(podMtuFor('auto', []), undefined)
  t.equal(vtepMacOf('node-1'), vtepMacOf('node-1'), 'the same name, the same MAC (restarts do not churn)')
  t.not(vtepMacOf('node-1'), vtepMacOf('node-2'))
  t.match(vtepMacOf('node-1'), /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/, 'unicast, locally administered')
})
