// What the VXLAN backend's kernel state should be, and what to change to get there. Pure
// functions over plain data (the peer plan of routes.ts, dumps of neighbours, FDB entries and
// routes), unit-tested without root; the kernel side is vxlanProgrammer.ts.
//
// Per tunnelled peer, three entries, added in this order so the kernel never has to resolve
// anything (nolearning: nothing is learnt, nothing is flooded): the neighbour entry
// <peer subnet network address> → <peer VTEP MAC>, the FDB entry <peer VTEP MAC> → <peer node
// address>, then the route `<peer subnet> via <peer subnet network address> dev <vxlan> onlink`.
// Removal runs in reverse. flatnet owns its VXLAN devices whole, so every permanent neighbour and
// FDB entry on them is its own; routes are its own by protocol 200 and the device.
import { createHash } from 'node:crypto'
import type { IpFamily } from '../net/ipbytes.js'
import type { FdbInfo, NeighbourInfo } from '../net/neigh.js'
import type { RouteInfo } from '../net/rtnl.js'
import { DAEMON_ROUTE_PROTOCOL, DEFAULT_METRIC, MAIN_TABLE, type TunnelPeer } from './routes.js'

/**
 * NUD_PERMANENT (linux/neighbour.h), as net/neigh.ts writes it: kept here as a value so this pure
 * module does not load the netlink socket layer.
 */
export const NUD_PERMANENT = 0x80

/** One device per underlay family; at most 15 characters (IFNAMSIZ). */
export const VXLAN_DEVICE: Readonly<Record<IpFamily, string>> = { 4: 'flatnet.vxlan', 6: 'flatnet.vxlan6' }

/**
 * Bytes VXLAN adds to every packet on the underlay: outer IPv4 20 + UDP 8 + VXLAN 8 + inner
 * Ethernet 14 = 50; with an IPv6 underlay the outer header is 40, so 70.
 */
export const VXLAN_OVERHEAD: Readonly<Record<IpFamily, number>> = { 4: 50, 6: 70 }

/**
 * The VTEP MAC of a node: derived from its name (sha256, first six bytes), unicast and locally
 * administered (bit 0 of the first byte clear, bit 1 set). Fixed per name, so a restarted daemon
 * republishes the same MAC and no peer has to change its entries.
 */
export function vtepMacOf(nodeName: string): string {
  const b = createHash('sha256').update(`flatnet-vtep:${nodeName}`).digest().subarray(0, 6)
  b[0] = (b[0]! & 0xfe) | 0x02
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':')
}

/** The device's address: its node subnet's network address, alone (/32, /128). */
export function vtepAddressOf(subnet: string): { address: string; prefixLength: number } {
  const address = subnet.slice(0, subnet.indexOf('/'))
  return { address, prefixLength: address.includes(':') ? 128 : 32 }
}

export interface NeighbourEntry {
  address: string
  mac: string
}
export interface FdbEntry {
  mac: string
  dst: string
}
export interface TunnelRoute {
  dst: string
  dstLength: number
  /** The peer's VTEP address (its subnet's network address), reached onlink through the device. */
  gateway: string
  node?: string
  /** The destination holds a route to replace in place (ours with another gateway, or host-gw's). */
  replace?: boolean
}

/** What to change on one device, in the order it is applied (adds, then removals in reverse). */
export interface VxlanDiff {
  setNeighbours: NeighbourEntry[]
  setFdb: FdbEntry[]
  /** New routes, or routes taken over from host-gw (flatnet's own protocol on another device): added with REPLACE. */
  setRoutes: TunnelRoute[]
  removeRoutes: TunnelRoute[]
  removeFdb: FdbEntry[]
  removeNeighbours: NeighbourEntry[]
  /** Entries already as wanted, per kind. */
  kept: { neighbours: number; fdb: number; routes: number }
  /** Wanted routes whose destination a route of another owner holds (left alone, reported). */
  blocked: Array<{ route: TunnelRoute; holder: RouteInfo }>
}

export interface DeviceState {
  index: number
  neighbours: readonly NeighbourInfo[]
  fdb: readonly FdbInfo[]
  /** The main table of the device's family. */
  routes: readonly RouteInfo[]
}

/**
 * The diff for the tunnels of one family against one device's state. Only permanent entries of
 * the device and protocol-200 routes through it are ever removed; a protocol-200 route through
 * something else at a wanted destination is host-gw's, and is taken over in place.
 */
export function diffVxlan(tunnels: readonly TunnelPeer[], dev: DeviceState): VxlanDiff {
  const diff: VxlanDiff = { setNeighbours: [], setFdb: [], setRoutes: [], removeRoutes: [], removeFdb: [], removeNeighbours: [], kept: { neighbours: 0, fdb: 0, routes: 0 }, blocked: [] }
  const neighbours = new Map<string, string | undefined>()
  for (const n of dev.neighbours) if (n.index === dev.index && n.state & NUD_PERMANENT) neighbours.set(n.address, n.mac)
  const fdb = new Map<string, string[]>()
  for (const f of dev.fdb) {
    if (f.index !== dev.index || f.dst === undefined || !(f.state & NUD_PERMANENT)) continue
    const list = fdb.get(f.mac)
    if (list) list.push(f.dst)
    else fdb.set(f.mac, [f.dst])
  }
  const ours = new Map<string, RouteInfo>()
  const handedOver = new Set<string>()
  const foreign = new Map<string, RouteInfo>()
  for (const r of dev.routes) {
    if (r.table !== MAIN_TABLE) continue
    const key = `${r.dst}/${r.dstLength}`
    const atDefault = r.priority === DEFAULT_METRIC[r.family]
    if (r.protocol === DAEMON_ROUTE_PROTOCOL && r.oif === dev.index) {
      if (atDefault && !ours.has(key)) ours.set(key, r)
      else diff.removeRoutes.push(routeOf(r))
    } else if (r.protocol === DAEMON_ROUTE_PROTOCOL) {
      if (atDefault) handedOver.add(key)
    } else if (atDefault && !foreign.has(key)) foreign.set(key, r)
  }

  const wantNeighbours = new Set<string>()
  const wantFdb = new Map<string, string>()
  const wantRoutes = new Set<string>()
  for (const p of tunnels) {
    wantNeighbours.add(p.dst)
    if (neighbours.get(p.dst) === p.vtepMac) diff.kept.neighbours++
    else diff.setNeighbours.push({ address: p.dst, mac: p.vtepMac })
    wantFdb.set(p.vtepMac, p.gateway)
    const remotes = fdb.get(p.vtepMac)
    if (remotes && remotes.length === 1 && remotes[0] === p.gateway) diff.kept.fdb++
    else diff.setFdb.push({ mac: p.vtepMac, dst: p.gateway })
    const key = `${p.dst}/${p.dstLength}`
    wantRoutes.add(key)
    const route: TunnelRoute = { dst: p.dst, dstLength: p.dstLength, gateway: p.dst, node: p.node }
    const mine = ours.get(key)
    const holder = foreign.get(key)
    if (mine && mine.gateway === p.dst) diff.kept.routes++
    else if (mine || handedOver.has(key)) diff.setRoutes.push({ ...route, replace: true })
    else if (holder) diff.blocked.push({ route, holder })
    else diff.setRoutes.push(route)
  }
  for (const [key, r] of ours) if (!wantRoutes.has(key)) diff.removeRoutes.push(routeOf(r))
  for (const [mac, remotes] of fdb) {
    const want = wantFdb.get(mac)
    // A remote other than the wanted one (replace keeps one; an appended extra is removed).
    for (const dst of remotes) if (dst !== want) diff.removeFdb.push({ mac, dst })
  }
  for (const [address, mac] of neighbours) if (!wantNeighbours.has(address) && mac !== undefined) diff.removeNeighbours.push({ address, mac })
  return diff
}

function routeOf(r: RouteInfo): TunnelRoute {
  return { dst: r.dst, dstLength: r.dstLength, gateway: r.gateway ?? r.dst }
}

/**
 * The MTU the conflist gives pods, when --mtu does not: with host-gw none (the plugin takes the
 * default-route interface's); with vxlan, and with auto as well, the smallest uplink MTU of the
 * node's address families minus that family's VXLAN overhead. auto reserves the overhead even
 * while every peer is on-link: a pod's MTU is fixed when it starts, and the first off-link peer
 * may register at any time — pods started before it would then send packets too big for the
 * tunnel. Undefined when no uplink is known (the plugin's default then applies).
 */
export function podMtuFor(backend: 'host-gw' | 'vxlan' | 'auto', uplinks: ReadonlyArray<{ family: IpFamily; mtu: number }>): number | undefined {
  if (backend === 'host-gw' || uplinks.length === 0) return undefined
  return Math.min(...uplinks.map((u) => u.mtu - VXLAN_OVERHEAD[u.family]))
}
