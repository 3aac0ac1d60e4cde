// What the kernel's routes to peer nodes should be, and what to change to get there. Pure
// functions over plain data (datastore records, a route dump), unit-tested without root; the
// kernel side is routeProgrammer.ts.
//
// flatnetd owns exactly the routes of the main table marked with DAEMON_ROUTE_PROTOCOL. Anything
// else (the admin's routes, the plugin's pod routes, the kernel's connected routes) is read to
// decide, never changed — so a crash, a removed node or a changed node IP is repaired by the next
// reconcile, and nothing that is not ours is ever touched.
import { cidrContains, cidrsOverlap, parseAddress, parseCidr, type Cidr } from '../ipam/index.js'
import type { RouteInfo } from '../net/rtnl.js'
import type { NodeRecord } from './datastore/types.js'

/** rtm_protocol of the routes flatnetd programs (`ip route show proto 200`). */
export const DAEMON_ROUTE_PROTOCOL = 200
export const MAIN_TABLE = 254
const RTPROT_KERNEL = 2
const SCOPE_LINK = 253

/** One route to a peer's pod subnet: `<dst>/<dstLength> via <gateway> proto 200`. */
export interface PeerRoute {
  node: string
  dst: string
  dstLength: number
  gateway: string
}

export interface SkippedPeer {
  node: string
  subnet: string
  nodeIP: string
  reason: string
}

export interface DesiredRouteInput {
  nodes: readonly NodeRecord[]
  /** This node's name: its own record never gets a route. */
  self: string
  /** The cluster range: a record whose subnet lies outside it is not routed. */
  cluster: Cidr
  /** The main table as dumped (for the connected routes that make a node IP on-link). */
  kernelRoutes: readonly RouteInfo[]
  /** This node's own addresses: a peer claiming one of them is misconfigured. */
  localAddresses: readonly string[]
}

/**
 * Networks directly reachable from this node: the connected routes the kernel made for its
 * interface addresses (proto kernel, scope link, no gateway) in the main table. Host routes of
 * pods (the plugin's proto 201 /32s) are not among them, so a node IP inside a pod range is
 * never taken as on-link.
 */
export function connectedNetworks(routes: readonly RouteInfo[]): Cidr[] {
  const out: Cidr[] = []
  for (const r of routes) {
    if (r.table !== MAIN_TABLE || r.protocol !== RTPROT_KERNEL || r.scope !== SCOPE_LINK || r.gateway !== undefined) continue
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
 * The route every other node's subnet should have, or why it gets none: its own record, a
 * record that is not valid for this cluster, a node IP that is not on-link (overlay comes later),
 * a subnet that overlaps another node's.
 */
export function desiredRoutes(input: DesiredRouteInput): { routes: PeerRoute[]; skipped: SkippedPeer[] } {
  const connected = connectedNetworks(input.kernelRoutes)
  const local = new Set(input.localAddresses)
  const skipped: SkippedPeer[] = []
  let own: Cidr | undefined
  const self = input.nodes.find((n) => n.name === input.self)
  if (self) {
    try {
      own = parseCidr(self.subnet)
    } catch {
      // our own record being unreadable only means there is nothing to protect
    }
  }
  // Sorted by name, so that the answer does not depend on the order the datastore listed them in.
  const nodes = [...input.nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const candidates: Array<{ n: NodeRecord; subnet: Cidr }> = []
  for (const n of nodes) {
    if (n.name === input.self) continue
    const skip = (reason: string) => skipped.push({ node: n.name, subnet: n.subnet, nodeIP: n.nodeIP, reason })
    let subnet: Cidr
    let ip: { family: 4 | 6; value: bigint }
    try {
      subnet = parseCidrCached(n.subnet)
      ip = parseAddressCached(n.nodeIP)
    } catch (e) {
      skip(`invalid record: ${(e as Error).message}`)
      continue
    }
    if (subnet.family !== input.cluster.family || !cidrContains(input.cluster, subnet.family, subnet.network) || subnet.prefixLength < input.cluster.prefixLength) {
      skip(`subnet ${subnet.text} is not inside cluster range ${input.cluster.text}`)
      continue
    }
    if (ip.family !== subnet.family) {
      skip(`node IP ${n.nodeIP} is IPv${ip.family}, subnet ${subnet.text} is IPv${subnet.family}`)
      continue
    }
    if (local.has(n.nodeIP)) {
      skip(`node IP ${n.nodeIP} is an address of this node`)
      continue
    }
    if (!connected.some((c) => cidrContains(c, ip.family, ip.value))) {
      skip(`node IP ${n.nodeIP} is not on-link (no connected route of this node covers it); its pods are unreachable from here until an overlay exists`)
      continue
    }
    if (own && cidrsOverlap(own, subnet)) {
      skip(`subnet ${subnet.text} overlaps this node's own subnet ${own.text}`)
      continue
    }
    candidates.push({ n, subnet })
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
  for (const { n, subnet } of candidates) {
    const clash = clashes.get(n)
    if (clash) skipped.push({ node: n.name, subnet: n.subnet, nodeIP: n.nodeIP, reason: clash })
    else routes.push({ node: n.name, dst: formatNetwork(subnet), dstLength: subnet.prefixLength, gateway: n.nodeIP })
  }
  return { routes, skipped }
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

/** Routes flatnetd owns in a dump: main table, its protocol. */
export function ownedRoutes(kernelRoutes: readonly RouteInfo[], family: 4 | 6 = 4): RouteInfo[] {
  return kernelRoutes.filter((r) => r.family === family && r.table === MAIN_TABLE && r.protocol === DAEMON_ROUTE_PROTOCOL)
}

/**
 * Compares the desired peer routes with the kernel's main table. Only routes with
 * DAEMON_ROUTE_PROTOCOL are ever added to remove/replace; a foreign route on a wanted
 * destination (same metric, so the kernel would see the same route) makes a conflict, not a change.
 */
export function diffRoutes(desired: readonly PeerRoute[], kernelRoutes: readonly RouteInfo[], family: 4 | 6 = 4): RouteDiff {
  const inFamily = kernelRoutes.filter((r) => r.family === family && r.table === MAIN_TABLE)
  // Ours at metric 0 (the only metric we create) by destination; the rest of ours are leftovers.
  const ours = new Map<string, RouteInfo>()
  const foreign = new Map<string, RouteInfo>()
  const remove: OwnedRoute[] = []
  for (const r of inFamily) {
    const key = routeKey(r.dst, r.dstLength)
    if (r.protocol === DAEMON_ROUTE_PROTOCOL) {
      if (r.priority === 0 && !ours.has(key)) ours.set(key, r)
      else remove.push(owned(r))
    } else if (r.priority === 0 && !foreign.has(key)) {
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
    if (holder) diff.conflicts.push({ route: d, holder })
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
