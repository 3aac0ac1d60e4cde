// The route reconciler's decisions, without a kernel: which peers get a route, and what the
// diff against a route dump adds, replaces, removes and leaves alone.
import t from 'tap'
import { parseCidr } from '../ipam/index.js'
import type { RouteInfo } from '../net/rtnl.js'
import type { NodeRecord } from './datastore/types.js'
import { DAEMON_ROUTE_PROTOCOL, connectedNetworks, desiredRoutes, diffRoutes, ownedRoutes, type PeerRoute } from './routes.js'

const cluster = parseCidr('10.244.0.0/16')

function node(name: string, subnet: string, nodeIP: string): NodeRecord {
  return { name, subnet, nodeIP, owner: `owner-${name}`, updatedAt: '2026-01-01T00:00:00.000Z' }
}

function route(dst: string, extra: Partial<RouteInfo> = {}): RouteInfo {
  const [addr, len] = dst.split('/')
  return { family: 4, dst: addr!, dstLength: Number(len), scope: 0, protocol: DAEMON_ROUTE_PROTOCOL, table: 254, type: 1, priority: 0, ...extra }
}

// What the kernel shows for an interface holding 192.168.7.1/24: the connected route.
const connected = route('192.168.7.0/24', { protocol: 2, scope: 253, oif: 2 })
const nodes = [node('a', '10.244.0.0/24', '192.168.7.1'), node('b', '10.244.1.0/24', '192.168.7.2'), node('c', '10.244.2.0/24', '192.168.7.3')]

t.test('every other node gets <subnet> via <nodeIP>; the own node none', async (t) => {
  const { routes, skipped } = desiredRoutes({ nodes, self: 'a', clusters: [cluster], kernelRoutes: [connected], localAddresses: ['192.168.7.1'] })
  t.same(routes, [
    { node: 'b', dst: '10.244.1.0', dstLength: 24, gateway: '192.168.7.2' },
    { node: 'c', dst: '10.244.2.0', dstLength: 24, gateway: '192.168.7.3' },
  ])
  t.same(skipped, [])
})

t.test('a peer whose node IP no connected route covers is skipped with the reason', async (t) => {
  const far = node('far', '10.244.9.0/24', '172.16.0.9')
  const { routes, skipped } = desiredRoutes({ nodes: [...nodes, far], self: 'a', clusters: [cluster], kernelRoutes: [connected], localAddresses: [] })
  t.notOk(routes.some((r) => r.node === 'far'))
  t.equal(skipped.length, 1)
  t.equal(skipped[0]!.node, 'far')
  t.match(skipped[0]!.reason, /172\.16\.0\.9 is not on-link/)
})

t.test('on-link means a connected route (proto kernel, scope link), not any route', async (t) => {
  const viaGateway = route('172.16.0.0/16', { protocol: 3, gateway: '192.168.7.254' }) // reachable, but not on-link
  const podHostRoute = route('172.17.0.5/32', { protocol: 201, scope: 253, oif: 9 }) // the plugin's pod route
  const staticLink = route('172.18.0.0/16', { protocol: 4, scope: 253, oif: 3 }) // hand-made scope-link route
  t.same(
    connectedNetworks([connected, viaGateway, podHostRoute, staticLink]).map((c) => c.text),
    ['192.168.7.0/24'],
  )
  const peers = [node('a', '10.244.0.0/24', '192.168.7.1'), node('x', '10.244.5.0/24', '172.16.3.3'), node('y', '10.244.6.0/24', '172.17.0.5')]
  const { routes, skipped } = desiredRoutes({ nodes: peers, self: 'a', clusters: [cluster], kernelRoutes: [connected, viaGateway, podHostRoute], localAddresses: [] })
  t.same(routes, [])
  t.same(
    skipped.map((s) => s.node),
    ['x', 'y'],
  )
})

t.test('records that cannot be routed safely are skipped, each with its reason', async (t) => {
  const bad = [
    node('a', '10.244.0.0/24', '192.168.7.1'),
    node('outside', '10.9.0.0/24', '192.168.7.20'),
    node('self-ip', '10.244.3.0/24', '192.168.7.1'),
    node('overlap', '10.244.0.0/24', '192.168.7.21'),
    node('garbage', 'not-a-cidr', '192.168.7.22'),
    node('whole', '0.0.0.0/0', '192.168.7.23'),
  ]
  const { routes, skipped } = desiredRoutes({ nodes: bad, self: 'a', clusters: [cluster], kernelRoutes: [connected], localAddresses: ['192.168.7.1'] })
  t.same(routes, [])
  const why = Object.fromEntries(skipped.map((s) => [s.node, s.reason]))
  t.match(why.outside, /not inside cluster range 10\.244\.0\.0\/16/)
  t.match(why['self-ip'], /address of this node/)
  t.match(why.overlap, /overlaps this node's own subnet 10\.244\.0\.0\/24/)
  t.match(why.garbage, /invalid record/)
  t.match(why.whole, /not inside cluster range/)
})

t.test('of two peers with overlapping subnets only one gets a route, whatever the list order', async (t) => {
  const peers = [
    node('a', '10.244.0.0/24', '192.168.7.1'),
    node('p', '10.244.4.0/24', '192.168.7.4'),
    node('q', '10.244.4.0/23', '192.168.7.5'),
    node('r', '10.244.5.0/24', '192.168.7.6'),
    node('s', '10.244.6.0/24', '192.168.7.7'),
  ]
  for (const order of [peers, [...peers].reverse()]) {
    const { routes, skipped } = desiredRoutes({ nodes: order, self: 'a', clusters: [cluster], kernelRoutes: [connected], localAddresses: [] })
    t.same(
      routes.map((r) => `${r.node} ${r.dst}/${r.dstLength}`),
      ['q 10.244.4.0/23', 's 10.244.6.0/24'],
      'the larger block at the lower address wins; disjoint peers unaffected',
    )
    t.same(skipped.map((s) => s.node).sort(), ['p', 'r'])
  }
})

const want: PeerRoute[] = [
  { node: 'b', dst: '10.244.1.0', dstLength: 24, gateway: '192.168.7.2' },
  { node: 'c', dst: '10.244.2.0', dstLength: 24, gateway: '192.168.7.3' },
]

t.test('diff adds missing routes and keeps the ones already right', async (t) => {
  const d = diffRoutes(want, [connected, route('10.244.1.0/24', { gateway: '192.168.7.2' })])
  t.same(
    d.keep.map((r) => r.node),
    ['b'],
  )
  t.same(
    d.add.map((r) => r.node),
    ['c'],
  )
  t.same(d.replace, [])
  t.same(d.remove, [])
})

t.test('diff replaces our route whose gateway changed (node IP moved)', async (t) => {
  const d = diffRoutes(want, [route('10.244.1.0/24', { gateway: '192.168.7.99' }), route('10.244.2.0/24', { gateway: '192.168.7.3' })])
  t.same(d.replace, [want[0]])
  t.same(d.add, [])
  t.same(d.remove, [])
})

t.test('diff removes our routes no node wants (a node that left, also while we were down)', async (t) => {
  const stale = route('10.244.7.0/24', { gateway: '192.168.7.7' })
  const d = diffRoutes(want, [route('10.244.1.0/24', { gateway: '192.168.7.2' }), route('10.244.2.0/24', { gateway: '192.168.7.3' }), stale])
  t.same(d.remove, [{ dst: '10.244.7.0', dstLength: 24, gateway: '192.168.7.7', priority: 0 }])
  t.same(diffRoutes([], [stale]).remove.length, 1, 'with no peers at all, every route of ours goes')
})

t.test('diff never touches a route of another protocol or table', async (t) => {
  const foreign = [
    route('10.244.9.0/24', { protocol: 4, gateway: '192.168.7.9' }), // static, on a destination nobody wants
    route('10.244.8.0/24', { protocol: 3, gateway: '192.168.7.8' }), // boot
    route('10.244.6.0/24', { table: 100 }), // ours by protocol, but another table
    connected,
  ]
  const d = diffRoutes(want, foreign)
  t.same(d.remove, [])
  t.same(d.replace, [])
  t.same(
    d.add.map((r) => r.node),
    ['b', 'c'],
  )
  t.same(ownedRoutes(foreign), [], 'ownedRoutes sees only main-table IPv4 proto 200 routes')
})

t.test('a foreign route on a wanted destination is a conflict, not a replace', async (t) => {
  const adminRoute = route('10.244.1.0/24', { protocol: 4, gateway: '192.168.7.200' })
  const d = diffRoutes(want, [adminRoute])
  t.same(
    d.add.map((r) => r.node),
    ['c'],
  )
  t.same(d.replace, [])
  t.equal(d.conflicts.length, 1)
  t.equal(d.conflicts[0]!.route.node, 'b')
  t.equal(d.conflicts[0]!.holder.protocol, 4)
  // The same destination at another metric is another route to the kernel: no conflict.
  t.same(
    diffRoutes(want, [{ ...adminRoute, priority: 100 }]).add.map((r) => r.node),
    ['b', 'c'],
  )
})

t.test('a leftover of ours at another metric is removed, the metric-0 one kept', async (t) => {
  const d = diffRoutes(want, [route('10.244.1.0/24', { gateway: '192.168.7.2' }), route('10.244.1.0/24', { gateway: '192.168.7.2', priority: 50 }), route('10.244.2.0/24', { gateway: '192.168.7.3' })])
  t.same(d.keep.length, 2)
  t.same(d.remove, [{ dst: '10.244.1.0', dstLength: 24, gateway: '192.168.7.2', priority: 50 }])
})

t.test('5000 peers: each is routed or skipped, and every route is an add on an empty table', async (t) => {
  const many: NodeRecord[] = [node('self', '10.0.0.0/24', '172.20.0.1')]
  for (let i = 1; i <= 5000; i++) many.push(node(`n${i}`, `10.${i >> 8}.${i & 255}.0/24`, `172.20.${i >> 8}.${i & 255 || 1}`))
  const big = parseCidr('10.0.0.0/8')
  const lan = route('172.20.0.0/16', { protocol: 2, scope: 253, oif: 2 })
  const { routes, skipped } = desiredRoutes({ nodes: many, self: 'self', clusters: [big], kernelRoutes: [lan], localAddresses: ['172.20.0.1'] })
  t.equal(routes.length + skipped.length, 5000)
  const d = diffRoutes(routes, [lan])
  t.equal(d.add.length, routes.length)
})

// Dual stack: a node's subnets and addresses per family (nodeFamilies), IPv6 routes at the metric
// the kernel gives an IPv6 route added without one.
const cluster6 = parseCidr('fd00:10:244::/56')
const connected6 = route('fd00:77::', { family: 6, dstLength: 64, protocol: 2, scope: 0, priority: 256, oif: 2 })
function dual(name: string, n: number, ips: string[]): NodeRecord {
  const subnets = [`10.244.${n}.0/24`, `fd00:10:244:${n}::/64`]
  return { ...node(name, subnets[0]!, ips[0]!), subnets, nodeIPs: ips }
}

t.test('dual stack: each peer gets one route per family, via its address of that family', async (t) => {
  const peers = [dual('a', 0, ['192.168.7.1', 'fd00:77::1']), dual('b', 1, ['192.168.7.2', 'fd00:77::2'])]
  const { routes, skipped } = desiredRoutes({ nodes: peers, self: 'a', clusters: [cluster, cluster6], kernelRoutes: [connected, connected6], localAddresses: ['192.168.7.1', 'fd00:77::1'] })
  t.same(routes, [
    { node: 'b', dst: '10.244.1.0', dstLength: 24, gateway: '192.168.7.2' },
    { node: 'b', dst: 'fd00:10:244:1::', dstLength: 64, gateway: 'fd00:77::2' },
  ])
  t.same(skipped, [])
})

t.test('dual stack: a peer without an IPv6 address, or with an IPv4-only record, gets its IPv4 route and a named IPv6 skip', async (t) => {
  const peers = [
    dual('a', 0, ['192.168.7.1', 'fd00:77::1']),
    dual('noaddr', 1, ['192.168.7.2']),
    node('old', '10.244.2.0/24', '192.168.7.3'), // written by the previous, IPv4-only version
  ]
  const { routes, skipped } = desiredRoutes({ nodes: peers, self: 'a', clusters: [cluster, cluster6], kernelRoutes: [connected, connected6], localAddresses: [] })
  t.same(
    routes.map((r) => `${r.node} ${r.dst}/${r.dstLength} via ${r.gateway}`),
    ['noaddr 10.244.1.0/24 via 192.168.7.2', 'old 10.244.2.0/24 via 192.168.7.3'],
  )
  t.same(
    skipped.map((s) => [s.node, s.family, s.lacksFamily]),
    [
      ['noaddr', 6, true],
      ['old', 6, true],
    ],
  )
  t.match(skipped[0]!.reason, /has no IPv6 address: no IPv6 route to its subnet fd00:10:244:1::\/64/)
  t.match(skipped[1]!.reason, /holds no IPv6 subnet/)
})

t.test('IPv6-only: routes via IPv6 node addresses; an off-link IPv6 peer is skipped', async (t) => {
  const v6 = (name: string, n: number, ip: string): NodeRecord => node(name, `fd00:10:244:${n}::/64`, ip)
  const peers = [v6('a', 0, 'fd00:77::1'), v6('b', 1, 'fd00:77::2'), v6('far', 2, 'fd00:99::9')]
  const { routes, skipped } = desiredRoutes({ nodes: peers, self: 'a', clusters: [cluster6], kernelRoutes: [connected6], localAddresses: ['fd00:77::1'] })
  t.same(routes, [{ node: 'b', dst: 'fd00:10:244:1::', dstLength: 64, gateway: 'fd00:77::2' }])
  t.same(
    skipped.map((s) => s.node),
    ['far'],
  )
  t.match(skipped[0]!.reason, /fd00:99::9 is not on-link/)
})

t.test('IPv6 routes are ours at metric 1024 (what an IPv6 route added without a metric gets); a family no longer configured loses our routes', async (t) => {
  const want6: PeerRoute[] = [{ node: 'b', dst: 'fd00:10:244:1::', dstLength: 64, gateway: 'fd00:77::2' }]
  const ours6 = route('fd00:10:244:1::', { family: 6, dstLength: 64, gateway: 'fd00:77::2', priority: 1024 })
  t.same(diffRoutes(want6, [ours6]).keep.length, 1, 'kept, not re-added')
  const foreign6 = route('fd00:10:244:1::', { family: 6, dstLength: 64, gateway: 'fd00:77::99', priority: 1024, protocol: 4 })
  t.same(diffRoutes(want6, [foreign6]).conflicts.length, 1, 'a static route at 1024 holds the destination')
  const d = diffRoutes(want, [ours6, route('10.244.1.0/24', { gateway: '192.168.7.2' })])
  t.same(
    d.remove.map((r) => `${r.dst}/${r.dstLength}`),
    ['fd00:10:244:1::/64'],
    'IPv4 only now: our IPv6 route goes',
  )
})

t.test('an IPv6 node address written non-canonically is routed in the canonical text the kernel lists back (no replace on every sync)', async (t) => {
  const peers = [dual('a', 0, ['192.168.7.1', 'fd00:77::1']), dual('b', 1, ['192.168.7.2', 'FD00:77:0::0:2'])]
  const { routes } = desiredRoutes({ nodes: peers, self: 'a', clusters: [cluster, cluster6], kernelRoutes: [connected, connected6], localAddresses: [] })
  t.equal(routes[1]!.gateway, 'fd00:77::2')
  const ours6 = route('fd00:10:244:1::', { family: 6, dstLength: 64, gateway: 'fd00:77::2', priority: 1024 })
  t.same(diffRoutes(routes.slice(1), [ours6]).keep.length, 1)
})
