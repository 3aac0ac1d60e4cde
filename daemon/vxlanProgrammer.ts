// The kernel side of the vxlan reconciler: per underlay family, one VXLAN device (made or
// repaired to its configuration), then the diff of vxlan.ts applied — neighbours, FDB entries,
// routes — and removals in reverse. Everything is read back from the kernel on every sync, so a
// device, neighbour or FDB entry deleted by hand is back after one pass.
import type { Cidr } from '../ipam/index.js'
import type { IpFamily } from '../net/ipbytes.js'
import { deleteFdb, deleteNeighbour, listFdb, listNeighbours, setFdb, setNeighbour } from '../net/neigh.js'
import { addAddress, deleteLink, linkByIndex, listAddresses, setLinkUp } from '../net/rtnl.js'
import type { RouteOperation } from '../net/rtnlBatch.js'
import { createVxlan, deleteAddress, setLinkMtu, vxlanByName, type VxlanLink } from '../net/vxlanLink.js'
import { nodeFamilies, type NodeBackend, type NodeRecord } from './datastore/types.js'
import { readKernelRoutes, type RouteSockets } from './routeProgrammer.js'
import { DAEMON_ROUTE_PROTOCOL, MAIN_TABLE, desiredRoutes, peerRouteText, type PeerRoute, type SkippedPeer, type TunnelPeer } from './routes.js'
import { VXLAN_DEVICE, VXLAN_OVERHEAD, diffVxlan, vtepAddressOf, type TunnelRoute } from './vxlan.js'

const REQUEST_TIMEOUT_MS = 10_000
const DUMP_TIMEOUT_MS = 15_000
/** Neighbour and FDB requests in flight at once on the shared socket (their acks must fit its buffer). */
const IN_FLIGHT = 128

export interface VxlanWant {
  nodes: readonly NodeRecord[]
  self: string
  clusters: readonly Cidr[]
  backend: NodeBackend
  vni: number
  port: number
  /** This node's VTEP MAC (vtepMacOf). */
  mac: string
}

export interface VxlanFamilyReport {
  family: IpFamily
  device: string
  /** The device was (re)created by this sync. */
  created: boolean
  neighbours: number
  fdb: number
  routes: number
  changed: number
}

export interface VxlanReport {
  families: VxlanFamilyReport[]
  /** The peer plan, as the routes reconciler sees it too. */
  hostGw: PeerRoute[]
  tunnels: TunnelPeer[]
  skipped: SkippedPeer[]
  /** Wanted tunnel routes whose destination a route of another owner holds. */
  blocked: string[]
  errors: Error[]
}

/** Runs `work` over items with at most IN_FLIGHT at once; collects each failure. */
async function each<T>(items: readonly T[], work: (item: T) => Promise<unknown>, errors: Error[]): Promise<number> {
  let ok = 0
  for (let i = 0; i < items.length; i += IN_FLIGHT) {
    const results = await Promise.allSettled(items.slice(i, i + IN_FLIGHT).map(work))
    for (const r of results) {
      if (r.status === 'fulfilled') ok++
      else errors.push(r.reason as Error)
    }
  }
  return ok
}

function sameConfig(link: VxlanLink, want: { vni: number; port: number; local: string; mac: string }): boolean {
  return link.kind === 'vxlan' && link.vni === want.vni && link.port === want.port && link.local === want.local && link.learning === false && link.mac === want.mac
}

/**
 * The device of one family as configured: created when missing, recreated when its VNI, port,
 * local address, learning or MAC drifted, MTU set in place, up, carrying exactly the node
 * subnet's network address (IPv6 link-local addresses are the kernel's and stay).
 */
async function ensureDevice(
  s: RouteSockets,
  family: IpFamily,
  want: { vni: number; port: number; local: string; mac: string; mtu: number; subnet: string },
): Promise<{ index: number; created: boolean }> {
  const name = VXLAN_DEVICE[family]
  let link = await vxlanByName(s.rtnl, name)
  let created = false
  if (link && link.kind !== 'vxlan') throw new Error(`set up vxlan device ${name}: a ${link.kind ?? 'non-vxlan'} device of that name exists; it is not flatnet's to replace`)
  if (link && !sameConfig(link, want)) {
    await deleteLink(s.rtnl, { index: link.index })
    link = undefined
  }
  if (!link) {
    await createVxlan(s.rtnl, { name, vni: want.vni, port: want.port, local: want.local, mac: want.mac, mtu: want.mtu })
    link = await vxlanByName(s.rtnl, name)
    if (!link) throw new Error(`set up vxlan device ${name}: it vanished right after it was created`)
    created = true
  }
  if (link.mtu !== want.mtu) await setLinkMtu(s.rtnl, link.index, want.mtu, name)
  if (!link.up) await setLinkUp(s.rtnl, link.index, name)
  const vtep = vtepAddressOf(want.subnet)
  const addresses = (await listAddresses(s.rtnl, link.index, { timeoutMs: DUMP_TIMEOUT_MS })).filter((a) => a.family === family)
  for (const a of addresses) {
    if (a.address === vtep.address && a.prefixLength === vtep.prefixLength) continue
    if (family === 6 && a.address.toLowerCase().startsWith('fe80:')) continue
    await deleteAddress(s.rtnl, { index: link.index, family, address: a.address, prefixLength: a.prefixLength, linkName: name })
  }
  if (!addresses.some((a) => a.address === vtep.address && a.prefixLength === vtep.prefixLength)) {
    await addAddress(s.rtnl, { index: link.index, family, address: vtep.address, prefixLength: vtep.prefixLength, linkName: name, noDad: true })
  }
  return { index: link.index, created }
}

function routeOp(op: RouteOperation['op'], family: IpFamily, index: number, r: TunnelRoute): RouteOperation {
  return { op, route: { family, protocol: DAEMON_ROUTE_PROTOCOL, table: MAIN_TABLE, dst: r.dst, dstLength: r.dstLength, gateway: r.gateway, oif: index, onlink: true } }
}

/** One level-triggered pass over both families' devices and entries. */
export async function reconcileVxlan(s: RouteSockets, want: VxlanWant): Promise<VxlanReport> {
  const families = want.clusters.map((c) => c.family)
  const kernel = await readKernelRoutes(s, families)
  const plan = desiredRoutes({ nodes: want.nodes, self: want.self, clusters: want.clusters, kernelRoutes: kernel.routes, localAddresses: kernel.localAddresses, backend: want.backend })
  const report: VxlanReport = { families: [], hostGw: plan.routes, tunnels: plan.tunnels, skipped: plan.skipped, blocked: [], errors: [] }
  const self = want.nodes.find((n) => n.name === want.self)
  const addresses = await listAddresses(s.rtnl, undefined, { timeoutMs: DUMP_TIMEOUT_MS })
  for (const family of [4, 6] as const) {
    const name = VXLAN_DEVICE[family]
    const part = families.includes(family) && self ? nodeFamilies(self).find((f) => f.family === family) : undefined
    if (!part || part.nodeIP === undefined) {
      // No subnet or no address of this family here: no tunnel of it either.
      await deleteLink(s.rtnl, { name })
      continue
    }
    const uplink = addresses.find((a) => a.address === part.nodeIP)
    const uplinkLink = uplink && (await linkByIndex(s.rtnl, uplink.index))
    if (!uplinkLink) {
      report.errors.push(new Error(`set up vxlan device ${name}: node address ${part.nodeIP} is not an address of this node`))
      continue
    }
    try {
      const dev = await ensureDevice(s, family, { vni: want.vni, port: want.port, local: part.nodeIP, mac: want.mac, mtu: uplinkLink.mtu - VXLAN_OVERHEAD[family], subnet: part.subnet })
      const [neighbours, fdb, routes] = await Promise.all([
        listNeighbours(s.rtnl, family, dev.index, DUMP_TIMEOUT_MS),
        listFdb(s.rtnl, dev.index, DUMP_TIMEOUT_MS),
        s.batch.listRoutes(family, MAIN_TABLE, DUMP_TIMEOUT_MS),
      ])
      const tunnels = plan.tunnels.filter((p) => p.family === family)
      const diff = diffVxlan(tunnels, { index: dev.index, neighbours, fdb, routes })
      const errors: Error[] = []
      // Adds: neighbour, then FDB, then route, so a packet routed to a peer finds both resolved.
      const failedNeighbour = new Set<string>()
      await each(
        diff.setNeighbours,
        (n) => setNeighbour(s.rtnl, { family, index: dev.index, address: n.address, mac: n.mac, linkName: name }).catch((e) => (failedNeighbour.add(n.address), Promise.reject(e))),
        errors,
      )
      await each(diff.setFdb, (f) => setFdb(s.rtnl, { index: dev.index, mac: f.mac, dst: f.dst, linkName: name }), errors)
      const routeOps = diff.setRoutes.filter((r) => !failedNeighbour.has(r.gateway)).map((r) => routeOp(r.replace ? 'replace' : 'add', family, dev.index, r))
      // Removals in reverse: the route first, so no packet is routed to an entry being removed.
      const removeOps = diff.removeRoutes.map((r) => routeOp('delete', family, dev.index, r))
      const outcomes = await s.batch.apply([...routeOps, ...removeOps], REQUEST_TIMEOUT_MS)
      outcomes.forEach((errno, i) => {
        const op = [...routeOps, ...removeOps][i]!
        if (errno === undefined || (op.op === 'delete' && (errno === 'ESRCH' || errno === 'ENODEV'))) return
        errors.push(new Error(`${op.op} route ${peerRouteText(op.route)} dev ${name} onlink proto ${DAEMON_ROUTE_PROTOCOL}: ${errno}`))
      })
      await each(diff.removeFdb, (f) => deleteFdb(s.rtnl, { index: dev.index, mac: f.mac, dst: f.dst, linkName: name }), errors)
      await each(diff.removeNeighbours, (n) => deleteNeighbour(s.rtnl, { family, index: dev.index, address: n.address, linkName: name }), errors)
      report.errors.push(...errors)
      for (const b of diff.blocked)
        report.blocked.push(`${b.route.node ?? '?'}: route ${peerRouteText(b.route)} dev ${name} not added: ${b.holder.dst}/${b.holder.dstLength} is already routed by protocol ${b.holder.protocol}`)
      const changed = diff.setNeighbours.length + diff.setFdb.length + diff.setRoutes.length + diff.removeRoutes.length + diff.removeFdb.length + diff.removeNeighbours.length
      report.families.push({
        family,
        device: name,
        created: dev.created,
        neighbours: tunnels.length - failedNeighbour.size,
        fdb: tunnels.length,
        routes: diff.kept.routes + routeOps.length,
        changed: changed + (dev.created ? 1 : 0),
      })
    } catch (e) {
      report.errors.push(e as Error)
    }
  }
  return report
}

/** Deletes both devices (their neighbours, FDB entries and routes go with them); how many existed. */
export async function removeVxlanDevices(s: RouteSockets): Promise<number> {
  let removed = 0
  for (const family of [4, 6] as const) if (await deleteLink(s.rtnl, { name: VXLAN_DEVICE[family] })) removed++
  return removed
}

/** The ifindexes of flatnet's VXLAN devices: the routes through them are the vxlan reconciler's. */
export async function vxlanDeviceIndexes(s: RouteSockets): Promise<Set<number>> {
  const out = new Set<number>()
  for (const family of [4, 6] as const) {
    const link = await vxlanByName(s.rtnl, VXLAN_DEVICE[family])
    if (link?.kind === 'vxlan') out.add(link.index)
  }
  return out
}
