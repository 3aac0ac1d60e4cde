// The kernel side of the route reconciler: one dump of routes and one of addresses per sync, then
// the diff applied in batches (net/rtnlBatch.ts: hundreds of route requests per datagram, one ack
// and one named error per route). Thousands of peers converge in well under a second, without
// the per-message objects that would otherwise dominate the daemon's memory.
import type { Cidr } from '../ipam/index.js'
import type { IpFamily } from '../net/ipbytes.js'
import type { NetnsHandle } from '../net/netns.js'
import { closeRtnl, listAddresses, openRtnl, type RouteInfo, type Rtnl } from '../net/rtnl.js'
import { RouteBatchSocket, type RouteOperation } from '../net/rtnlBatch.js'
import type { NodeRecord } from './datastore/types.js'
import { DAEMON_ROUTE_PROTOCOL, MAIN_TABLE, desiredRoutes, diffRoutes, peerRouteText, type PeerRoute, type RouteConflict, type RouteDiff, type SkippedPeer } from './routes.js'

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
}

export async function readKernelRoutes(s: RouteSockets, family: IpFamily = 4): Promise<KernelRouteState> {
  const routes = await s.batch.listRoutes(family, MAIN_TABLE, DUMP_TIMEOUT_MS)
  const addresses = await listAddresses(s.rtnl, undefined, { timeoutMs: DUMP_TIMEOUT_MS })
  return { routes, localAddresses: addresses.filter((a) => a.family === family).map((a) => a.address) }
}

/**
 * Applies a diff: stale routes first, then adds and replaces. Deletes name DAEMON_ROUTE_PROTOCOL
 * and the gateway, so only our own route can match, never one of another owner. Adds are
 * exclusive: a route someone else created meanwhile is not overwritten.
 */
export async function applyRouteDiff(s: RouteSockets, diff: Pick<RouteDiff, 'add' | 'replace' | 'remove'>, family: IpFamily = 4): Promise<ApplyResult> {
  const ours = { family, protocol: DAEMON_ROUTE_PROTOCOL, table: MAIN_TABLE }
  const ops: RouteOperation[] = [
    ...diff.remove.map((r) => ({ op: 'delete' as const, route: { ...ours, dst: r.dst, dstLength: r.dstLength, gateway: r.gateway } })),
    ...diff.add.map((r) => ({ op: 'add' as const, route: { ...ours, dst: r.dst, dstLength: r.dstLength, gateway: r.gateway } })),
    ...diff.replace.map((r) => ({ op: 'replace' as const, route: { ...ours, dst: r.dst, dstLength: r.dstLength, gateway: r.gateway } })),
  ]
  const peers: Array<PeerRoute | undefined> = [...diff.remove.map(() => undefined), ...diff.add, ...diff.replace]
  const outcomes = await s.batch.apply(ops, REQUEST_TIMEOUT_MS)
  const result: ApplyResult = { added: 0, replaced: 0, removed: 0, errors: [] }
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
  skipped: SkippedPeer[]
  conflicts: RouteConflict[]
  errors: Error[]
}

/**
 * One level-triggered sync: the kernel's routes now vs. the routes the node list asks for.
 * Routes of nodes that left (even while the daemon was down) are in the kernel but not wanted,
 * so they go; routes of other owners are only read.
 */
export async function reconcileRoutes(s: RouteSockets, want: { nodes: readonly NodeRecord[]; self: string; cluster: Cidr }): Promise<RouteReconcileReport> {
  const family = want.cluster.family
  const kernel = await readKernelRoutes(s, family)
  const { routes, skipped } = desiredRoutes({ ...want, kernelRoutes: kernel.routes, localAddresses: kernel.localAddresses })
  const diff = diffRoutes(routes, kernel.routes, family)
  const applied = await applyRouteDiff(s, diff, family)
  return {
    desired: routes.length,
    kept: diff.keep.length,
    added: applied.added,
    replaced: applied.replaced,
    removed: applied.removed,
    programmed: diff.keep.length + applied.added + applied.replaced,
    skipped,
    conflicts: diff.conflicts,
    errors: applied.errors,
  }
}
