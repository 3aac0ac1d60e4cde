// What the kernel's routes to peer nodes should be, and what to change to get there. Pure
// functions over plain data (datastore records, a route dump), unit-tested without root; the
// kernel side is routeProgrammer.ts.
//
// flatnetd owns exactly the routes of the main table marked with DAEMON_ROUTE_PROTOCOL. Anything
// else (the admin's routes, the plugin's pod routes, the kernel's connected routes) is read to
// decide, never changed — so a crash, a removed node or a changed node IP is repaired by the next
// reconcile, and nothing that is not ours is ever touched.
import { cidrContains, cidrsOverlap, formatAddress, parseAddress, parseCidr, type Cidr, type IpFamily } from '../ipam/index.js'
import type { RouteInfo } from '../net/rtnl.js'
import { nodeFamilies, subnetOf, type NodeBackend, type NodeRecord } from './datastore/types.js'

/** rtm_protocol of the routes flatnetd programs (`ip route show proto 200`). */
export const DAEMON_ROUTE_PROTOCOL = 200
export const MAIN_TABLE = 254
const RTPROT_KERNEL = 2
const SCOPE_LINK = 253

/**
 * The metric a route added without one gets: IPv4 keeps 0, IPv6 stores 1024 (IP6_RT_PRIO_USER;
 * `ip -6 route add … proto 200` lists back as `metric 1024`). flatnetd never sets a metric, so
 * its routes, and the foreign routes that would collide with them, sit at this metric.
 */
export const DEFAULT_METRIC: Record<IpFamily, number> = { 4: 0, 6: 1024 }

/** The family of an address or network text (an IPv6 text always holds a ':'). */
export function familyOfText(text: string): IpFamily {
  return text.includes(':') ? 6 : 4
}

/** One route to a peer's pod subnet: `<dst>/<dstLength> via <gateway> proto 200`, of the family of dst. */
export interface PeerRoute {
  node: string
  dst: string
  dstLength: number
  gateway: string
}

/** A peer node that gets no route of one family, and why (logged, and a warning in /readyz). */
export interface SkippedPeer {
  node: string
  family: IpFamily
  /** Its subnet of that family, if it holds one. */
  subnet?: string
  /** Its address of that family, if it has one. */
  nodeIP?: string
  reason: string
  /** It has no subnet or no address of this family (as opposed to an unusable one). */
  lacksFamily?: true
}

/**
 * A peer reached through the VXLAN device of its family: `<dst>/<dstLength> via <dst> dev
 * <vxlan> onlink`, after the neighbour entry dst → vtepMac and the FDB entry vtepMac → gateway
 * (the peer's node address, canonical text).
 */
export interface TunnelPeer extends PeerRoute {
  family: IpFamily
  vtepMac: string
}

export interface DesiredRouteInput {
  nodes: readonly NodeRecord[]
  /** This node's name: its own record never gets a route. */
  self: string
  /** The cluster ranges, one per family: a peer is routed in each family it has a subnet of inside the range of that family. */
  clusters: readonly Cidr[]
  /** The main table as dumped, every family (for the connected routes that make a node IP on-link). */
  kernelRoutes: readonly RouteInfo[]
  /** This node's own addresses, every family: a peer claiming one of them is misconfigured. */
  localAddresses: readonly string[]
  /** This node's --backend; default host-gw (routes to on-link peers only). */
  backend?: NodeBackend
}

/**
 * Networks directly reachable from this node: the connected routes the kernel made for its
 * interface addresses (proto kernel, no gateway) in the main table — scope link in IPv4; IPv6
 * lists its connected routes with scope global (checked with `ip -6 -j route` on this kernel).
 * Host routes of pods (the plugin's proto 201 /32s and /128s) are not among them, so a node IP
 * inside a pod range is never taken as on-link.
 */
export function connectedNetworks(routes: readonly RouteInfo[]): Cidr[] {
  const out: Cidr[] = []
  for (const r of routes) {
    if (r.table !== MAIN_TABLE || r.protocol !== RTPROT_KERNEL || r.gateway !== undefined) continue
    if (r.family === 4 && r.scope !== SCOPE_LINK) continue
    try {
      out.push(parseCidr(`${r.dst}/${r.dstLength}`))
    } catch {
      // A dst with host bits cannot come from the kernel's own connected routes; ignore it.
    }
  }
  return out
}

function routeKey(dst: string, dstLength: number): string {
  return `${dst}/${dstLength}`
}

/**
 * The peer plan, shared by the routes and vxlan reconcilers so that exactly one of them owns each
 * peer's route: per family of the cluster ranges, every other node is reached by host-gw
 * (`routes`: a route via its node address), by the VXLAN tunnel (`tunnels`), or not at all
 * (`skipped`, with why: its own record, a record that is not valid for this cluster, a peer
 * without a subnet or an address of that family, an off-link peer no tunnel can reach, a subnet
 * that overlaps another node's).
 *
 * The choice per peer: VXLAN when both ends can tunnel (this node's backend is not host-gw and it
 * has an address of the family; the peer publishes a VTEP MAC and a backend other than host-gw)
 * and either end asks for it (backend vxlan) or the peer's address is not on-link; else host-gw
 * when it is on-link. "Either end" keeps both directions of a pair on one path: a reply arriving
 * on the tunnel for a subnet routed via the uplink would fail strict reverse-path filtering.
 */
export function desiredRoutes(input: DesiredRouteInput): { routes: PeerRoute[]; tunnels: TunnelPeer[]; skipped: SkippedPeer[] } {
  const connected = connectedNetworks(input.kernelRoutes)
  const local = new Set(input.localAddresses)
  const routes: PeerRoute[] = []
  const tunnels: TunnelPeer[] = []
  const skipped: SkippedPeer[] = []
  // Sorted by name, so that the answer does not depend on the order the datastore listed them in.
  const nodes = [...input.nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const self = nodes.find((n) => n.name === input.self)
  for (const cluster of input.clusters) {
    const r = familyRoutes(nodes, self, cluster, connected, local, input.backend ?? 'host-gw')
    routes.push(...r.routes)
    tunnels.push(...r.tunnels)
    skipped.push(...r.skipped)
  }
  return { routes, tunnels, skipped }
}

function familyRoutes(
  nodes: readonly NodeRecord[],
  self: NodeRecord | undefined,
  cluster: Cidr,
  connected: readonly Cidr[],
  local: ReadonlySet<string>,
  backend: NodeBackend,
): { routes: PeerRoute[]; tunnels: TunnelPeer[]; skipped: SkippedPeer[] } {
  const family = cluster.family
  const selfAddress = self && nodeFamilies(self).find((f) => f.family === family)?.nodeIP
  const canTunnel = backend !== 'host-gw' && selfAddress !== undefined
  const skipped: SkippedPeer[] = []
  let own: Cidr | undefined
  const ownText = self && subnetOf(self, family)
  if (ownText) {
    try {
      own = parseCidr(ownText)
    } catch {
      // our own record being unreadable only means there is nothing to protect
    }
  }
  const candidates: Array<{ n: NodeRecord; subnet: Cidr; nodeIP: string; vtepMac?: string }> = []
  for (const n of nodes) {
    if (n === self) continue
    const part = nodeFamilies(n).find((f) => f.family === family)
    const skip = (reason: string) => skipped.push(dropUndefined({ node: n.name, family, subnet: part?.subnet, nodeIP: part?.nodeIP, reason }))
    if (!part) {
      skipped.push({
        node: n.name,
        family,
        reason: `holds no IPv${family} subnet (a record without this family, e.g. written by a single-family node): no IPv${family} route to its pods`,
        lacksFamily: true,
      })
      continue
    }
    if (part.nodeIP === undefined) {
      skipped.push({ node: n.name, family, subnet: part.subnet, reason: `has no IPv${family} address: no IPv${family} route to its subnet ${part.subnet}`, lacksFamily: true })
      continue
    }
    let subnet: Cidr
    let ip: { family: 4 | 6; value: bigint }
    try {
      subnet = parseCidrCached(part.subnet)
      ip = parseAddressCached(part.nodeIP)
    } catch (e) {
      skip(`invalid record: ${(e as Error).message}`)
      continue
    }
    if (subnet.family !== family || !cidrContains(cluster, subnet.family, subnet.network) || subnet.prefixLength < cluster.prefixLength) {
      skip(`subnet ${subnet.text} is not inside cluster range ${cluster.text}`)
      continue
    }
    if (ip.family !== subnet.family) {
      skip(`node IP ${part.nodeIP} is IPv${ip.family}, subnet ${subnet.text} is IPv${subnet.family}`)
      continue
    }
    if (local.has(part.nodeIP)) {
      skip(`node IP ${part.nodeIP} is an address of this node`)
      continue
    }
    const onLink = connected.some((c) => cidrContains(c, ip.family, ip.value))
    const peerBackend = n.backend ?? 'host-gw'
    const tunnel = canTunnel && n.vtepMac !== undefined && peerBackend !== 'host-gw' && (backend === 'vxlan' || peerBackend === 'vxlan' || !onLink)
    if (!tunnel && !onLink) {
      const why =
        backend === 'host-gw'
          ? 'this node runs --backend host-gw (--backend auto or vxlan would tunnel to it)'
          : !canTunnel
            ? `this node has no IPv${family} address to tunnel from`
            : `it publishes no VTEP MAC (its backend is ${peerBackend}, or it runs an earlier flatnet)`
      skip(`node IP ${part.nodeIP} is not on-link (no connected route of this node covers it) and no VXLAN tunnel reaches it: ${why}; its pods are unreachable from here`)
      continue
    }
    if (own && cidrsOverlap(own, subnet)) {
      skip(`subnet ${subnet.text} overlaps this node's own subnet ${own.text}`)
      continue
    }
    // The kernel lists a gateway in its canonical text (fd00:20::3, not fd00:20::0:3); a record's
    // text as written would differ from it on every dump and be "replaced" on every sync.
    candidates.push({ n, subnet, nodeIP: formatAddressCached(part.nodeIP, ip), ...(tunnel ? { vtepMac: n.vtepMac } : {}) })
  }
  // Overlapping claims cannot come from a healthy datastore, but a route for them would send one
  // node's pods to another: keep the first in address order (the larger block on a tie), skip the
  // rest. Aligned blocks overlap only by containment, so after sorting by start, a block overlaps
  // an earlier kept one exactly when the last kept block contains its start: O(n log n).
  const byAddress = [...candidates].sort((a, b) => (a.subnet.network < b.subnet.network ? -1 : a.subnet.network > b.subnet.network ? 1 : a.subnet.prefixLength - b.subnet.prefixLength))
  const clashes = new Map<NodeRecord, string>()
  let lastKept: { subnet: Cidr; node: string } | undefined
  for (const c of byAddress) {
    if (lastKept && cidrContains(lastKept.subnet, c.subnet.family, c.subnet.network)) {
      clashes.set(c.n, `subnet ${c.subnet.text} overlaps ${lastKept.subnet.text} of node ${lastKept.node}`)
    } else {
      lastKept = { subnet: c.subnet, node: c.n.name }
    }
  }
  const routes: PeerRoute[] = []
  const tunnels: TunnelPeer[] = []
  for (const { n, subnet, nodeIP, vtepMac } of candidates) {
    const clash = clashes.get(n)
    if (clash) skipped.push({ node: n.name, family, subnet: subnet.text, nodeIP, reason: clash })
    else if (vtepMac !== undefined) tunnels.push({ node: n.name, family, dst: formatNetwork(subnet), dstLength: subnet.prefixLength, gateway: nodeIP, vtepMac })
    else routes.push({ node: n.name, dst: formatNetwork(subnet), dstLength: subnet.prefixLength, gateway: nodeIP })
  }
  return { routes, tunnels, skipped }
}

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

// Parsing through ip-address costs tens of microseconds per text; with thousands of peers whose
// records rarely change, a sync would spend most of its time (and garbage) re-parsing the same
// texts. Bounded memos: cleared whole when they grow past any plausible cluster.
function memo<T>(parse: (text: string) => T): (text: string) => T {
  const cache = new Map<string, T>()
  return (text) => {
    let v = cache.get(text)
    if (v === undefined) {
      v = parse(text)
      if (cache.size >= 100_000) cache.clear()
      cache.set(text, v)
    }
    return v
  }
}
const parseCidrCached = memo(parseCidr)
const parseAddressCached = memo(parseAddress)
const canonicalText = new Map<string, string>()
function formatAddressCached(text: string, ip: { family: IpFamily; value: bigint }): string {
  if (ip.family === 4) return text
  let v = canonicalText.get(text)
  if (v === undefined) {
    v = formatAddress(ip.family, ip.value)
    if (canonicalText.size >= 100_000) canonicalText.clear()
    canonicalText.set(text, v)
  }
  return v
}

function formatNetwork(c: Cidr): string {
  return c.text.slice(0, c.text.indexOf('/'))
}

export interface OwnedRoute {
  dst: string
  dstLength: number
  gateway?: string
  priority: number
}

export interface RouteConflict {
  route: PeerRoute
  /** The foreign route in its way. */
  holder: RouteInfo
}

export interface RouteDiff {
  /** New routes (created exclusively: a route that appeared meanwhile is not overwritten). */
  add: PeerRoute[]
  /** Our route for this subnet exists with another gateway: replace it in place. */
  replace: PeerRoute[]
  /** Our routes no node wants any more (removed nodes, also while the daemon was down). */
  remove: OwnedRoute[]
  /** Already as desired. */
  keep: PeerRoute[]
  /** Wanted, but a route of another owner holds the same destination and metric: left alone. */
  conflicts: RouteConflict[]
}

/** Routes flatnetd owns in a dump: main table, its protocol, one family. */
export function ownedRoutes(kernelRoutes: readonly RouteInfo[], family: IpFamily = 4): RouteInfo[] {
  return kernelRoutes.filter((r) => r.family === family && r.table === MAIN_TABLE && r.protocol === DAEMON_ROUTE_PROTOCOL)
}

/**
 * Compares the desired peer routes (any family) with the kernel's main table (every family in
 * the dump). Only routes with DAEMON_ROUTE_PROTOCOL are ever added to remove/replace — of every
 * family dumped, so a family dropped from the configuration loses its routes; a foreign route on
 * a wanted destination (at the family's default metric, so the kernel would see the same route)
 * makes a conflict, not a change.
 */
export function diffRoutes(desired: readonly PeerRoute[], kernelRoutes: readonly RouteInfo[], otherBackend: (r: RouteInfo) => boolean = () => false): RouteDiff {
  // Ours at the default metric (the only metric we create) by destination; the rest of ours are leftovers.
  const ours = new Map<string, RouteInfo>()
  const foreign = new Map<string, RouteInfo>()
  // flatnet's routes of the other backend (the vxlan device's): never removed from here, but a
  // peer this plan now gives a host-gw route takes its destination over in place (replace).
  const handedOver = new Set<string>()
  const remove: OwnedRoute[] = []
  for (const r of kernelRoutes) {
    if (r.table !== MAIN_TABLE) continue
    const key = routeKey(r.dst, r.dstLength)
    const atDefault = r.priority === DEFAULT_METRIC[r.family]
    if (r.protocol === DAEMON_ROUTE_PROTOCOL && otherBackend(r)) {
      if (atDefault) handedOver.add(key)
    } else if (r.protocol === DAEMON_ROUTE_PROTOCOL) {
      if (atDefault && !ours.has(key)) ours.set(key, r)
      else remove.push(owned(r))
    } else if (atDefault && !foreign.has(key)) {
      foreign.set(key, r)
    }
  }
  const diff: RouteDiff = { add: [], replace: [], remove, keep: [], conflicts: [] }
  const wanted = new Set<string>()
  for (const d of desired) {
    const key = routeKey(d.dst, d.dstLength)
    wanted.add(key)
    const mine = ours.get(key)
    if (mine) {
      if (mine.gateway === d.gateway) diff.keep.push(d)
      else diff.replace.push(d)
      continue
    }
    const holder = foreign.get(key)
    if (handedOver.has(key)) diff.replace.push(d)
    else if (holder) diff.conflicts.push({ route: d, holder })
    else diff.add.push(d)
  }
  for (const [key, r] of ours) if (!wanted.has(key)) remove.push(owned(r))
  return diff
}

function owned(r: RouteInfo): OwnedRoute {
  return { dst: r.dst, dstLength: r.dstLength, gateway: r.gateway, priority: r.priority }
}

export function peerRouteText(r: { dst: string; dstLength: number; gateway?: string }): string {
  return `${r.dst}/${r.dstLength}${r.gateway ? ` via ${r.gateway}` : ''}`
}
