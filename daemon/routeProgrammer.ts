// The kernel side of the route reconciler: one dump of routes and one of addresses per sync, then
// the diff applied in batches (net/rtnlBatch.ts: hundreds of route requests per datagram, one ack
// and one named error per route). Thousands of peers converge in well under a second, without
// the per-message objects that would otherwise dominate the daemon's memory.
import type { Cidr } from '../ipam/index.js'
import type { IpFamily } from '../net/ipbytes.js'
import type { NetnsHandle } from '../net/netns.js'
import { closeRtnl, listAddresses, openRtnl, type RouteInfo, type Rtnl } from '../net/rtnl.js'
import { RouteBatchSocket, type RouteOperation } from '../net/rtnlBatch.js'
import type { NodeBackend, NodeRecord } from './datastore/types.js'
import { DAEMON_ROUTE_PROTOCOL, MAIN_TABLE, desiredRoutes, diffRoutes, familyOfText, peerRouteText, type PeerRoute, type RouteConflict, type RouteDiff, type SkippedPeer } from './routes.js'

/** Deadline of one batch of route requests, and of one dump. */
const REQUEST_TIMEOUT_MS = 10_000
const DUMP_TIMEOUT_MS = 15_000

/** The daemon's two netlink sockets: batches and route dumps, and the package's for the rest. */
export interface RouteSockets {
  batch: RouteBatchSocket
  rtnl: Rtnl
}

/**
 * Opens both sockets in the current namespace (or inside `ns`). Socket errors (ENOBUFS: the
 * kernel dropped answers) go to onError instead of becoming an uncaught 'error' event; the
 * requests concerned run into their deadline and the next sync repairs.
 */
export function openRouteSockets(onError: (e: Error) => void, ns?: NetnsHandle): RouteSockets {
  const batch = RouteBatchSocket.open(onError, ns)
  try {
    const rtnl = openRtnl(ns)
    rtnl.socket.on('error', onError)
    return { batch, rtnl }
  } catch (e) {
    batch.close()
    throw e
  }
}

export function closeRouteSockets(s: RouteSockets): void {
  s.batch.close()
  closeRtnl(s.rtnl)
}

export interface KernelRouteState {
  routes: RouteInfo[]
  localAddresses: string[]
}

export interface ApplyResult {
  added: number
  replaced: number
  removed: number
  /** One per failed request, naming the route. */
  errors: Error[]
  /** The adds and replaces the kernel refused. */
  failedRoutes: PeerRoute[]
}

/**
 * The main table of both families and this node's addresses. Both families are always dumped,
 * whatever is configured: routes of ours of a family no longer configured must still be found
 * to be removed. A kernel without IPv6 (ipv6.disable=1) refuses that dump; then there is no IPv6
 * route to read, and only a configured IPv6 range makes that an error.
 */
export async function readKernelRoutes(s: RouteSockets, families: readonly IpFamily[] = [4]): Promise<KernelRouteState> {
  const routes: RouteInfo[] = []
  for (const family of [4, 6] as const) {
    try {
      routes.push(...(await s.batch.listRoutes(family, MAIN_TABLE, DUMP_TIMEOUT_MS)))
    } catch (e) {
      if (families.includes(family)) throw e
    }
  }
  const addresses = await listAddresses(s.rtnl, undefined, { timeoutMs: DUMP_TIMEOUT_MS })
  return { routes, localAddresses: addresses.map((a) => a.address) }
}

/**
 * Applies a diff, every family in one batch: stale routes first, then adds and replaces. Deletes
 * name DAEMON_ROUTE_PROTOCOL and the gateway, so only our own route can match, never one of
 * another owner. Adds are exclusive: a route someone else created meanwhile is not overwritten.
 */
export async function applyRouteDiff(s: RouteSockets, diff: Pick<RouteDiff, 'add' | 'replace' | 'remove'>): Promise<ApplyResult> {
  const ours = (r: { dst: string; dstLength: number; gateway?: string }) => ({
    family: familyOfText(r.dst),
    protocol: DAEMON_ROUTE_PROTOCOL,
    table: MAIN_TABLE,
    dst: r.dst,
    dstLength: r.dstLength,
    gateway: r.gateway,
  })
  const ops: RouteOperation[] = [
    ...diff.remove.map((r) => ({ op: 'delete' as const, route: ours(r) })),
    ...diff.add.map((r) => ({ op: 'add' as const, route: ours(r) })),
    ...diff.replace.map((r) => ({ op: 'replace' as const, route: ours(r) })),
  ]
  const peers: Array<PeerRoute | undefined> = [...diff.remove.map(() => undefined), ...diff.add, ...diff.replace]
  const outcomes = await s.batch.apply(ops, REQUEST_TIMEOUT_MS)
  const result: ApplyResult = { added: 0, replaced: 0, removed: 0, errors: [], failedRoutes: [] }
  outcomes.forEach((errno, i) => {
    const { op, route } = ops[i]!
    if (op === 'delete') {
      // Already gone is what we wanted.
      if (errno === undefined) result.removed++
      else if (errno !== 'ESRCH' && errno !== 'ENODEV') result.errors.push(new Error(`remove stale route ${peerRouteText(route)} proto ${DAEMON_ROUTE_PROTOCOL}: ${errno}`))
    } else if (errno === undefined) {
      if (op === 'add') result.added++
      else result.replaced++
    } else {
      result.errors.push(new Error(`${op} route ${peerRouteText(route)} to node ${peers[i]!.node}: ${errno}`))
      result.failedRoutes.push(peers[i]!)
    }
  })
  return result
}

export interface RouteReconcileReport {
  /** Peer routes wanted. */
  desired: number
  kept: number
  added: number
  replaced: number
  removed: number
  /** Our routes in the kernel afterwards, as far as the requests tell (kept + added + replaced). */
  programmed: number
  /** `programmed`, per family. */
  programmedByFamily: Record<IpFamily, number>
  skipped: SkippedPeer[]
  conflicts: RouteConflict[]
  errors: Error[]
}

/**
 * One level-triggered sync: the kernel's routes now vs. the routes the node list asks for.
 * Routes of nodes that left (even while the daemon was down) are in the kernel but not wanted,
 * so they go; routes of other owners are only read.
 */
export async function reconcileRoutes(
  s: RouteSockets,
  want: {
    nodes: readonly NodeRecord[]
    self: string
    clusters: readonly Cidr[]
    /** This node's --backend (default host-gw): peers the plan tunnels are left to the vxlan reconciler. */
    backend?: NodeBackend
    /** Devices whose protocol-200 routes belong to the vxlan reconciler (never removed here). */
    tunnelDevices?: ReadonlySet<number>
  },
): Promise<RouteReconcileReport> {
  const kernel = await readKernelRoutes(
    s,
    want.clusters.map((c) => c.family),
  )
  const { routes, skipped } = desiredRoutes({ nodes: want.nodes, self: want.self, clusters: want.clusters, backend: want.backend, kernelRoutes: kernel.routes, localAddresses: kernel.localAddresses })
  const tunnelDevices = want.tunnelDevices
  const diff = diffRoutes(routes, kernel.routes, tunnelDevices?.size ? (r) => r.oif !== undefined && tunnelDevices.has(r.oif) : undefined)
  const applied = await applyRouteDiff(s, diff)
  const failed = new Set(applied.failedRoutes)
  const programmedOf = (f: IpFamily) => [...diff.keep, ...diff.add, ...diff.replace].filter((r) => familyOfText(r.dst) === f && !failed.has(r)).length
  return {
    desired: routes.length,
    kept: diff.keep.length,
    added: applied.added,
    replaced: applied.replaced,
    removed: applied.removed,
    programmed: diff.keep.length + applied.added + applied.replaced,
    programmedByFamily: { 4: programmedOf(4), 6: programmedOf(6) },
    skipped,
    conflicts: diff.conflicts,
    errors: applied.errors,
  }
}
