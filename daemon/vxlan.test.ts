// The VXLAN backend against real namespaces: three "node" namespaces on two L2 segments joined by
// a router namespace that routes node addresses only (never pod subnets). a and b share segment
// 1, c is alone on segment 2. Each node runs flatnetd's two peer reconcilers (routes, vxlan) with
// its own netlink sockets; every assertion reads the kernel back with iproute2, and the capture
// reads the wire.
import { spawn } from 'node:child_process'
import t, { type Test } from 'tap'
import { runOk, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { parseCidr } from '../ipam/index.js'
import { openNetns, warmThreadPool } from '../net/netns.js'
import type { NodeRecord } from './datastore/types.js'
import { closeRouteSockets, openRouteSockets, reconcileRoutes, type RouteSockets } from './routeProgrammer.js'
import { vtepMacOf } from './vxlan.js'
import { reconcileVxlan, vxlanDeviceIndexes } from './vxlanProgrammer.js'

const cluster = parseCidr('10.244.0.0/16')
const clusters = [cluster]
const VNI = 1
const PORT = 8472

interface Node {
  name: string
  ns: Netns
  socks: RouteSockets
  nodeIP: string
  subnet: string
  ip(...args: string[]): Promise<string>
}

function recordOf(n: { name: string; nodeIP: string; subnet: string }, backend: 'auto' | 'host-gw' | 'vxlan' = 'auto'): NodeRecord {
  return { name: n.name, nodeIP: n.nodeIP, subnet: n.subnet, owner: `o-${n.name}`, updatedAt: '2026-01-01T00:00:00.000Z', backend, vtepMac: vtepMacOf(n.name) }
}

/** One pass of flatnetd's peer reconcilers on `node`: routes, then vxlan (the runner's order). */
async function pass(t: Test, node: Node, nodes: readonly NodeRecord[], backend: 'auto' | 'host-gw' | 'vxlan' = 'auto') {
  const routes = await reconcileRoutes(node.socks, { nodes, self: node.name, clusters, backend, tunnelDevices: await vxlanDeviceIndexes(node.socks) })
  const vxlan = await reconcileVxlan(node.socks, { nodes, self: node.name, clusters, backend, vni: VNI, port: PORT, mac: vtepMacOf(node.name) })
  t.same([...routes.errors, ...vxlan.errors], [], `${node.name}: the pass has no errors`)
  return { routes, vxlan }
}

/** The peer state of a node as iproute2 shows it: proto-200 routes, permanent neighbours and fdb remotes of the vxlan device. */
async function peerState(node: Node): Promise<{ routes: string[]; neighbours: string[]; fdb: string[] }> {
  const routes = (await node.ip('route', 'show', 'proto', '200'))
    .split('\n')
    .filter(Boolean)
    .map((l) => l.trim().replace(/\s+/g, ' '))
    .sort()
  const dev = await node.ip('link', 'show', 'flatnet.vxlan').catch(() => '')
  if (!dev) return { routes, neighbours: [], fdb: [] }
  const neighbours = (await node.ip('neigh', 'show', 'dev', 'flatnet.vxlan', 'nud', 'permanent'))
    .split('\n')
    .filter(Boolean)
    .map((l) => l.trim())
    .sort()
  const fdb = (await runOk(['bridge', '-n', node.ns.name, 'fdb', 'show', 'dev', 'flatnet.vxlan'])).stdout
    .split('\n')
    .filter((l) => l.includes(' dst '))
    .map((l) => l.trim())
    .sort()
  return { routes, neighbours, fdb }
}

/** Starts tcpdump in `ns` on `dev` for one packet matching `filter`; resolves its printed line, or '' after the bound. */
async function captureOne(t: Test, ns: Netns, dev: string, filter: string): Promise<() => Promise<string>> {
  const p = spawn('ip', ['netns', 'exec', ns.name, 'tcpdump', '-l', '-n', '-c', '1', '-i', dev, filter], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    if (p.exitCode === null) p.kill('SIGKILL')
  })
  let out = ''
  p.stdout.on('data', (d: Buffer) => (out += d.toString()))
  // Listening once it says so on stderr; packets sent before that would be missed.
  await new Promise<void>((resolve, reject) => {
    let err = ''
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString()
      if (err.includes('listening on')) resolve()
    })
    p.on('exit', () => reject(new Error(`tcpdump in ${ns.name} on ${dev} exited: ${err}`)))
  })
  return () =>
    new Promise<string>((resolve) => {
      // Bound only so a missing packet fails the assertion instead of hanging the test.
      const timer = setTimeout(() => {
        p.kill('SIGKILL')
        resolve(out.trim())
      }, 5000)
      p.on('exit', () => {
        clearTimeout(timer)
        resolve(out.trim())
      })
    })
}

t.test('per-peer backend over two L2 segments: on-link peers by route, off-link ones by VXLAN, reconciled level-triggered', async (t) => {
  await warmThreadPool()
  const nss = testNamespaces(t, 'vxlan')
  const router = await nss.create('r')
  const rip = (...args: string[]) => runOk(['ip', '-n', router.name, ...args])
  // Segment 1 is a bridge in the router's namespace (br_netfilter sees it there, with no rules).
  await rip('link', 'add', 'seg1', 'type', 'bridge')
  await rip('addr', 'add', '192.168.1.1/24', 'dev', 'seg1')
  await rip('link', 'set', 'seg1', 'up')
  await runOk(['ip', 'netns', 'exec', router.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
  const nodes: Node[] = []
  const plan = [
    { name: 'a', nodeIP: '192.168.1.2', subnet: '10.244.1.0/24', segment: 1 },
    { name: 'b', nodeIP: '192.168.1.3', subnet: '10.244.2.0/24', segment: 1 },
    { name: 'c', nodeIP: '192.168.2.2', subnet: '10.244.3.0/24', segment: 2 },
  ]
  for (const p of plan) {
    const ns = await nss.create(p.name)
    const ip = async (...args: string[]) => (await runOk(['ip', '-n', ns.name, ...args])).stdout
    await rip('link', 'add', `to-${p.name}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name)
    if (p.segment === 1) await rip('link', 'set', `to-${p.name}`, 'master', 'seg1')
    else await rip('addr', 'add', '192.168.2.1/24', 'dev', `to-${p.name}`)
    await rip('link', 'set', `to-${p.name}`, 'up')
    await ip('addr', 'add', `${p.nodeIP}/24`, 'dev', 'eth0')
    await ip('link', 'set', 'eth0', 'up')
    await ip('link', 'set', 'lo', 'up')
    await ip('route', 'add', 'default', 'via', p.segment === 1 ? '192.168.1.1' : '192.168.2.1')
    await runOk(['ip', 'netns', 'exec', ns.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    const handle = openNetns(ns.path)
    const socks = openRouteSockets(() => undefined, handle)
    t.teardown(() => {
      closeRouteSockets(socks)
      handle.close()
    })
    nodes.push({ name: p.name, ns, socks, nodeIP: p.nodeIP, subnet: p.subnet, ip })
  }
  const [a, b, c] = nodes as [Node, Node, Node]
  let records = nodes.map((n) => recordOf(n))
  const macC = vtepMacOf('c')
  const macA = vtepMacOf('a')

  // ip monitor on a sees the order in which the kernel got a's entries for c.
  const monitor = spawn('ip', ['-n', a.ns.name, 'monitor', 'neigh', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => {
    if (monitor.exitCode === null) monitor.kill('SIGKILL')
  })
  let events = ''
  monitor.stdout.on('data', (d: Buffer) => (events += d.toString()))
  await new Promise((r) => setTimeout(r, 200))

  for (const n of nodes) await pass(t, n, records)
  const first = await peerState(a)
  t.same(
    first,
    {
      routes: ['10.244.2.0/24 via 192.168.1.3 dev eth0', '10.244.3.0/24 via 10.244.3.0 dev flatnet.vxlan onlink'],
      neighbours: [`10.244.3.0 lladdr ${macC} PERMANENT`],
      fdb: [`${macC} dst 192.168.2.2 self permanent`],
    },
    'a: on-link b by a route via its node address; off-link c by neighbour, FDB entry and onlink route through flatnet.vxlan',
  )
  t.same((await peerState(c)).routes, ['10.244.1.0/24 via 10.244.1.0 dev flatnet.vxlan onlink', '10.244.2.0/24 via 10.244.2.0 dev flatnet.vxlan onlink'], 'c: both peers are off-link, both by VXLAN')
  const [dev] = JSON.parse(await a.ip('-j', '-d', 'link', 'show', 'flatnet.vxlan')) as Array<{
    mtu: number
    address: string
    linkinfo: { info_data: { id: number; port: number; learning: boolean; local: string } }
  }>
  const data = dev!.linkinfo.info_data
  t.same(
    { mtu: dev!.mtu, mac: dev!.address, id: data.id, port: data.port, learning: data.learning, local: data.local },
    { mtu: 1450, mac: macA, id: VNI, port: PORT, learning: false, local: '192.168.1.2' },
    'the device: uplink MTU - 50, the fixed MAC, VNI, port, nolearning, local = node address',
  )
  t.match(await a.ip('-4', 'addr', 'show', 'dev', 'flatnet.vxlan'), /inet 10\.244\.1\.0\/32 /, "the device carries the node subnet's network address /32")
  await new Promise((r) => setTimeout(r, 200))
  const lines = events.split('\n')
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l))
  const neighAt = at(/^10\.244\.3\.0 dev flatnet\.vxlan lladdr/)
  // ip monitor prints an FDB entry of a VXLAN device as `<remote> dev <device> lladdr <mac> NOARP`.
  const fdbAt = at(new RegExp(`^192\\.168\\.2\\.2 dev flatnet\\.vxlan lladdr ${macC}`))
  const routeAt = at(/^10\.244\.3\.0\/24 via 10\.244\.3\.0 dev flatnet\.vxlan/)
  t.ok(neighAt >= 0 && fdbAt > neighAt && routeAt > fdbAt, `the kernel got the neighbour, then the FDB entry, then the route (events ${neighAt}, ${fdbAt}, ${routeAt})`)

  const again = await pass(t, a, records)
  t.equal(
    again.vxlan.families.reduce((n, f) => n + f.changed, 0),
    0,
    'a second pass changes nothing',
  )

  // Hand pods: one per node, ptp-style (/32 in the pod, gateway .1 on the host side).
  const pods = new Map<string, { ns: Netns; address: string }>()
  for (const n of nodes) {
    const pod = await nss.create(`p${n.name}`)
    const gw = n.subnet.replace(/0\/24$/, '1')
    const address = n.subnet.replace(/0\/24$/, '5')
    await n.ip('link', 'add', 'pod0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name)
    await n.ip('addr', 'add', `${gw}/32`, 'dev', 'pod0')
    await n.ip('link', 'set', 'pod0', 'up')
    await n.ip('route', 'add', `${address}/32`, 'dev', 'pod0', 'proto', '201')
    const pip = (...args: string[]) => runOk(['ip', '-n', pod.name, ...args])
    await pip('addr', 'add', `${address}/32`, 'dev', 'eth0')
    await pip('link', 'set', 'eth0', 'up')
    await pip('link', 'set', 'lo', 'up')
    await pip('route', 'add', gw, 'dev', 'eth0', 'scope', 'link')
    await pip('route', 'add', 'default', 'via', gw)
    pods.set(n.name, { ns: pod, address })
  }
  const pa = pods.get('a')!
  const ping = (from: Netns, to: string) =>
    runOk(['ip', 'netns', 'exec', from.name, 'ping', '-c', '1', '-W', '2', to]).then(
      () => true,
      () => false,
    )
  // Off-link pair: encapsulated on the wire, the source pod address seen inside c's pod.
  const wire = await captureOne(t, c.ns, 'eth0', `udp port ${PORT}`)
  const inPod = await captureOne(t, pods.get('c')!.ns, 'eth0', `icmp and src ${pa.address}`)
  t.ok(await ping(pa.ns, pods.get('c')!.address), 'pod a → pod c across the tunnel')
  // tcpdump names UDP 8472 "OTV" and decodes the inner packet on the next line.
  t.match(
    await wire(),
    /192\.168\.1\.2\.\d+ > 192\.168\.2\.2\.8472: .*\n\s*IP 10\.244\.1\.5 > 10\.244\.3\.5: ICMP echo request/,
    "c's node link carries it as UDP 8472 from a's node address, the pod packet inside",
  )
  t.match(await inPod(), new RegExp(`IP ${pa.address.replace(/\./g, '\\.')} > 10\\.244\\.3\\.5: ICMP echo request`), "c's pod sees a's pod address as the source")
  // On-link pair: plain IP on the wire.
  const plain = await captureOne(t, b.ns, 'eth0', `icmp and src ${pa.address}`)
  t.ok(await ping(pa.ns, pods.get('b')!.address), 'pod a → pod b by the host-gw route')
  t.match(await plain(), /IP 10\.244\.1\.5 > 10\.244\.2\.5: ICMP echo request/, "b's node link carries it as plain IP, not encapsulated")

  // Repairs by hand-made damage, each within one pass.
  await a.ip('neigh', 'del', '10.244.3.0', 'dev', 'flatnet.vxlan')
  await runOk(['bridge', '-n', a.ns.name, 'fdb', 'del', macC, 'dev', 'flatnet.vxlan', 'dst', '192.168.2.2'])
  await pass(t, a, records)
  t.same(await peerState(a), first, 'a deleted neighbour and FDB entry are back after one pass')
  await a.ip('link', 'del', 'flatnet.vxlan')
  t.same((await peerState(a)).routes, ['10.244.2.0/24 via 192.168.1.3 dev eth0'], 'deleting the device took its route with it')
  await pass(t, a, records)
  t.same(await peerState(a), first, 'a deleted device is recreated and fully repopulated within one pass')
  t.ok(await ping(pa.ns, pods.get('c')!.address), 'and traffic flows again')

  // Nothing flatnet did not make is touched: an admin's neighbour on another device, a static route.
  await a.ip('neigh', 'add', '192.168.1.77', 'lladdr', '02:00:00:00:00:77', 'dev', 'eth0', 'nud', 'permanent')
  await a.ip('route', 'add', '10.99.0.0/24', 'via', '192.168.1.1', 'proto', 'static')

  // c's node address changes (it moves within its segment): a's FDB entry follows.
  // (The old address first: deleting a primary address deletes its secondaries with it.)
  await c.ip('addr', 'del', '192.168.2.2/24', 'dev', 'eth0')
  await c.ip('addr', 'add', '192.168.2.3/24', 'dev', 'eth0')
  await c.ip('route', 'add', 'default', 'via', '192.168.2.1')
  records = records.map((r) => (r.name === 'c' ? { ...r, nodeIP: '192.168.2.3' } : r))
  for (const n of nodes) await pass(t, n, records)
  t.same((await peerState(a)).fdb, [`${macC} dst 192.168.2.3 self permanent`], "a's FDB entry for c now names c's new address, and only it")
  t.ok(await ping(pa.ns, pods.get('c')!.address), 'pod a → pod c after the move')

  // c leaves while a's daemon is down: a's next pass (its first after the restart) removes every entry of c.
  records = records.filter((r) => r.name !== 'c')
  const events2 = events.length
  const left = await pass(t, a, records)
  t.same(await peerState(a), { routes: ['10.244.2.0/24 via 192.168.1.3 dev eth0'], neighbours: [], fdb: [] }, 'every entry of c is gone from a within one pass')
  t.match(await a.ip('route', 'show', 'proto', 'static'), /10\.99\.0\.0\/24 via 192\.168\.1\.1/, "the admin's route stays")
  t.match(await a.ip('neigh', 'show', 'dev', 'eth0'), /192\.168\.1\.77 lladdr 02:00:00:00:00:77 PERMANENT/, "the admin's neighbour stays")
  t.same(
    left.vxlan.tunnels.map((p) => p.node),
    [],
    'no tunnel is planned',
  )
  await new Promise((r) => setTimeout(r, 500))
  const later = events.slice(events2).split('\n')
  const del = (re: RegExp) => later.findIndex((l) => l.startsWith('Deleted') && re.test(l))
  const rDel = del(/10\.244\.3\.0\/24 via 10\.244\.3\.0 dev flatnet\.vxlan/)
  const fDel = del(new RegExp(`192\\.168\\.2\\.3 dev flatnet\\.vxlan lladdr ${macC}`))
  const nDel = del(/^Deleted 10\.244\.3\.0 dev flatnet\.vxlan\b/)
  t.ok(rDel >= 0 && fDel > rDel && nDel > fDel, `removed in reverse: route, then FDB entry, then neighbour (events ${rDel}, ${fDel}, ${nDel})`, { events: later })

  // --backend vxlan on a: b (on-link) is tunnelled as well, the host-gw route is taken over in place.
  const bRecords = records.map((r) => (r.name === 'a' ? { ...r, backend: 'vxlan' as const } : r))
  await pass(t, a, bRecords, 'vxlan')
  await pass(t, b, bRecords)
  t.same((await peerState(a)).routes, ['10.244.2.0/24 via 10.244.2.0 dev flatnet.vxlan onlink'], 'a with backend vxlan tunnels to its on-link peer')
  t.same((await peerState(b)).routes, ['10.244.1.0/24 via 10.244.1.0 dev flatnet.vxlan onlink'], 'b follows: a peer asking for vxlan is tunnelled both ways')
  t.ok(await ping(pa.ns, pods.get('b')!.address), 'pod a → pod b by VXLAN')
  // Back to auto: the route returns to host-gw, in place again.
  await pass(t, a, records)
  await pass(t, b, records)
  t.same((await peerState(a)).routes, ['10.244.2.0/24 via 192.168.1.3 dev eth0'], 'back to auto: host-gw again, the tunnel entries gone')
  t.same((await peerState(a)).neighbours, [], 'no neighbour left on the device')
})
