// The kernel side of the route reconciler: one dump of routes and addresses per reconcile, then
// the diff applied as pipelined netlink requests. A request/ack round trip per route, one at a
// time, is what makes thousands of routes slow; keeping a window of requests in flight on the
// one socket lets the kernel work through them back to back while still giving one answer (and
// one named error) per route.
import type { Family } from '../net/ipbytes.js'
import { addRoute, deleteRoute, listAddresses, listRoutes, type RouteInfo, type Rtnl } from '../net/rtnl.js'
import type { Cidr } from '../ipam/index.js'
import type { NodeRecord } from './datastore/types.js'
import {
  DAEMON_ROUTE_PROTOCOL, MAIN_TABLE, desiredRoutes, diffRoutes, peerRouteText,
  type OwnedRoute, type PeerRoute, type RouteConflict, type RouteDiff, type SkippedPeer,
} from './routes.js'

/** Requests in flight at once: large enough to hide the round trip, small enough that the acks fit the socket's receive buffer. */
const WINDOW = 256

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

export async function readKernelRoutes(rtnl: Rtnl, family: Family = 4): Promise<KernelRouteState> {
  // One after the other: two dumps in flight on one netlink socket interleave their parts.
  const routes = await listRoutes(rtnl, family, MAIN_TABLE)
  const addresses = await listAddresses(rtnl)
  return { routes, localAddresses: addresses.filter((a) => a.family === family).map((a) => a.address) }
}

/** Runs fn over items with at most `window` promises pending; collects errors instead of stopping at the first. */
async function pipelined<T>(items: readonly T[], window: number, fn: (item: T) => Promise<unknown>): Promise<Error[]> {
  const errors: Error[] = []
  let next = 0
  const lane = async () => {
    while (next < items.length) {
      const item = items[next++]!
      try {
        await fn(item)
      } catch (e) {
        errors.push(e instanceof Error ? e : new Error(String(e)))
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(window, items.length) }, lane))
  return errors
}

function peerSpec(r: PeerRoute, family: Family) {
  return { family, dst: r.dst, dstLength: r.dstLength, gateway: r.gateway, protocol: DAEMON_ROUTE_PROTOCOL, table: MAIN_TABLE }
}

/**
 * Applies a diff: stale routes first, then adds and replaces. Deletes name DAEMON_ROUTE_PROTOCOL
 * and the gateway, so only our own route can match, never one of another owner.
 */
export async function applyRouteDiff(rtnl: Rtnl, diff: Pick<RouteDiff, 'add' | 'replace' | 'remove'>, family: Family = 4): Promise<ApplyResult> {
  const result: ApplyResult = { added: 0, replaced: 0, removed: 0, errors: [] }
  result.errors.push(
    ...(await pipelined(diff.remove, WINDOW, async (r: OwnedRoute) => {
      try {
        if (await deleteRoute(rtnl, { family, dst: r.dst, dstLength: r.dstLength, gateway: r.gateway, protocol: DAEMON_ROUTE_PROTOCOL, table: MAIN_TABLE })) result.removed++
      } catch (e) {
        throw new Error(`remove stale route ${peerRouteText(r)} proto ${DAEMON_ROUTE_PROTOCOL}: ${errorText(e)}`)
      }
    })),
  )
  const changes = [...diff.add.map((r) => ({ r, replace: false })), ...diff.replace.map((r) => ({ r, replace: true }))]
  result.errors.push(
    ...(await pipelined(changes, WINDOW, async ({ r, replace }) => {
      try {
        await addRoute(rtnl, peerSpec(r, family), { replace })
        if (replace) result.replaced++
        else result.added++
      } catch (e) {
        throw new Error(`${replace ? 'replace' : 'add'} route ${peerRouteText(r)} to node ${r.node}: ${errorText(e)}`)
      }
    })),
  )
  return result
}

function errorText(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e)
  // rtnl's messages already say "add route X: EEXIST"; keep only the cause after the last colon.
  const i = m.lastIndexOf(': ')
  return i >= 0 ? m.slice(i + 2) : m
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
 * One level-triggered pass: the kernel's routes now vs. the routes the node list asks for.
 * Routes of nodes that left (even while the daemon was down) are in the kernel but not wanted,
 * so they go; routes of other owners are only read.
 */
export async function reconcileRoutes(rtnl: Rtnl, want: { nodes: readonly NodeRecord[]; self: string; cluster: Cidr }): Promise<RouteReconcileReport> {
  const family = want.cluster.family
  const kernel = await readKernelRoutes(rtnl, family)
  const { routes, skipped } = desiredRoutes({ ...want, kernelRoutes: kernel.routes, localAddresses: kernel.localAddresses })
  const diff = diffRoutes(routes, kernel.routes, family)
  const applied = await applyRouteDiff(rtnl, diff, family)
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
