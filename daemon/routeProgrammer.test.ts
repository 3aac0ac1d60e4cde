// The route reconciler against a real kernel, in a throw-away namespace: the reconciler's netlink
// socket is opened inside it, and every assertion reads the kernel back with `ip -j route`.
import t, { type Test } from 'tap'
import { routes, runOk, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { parseCidr } from '../ipam/index.js'
import { openNetns, warmThreadPool } from '../net/netns.js'
import type { NodeRecord } from './datastore/types.js'
import { applyRouteDiff, closeRouteSockets, openRouteSockets, reconcileRoutes, type RouteSockets } from './routeProgrammer.js'

const cluster = parseCidr('10.244.0.0/16')

function node(name: string, subnet: string, nodeIP: string): NodeRecord {
  return { name, subnet, nodeIP, owner: `o-${name}`, updatedAt: '2026-01-01T00:00:00.000Z' }
}

/** A node namespace whose `lan0` holds 192.168.77.1/24: peers at 192.168.77.x are on-link. */
async function nodeNamespace(t: Test): Promise<{ ns: Netns; rtnl: RouteSockets; socketErrors: Error[] }> {
  await warmThreadPool()
  const nss = testNamespaces(t, 'droutes')
  const ns = await nss.create()
  const ip = (...args: string[]) => runOk(['ip', '-n', ns.name, ...args])
  await ip('link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan1')
  await ip('addr', 'add', '192.168.77.1/24', 'dev', 'lan0')
  await ip('link', 'set', 'lan0', 'up')
  await ip('link', 'set', 'lan1', 'up')
  const handle = openNetns(ns.path)
  const socketErrors: Error[] = []
  const rtnl = openRouteSockets((e) => socketErrors.push(e), handle)
  t.teardown(() => {
    closeRouteSockets(rtnl)
    handle.close()
  })
  return { ns, rtnl, socketErrors }
}

/** `dst via gateway proto P` lines of the main table, sorted, without the kernel's own routes. */
async function table(ns: Netns): Promise<string[]> {
  return (await routes(ns))
    .filter((r) => r.protocol !== 'kernel')
    .map((r) => `${r.dst}${r.gateway ? ` via ${r.gateway}` : ''} proto ${r.protocol ?? 'boot'}`)
    .sort()
}

t.test('reconcile programs on-link peers, skips an off-link one, removes a stale route of ours, leaves others alone', async (t) => {
  const { ns, rtnl } = await nodeNamespace(t)
  // Before the "daemon start": a route of a node that left while it was down, and an admin's route.
  await runOk(['ip', '-n', ns.name, 'route', 'add', '10.244.60.0/24', 'via', '192.168.77.60', 'proto', '200'])
  await runOk(['ip', '-n', ns.name, 'route', 'add', '10.244.50.0/24', 'via', '192.168.77.50', 'proto', 'static'])
  const nodes = [node('me', '10.244.0.0/24', '192.168.77.1'), node('b', '10.244.1.0/24', '192.168.77.2'), node('c', '10.244.2.0/24', '192.168.77.3'), node('far', '10.244.3.0/24', '172.31.9.9')]
  const report = await reconcileRoutes(rtnl, { nodes, self: 'me', clusters: [cluster] })
  t.same(report.errors, [])
  t.same(
    await table(ns),
    ['10.244.1.0/24 via 192.168.77.2 proto 200', '10.244.2.0/24 via 192.168.77.3 proto 200', '10.244.50.0/24 via 192.168.77.50 proto static'],
    'peer routes with protocol 200; the stale one gone; the static one untouched; none for the off-link peer or for itself',
  )
  t.equal(report.added, 2)
  t.equal(report.removed, 1)
  t.equal(report.programmed, 2)
  t.same(
    report.skipped.map((s) => s.node),
    ['far'],
  )
  t.match(report.skipped[0]!.reason, /172\.31\.9\.9 is not on-link/)
})

t.test('a second pass with nothing changed changes nothing', async (t) => {
  const { ns, rtnl } = await nodeNamespace(t)
  const nodes = [node('me', '10.244.0.0/24', '192.168.77.1'), node('b', '10.244.1.0/24', '192.168.77.2')]
  await reconcileRoutes(rtnl, { nodes, self: 'me', clusters: [cluster] })
  const before = await table(ns)
  const again = await reconcileRoutes(rtnl, { nodes, self: 'me', clusters: [cluster] })
  t.same({ added: again.added, replaced: again.replaced, removed: again.removed, kept: again.kept }, { added: 0, replaced: 0, removed: 0, kept: 1 })
  t.same(await table(ns), before)
})

t.test('a removed node loses its route; a node whose IP moved gets its route replaced', async (t) => {
  const { ns, rtnl } = await nodeNamespace(t)
  const me = node('me', '10.244.0.0/24', '192.168.77.1')
  await reconcileRoutes(rtnl, { nodes: [me, node('b', '10.244.1.0/24', '192.168.77.2'), node('c', '10.244.2.0/24', '192.168.77.3')], self: 'me', clusters: [cluster] })
  const r = await reconcileRoutes(rtnl, { nodes: [me, node('c', '10.244.2.0/24', '192.168.77.33')], self: 'me', clusters: [cluster] })
  t.same(r.errors, [])
  t.same(await table(ns), ['10.244.2.0/24 via 192.168.77.33 proto 200'])
  t.same({ removed: r.removed, replaced: r.replaced }, { removed: 1, replaced: 1 })
  const gone = await reconcileRoutes(rtnl, { nodes: [me], self: 'me', clusters: [cluster] })
  t.equal(gone.removed, 1)
  t.same(await table(ns), [], 'with no peers left, every route of ours is gone')
})

t.test('a route of another owner on a wanted destination is left as it is and reported', async (t) => {
  const { ns, rtnl } = await nodeNamespace(t)
  await runOk(['ip', '-n', ns.name, 'route', 'add', '10.244.1.0/24', 'via', '192.168.77.99', 'proto', 'static'])
  const r = await reconcileRoutes(rtnl, { nodes: [node('me', '10.244.0.0/24', '192.168.77.1'), node('b', '10.244.1.0/24', '192.168.77.2')], self: 'me', clusters: [cluster] })
  t.same(await table(ns), ['10.244.1.0/24 via 192.168.77.99 proto static'])
  t.equal(r.conflicts.length, 1)
  t.equal(r.conflicts[0]!.route.node, 'b')
  t.same(r.errors, [])
})

t.test('a route the kernel refuses is an error naming the route and the node; the others still go in', async (t) => {
  const { ns, rtnl } = await nodeNamespace(t)
  const r = await applyRouteDiff(rtnl, {
    add: [
      { node: 'x', dst: '10.244.70.0', dstLength: 24, gateway: '172.16.1.1' }, // no route to this gateway
      { node: 'y', dst: '10.244.71.0', dstLength: 24, gateway: '192.168.77.71' },
    ],
    replace: [],
    remove: [],
  })
  t.equal(r.errors.length, 1)
  t.match(r.errors[0]!.message, /^add route 10\.244\.70\.0\/24 via 172\.16\.1\.1 to node x: ENETUNREACH/)
  t.equal(r.added, 1)
  t.same(await table(ns), ['10.244.71.0/24 via 192.168.77.71 proto 200'])
})

t.test("removing a stale route never removes another owner's route with the same destination and gateway", async (t) => {
  const { ns, rtnl } = await nodeNamespace(t)
  await runOk(['ip', '-n', ns.name, 'route', 'add', '10.244.80.0/24', 'via', '192.168.77.80', 'proto', 'static'])
  const r = await applyRouteDiff(rtnl, { add: [], replace: [], remove: [{ dst: '10.244.80.0', dstLength: 24, gateway: '192.168.77.80', priority: 0 }] })
  t.equal(r.removed, 0, 'the delete names protocol 200, so the kernel finds nothing to delete')
  t.same(await table(ns), ['10.244.80.0/24 via 192.168.77.80 proto static'])
})

t.test('hundreds of routes in one pass: all programmed, then all removed', async (t) => {
  const { ns, rtnl, socketErrors } = await nodeNamespace(t)
  await runOk(['ip', '-n', ns.name, 'addr', 'add', '192.168.0.1/16', 'dev', 'lan0'])
  // A /12 cluster so that every one of 600 peers has its own /24; node IPs on the /16.
  const big = parseCidr('10.32.0.0/12')
  const me = node('me', '10.32.0.0/24', '192.168.0.1')
  const many = Array.from({ length: 600 }, (_, k) => {
    const i = k + 1
    return node(`p${i}`, `10.${32 + (i >> 8)}.${i & 255}.0/24`, `192.168.${1 + (i >> 8)}.${i & 255 || 1}`)
  })
  const r = await reconcileRoutes(rtnl, { nodes: [me, ...many], self: 'me', clusters: [big] })
  t.same(r.errors, [])
  t.equal(r.added, 600)
  t.equal((await routes(ns)).filter((x) => x.protocol === '200').length, 600)
  const down = await reconcileRoutes(rtnl, { nodes: [], self: 'me', clusters: [big] })
  t.equal(down.removed, 600)
  t.equal((await routes(ns)).filter((x) => x.protocol === '200').length, 0)
  t.same(socketErrors, [], 'no netlink socket errors (no answer was dropped)')
})

// Dual stack: lan0 also holds fd00:77::1/64 (nodad: a tentative address makes no connected route
// usable for a while), so peers at fd00:77::x are on-link in IPv6 too.
const cluster6 = parseCidr('fd00:10:244::/56')
function dual(name: string, n: number, ips: string[]): NodeRecord {
  const subnets = [`10.244.${n}.0/24`, `fd00:10:244:${n}::/64`]
  return { ...node(name, subnets[0]!, ips[0]!), subnets, nodeIPs: ips }
}

/** `dst via gateway proto P metric M` lines of the IPv6 main table, without the kernel's own routes. */
async function table6(ns: Netns): Promise<string[]> {
  const r = await runOk(['ip', '-n', ns.name, '-6', '-j', 'route', 'show', 'table', 'main'])
  return (JSON.parse(r.stdout) as Array<{ dst: string; gateway?: string; protocol?: string; metric?: number }>)
    .filter((x) => x.protocol !== 'kernel')
    .map((x) => `${x.dst}${x.gateway ? ` via ${x.gateway}` : ''} proto ${x.protocol ?? 'boot'} metric ${x.metric}`)
    .sort()
}

t.test('dual stack: one route per family per peer, replaced when the IPv6 address moves, removed with the peer; foreign IPv6 routes untouched', async (t) => {
  const { ns, rtnl, socketErrors } = await nodeNamespace(t)
  await runOk(['ip', '-n', ns.name, 'addr', 'add', 'fd00:77::1/64', 'dev', 'lan0', 'nodad'])
  await runOk(['ip', '-n', ns.name, '-6', 'route', 'add', 'fd00:10:244:50::/64', 'via', 'fd00:77::50', 'proto', 'static'])
  await runOk(['ip', '-n', ns.name, '-6', 'route', 'add', 'fd00:10:244:60::/64', 'via', 'fd00:77::60', 'proto', '200']) // left while the daemon was down
  const clusters = [cluster, cluster6]
  const me = dual('me', 0, ['192.168.77.1', 'fd00:77::1'])
  const first = await reconcileRoutes(rtnl, { nodes: [me, dual('b', 1, ['192.168.77.2', 'fd00:77::2']), dual('c', 2, ['192.168.77.3'])], self: 'me', clusters })
  t.same(first.errors, [])
  t.same(await table(ns), ['10.244.1.0/24 via 192.168.77.2 proto 200', '10.244.2.0/24 via 192.168.77.3 proto 200'])
  t.same(
    await table6(ns),
    ['fd00:10:244:1::/64 via fd00:77::2 proto 200 metric 1024', 'fd00:10:244:50::/64 via fd00:77::50 proto static metric 1024'],
    'the IPv6 peer route with protocol 200; the stale one gone; the static one untouched; none for c, which has no IPv6 address',
  )
  t.same(first.programmedByFamily, { 4: 2, 6: 1 })
  t.same(
    first.skipped.map((s) => `${s.node} IPv${s.family}`),
    ['c IPv6'],
  )

  const again = await reconcileRoutes(rtnl, { nodes: [me, dual('b', 1, ['192.168.77.2', 'fd00:77::2']), dual('c', 2, ['192.168.77.3'])], self: 'me', clusters })
  t.same({ added: again.added, replaced: again.replaced, removed: again.removed, kept: again.kept }, { added: 0, replaced: 0, removed: 0, kept: 3 }, 'a second pass changes nothing')

  const moved = await reconcileRoutes(rtnl, { nodes: [me, dual('b', 1, ['192.168.77.2', 'fd00:77::22'])], self: 'me', clusters })
  t.same({ replaced: moved.replaced, removed: moved.removed }, { replaced: 1, removed: 1 })
  t.same(await table6(ns), ['fd00:10:244:1::/64 via fd00:77::22 proto 200 metric 1024', 'fd00:10:244:50::/64 via fd00:77::50 proto static metric 1024'])

  const gone = await reconcileRoutes(rtnl, { nodes: [me], self: 'me', clusters })
  t.equal(gone.removed, 2)
  t.same(await table(ns), [])
  t.same(await table6(ns), ['fd00:10:244:50::/64 via fd00:77::50 proto static metric 1024'])
  t.same(socketErrors, [])
})

t.test('IPv6-only: routes via IPv6 node addresses, and none left once the peers are gone', async (t) => {
  const { ns, rtnl } = await nodeNamespace(t)
  await runOk(['ip', '-n', ns.name, 'addr', 'add', 'fd00:77::1/64', 'dev', 'lan0', 'nodad'])
  const v6 = (name: string, n: number, ip: string): NodeRecord => node(name, `fd00:10:244:${n}::/64`, ip)
  const nodes = [v6('me', 0, 'fd00:77::1'), v6('b', 1, 'fd00:77::2'), v6('c', 2, 'fd00:77::3')]
  const r = await reconcileRoutes(rtnl, { nodes, self: 'me', clusters: [cluster6] })
  t.same(r.errors, [])
  t.same(await table6(ns), ['fd00:10:244:1::/64 via fd00:77::2 proto 200 metric 1024', 'fd00:10:244:2::/64 via fd00:77::3 proto 200 metric 1024'])
  t.same(await table(ns), [], 'no IPv4 route')
  await reconcileRoutes(rtnl, { nodes: nodes.slice(0, 1), self: 'me', clusters: [cluster6] })
  t.same(await table6(ns), [])
})
