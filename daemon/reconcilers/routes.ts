// routes: owns the routes of the main table marked protocol 200 (DAEMON_ROUTE_PROTOCOL) that do
// not go through flatnet's VXLAN devices: one `<peer subnet> via <peer node address>` per peer
// the shared peer plan (routes.ts desiredRoutes) reaches by host-gw, per family of the cluster
// ranges (IPv4 and IPv6 in one netlink batch); the peers it tunnels are the vxlan reconciler's. Every sync dumps the kernel's
// routes and applies the difference in netlink batches (routeProgrammer.ts); the decisions are
// the pure functions of ../routes.ts.
//
// A peer route blocked by a route of another owner (same destination, another protocol) is left
// alone — that route is not ours to replace — and reported on every sync that still finds it: a
// warning in the log, a line in /readyz, the flatnet_peer_routes_blocked metric. It does not make
// the node not ready: this node's pods and every other peer work, the other route may be an
// operator's deliberate choice, and a not-ready flatnet pod would stall every rolling update of
// the DaemonSet for something flatnet must not fix by itself. A peer without an address (or a
// subnet) of a configured family gets no route of that family and the same kind of warning, for
// the same reasons: its other family and every other peer work.
import type { Logger } from 'pino'
import type { Cidr } from '../../ipam/index.js'
import type { ClusterView } from '../clusterView.js'
import type { DaemonMetrics } from '../metrics.js'
import type { Reconciler, ReconcilerStatus, SyncResult } from '../reconcile/contract.js'
import { applyRouteDiff, readKernelRoutes, reconcileRoutes, type RouteReconcileReport, type RouteSockets } from '../routeProgrammer.js'
import type { NodeBackend } from '../datastore/types.js'
import { vxlanDeviceIndexes } from '../vxlanProgrammer.js'
import { DAEMON_ROUTE_PROTOCOL, diffRoutes, peerRouteText, type RouteConflict, type SkippedPeer } from '../routes.js'

/** A peer without a subnet or an address of a configured family, in words: which peer, which family, why. */
export function missingFamilyText(s: SkippedPeer): string {
  return `${s.node}: no IPv${s.family} route: ${s.reason}`
}

/** The family label of the per-family metrics. */
function familyLabel(family: 4 | 6): { family: string } {
  return { family: `ipv${family}` }
}

/** A blocked peer route in words: which peer, which route, who holds the destination. */
export function blockedRouteText(c: RouteConflict): string {
  return `${c.route.node}: route ${peerRouteText(c.route)} not added: ${c.holder.dst}/${c.holder.dstLength} is already routed by protocol ${c.holder.protocol}`
}

export class RoutesReconciler implements Reconciler<ClusterView> {
  readonly name = 'routes'
  readonly owns = `the routes of protocol ${DAEMON_ROUTE_PROTOCOL} in the main table (one per on-link peer node and family)`
  readonly inputs = ['nodes'] as const
  // Until the peers' routes are in place pods on this node cannot reach pods on others.
  readonly gatesReadiness = true
  readonly holdsWhileRefused = true
  /** Off-link and invalid peers as last logged (they are logged when they change, not every sync). */
  private reportedSkips = ''
  private warnings: string[] = []

  constructor(
    private readonly self: string,
    private readonly clusters: readonly Cidr[],
    private readonly sockets: () => RouteSockets,
    private readonly log: Logger,
    private readonly metrics?: Pick<DaemonMetrics, 'routesProgrammed' | 'peersSkipped' | 'peerRoutesBlocked' | 'peersByBackend'>,
    /** This node's --backend: the peers the shared plan tunnels are the vxlan reconciler's. */
    private readonly backend: NodeBackend = 'host-gw',
  ) {
    for (const c of clusters) {
      metrics?.routesProgrammed.set(0, familyLabel(c.family))
      metrics?.peersSkipped.set(0, familyLabel(c.family))
    }
  }

  async sync(view: ClusterView): Promise<SyncResult> {
    const nodes = view.nodes()
    if (!nodes) return { changed: false, problems: [] }
    let report: RouteReconcileReport
    try {
      const s = this.sockets()
      // Routes through flatnet's VXLAN devices are the vxlan reconciler's, whatever the backend
      // (with host-gw the vxlan concern removes its devices, and their routes with them).
      report = await reconcileRoutes(s, { nodes, self: this.self, clusters: this.clusters, backend: this.backend, tunnelDevices: await vxlanDeviceIndexes(s) })
    } catch (e) {
      return { changed: false, problems: [`reconcile routes: ${(e as Error).message}`] }
    }
    this.logReport(report)
    for (const c of this.clusters) {
      const f = c.family
      this.metrics?.routesProgrammed.set(report.programmedByFamily[f], familyLabel(f))
      this.metrics?.peersByBackend.set(report.programmedByFamily[f], { ...familyLabel(f), backend: 'host-gw' })
      this.metrics?.peersSkipped.set(report.skipped.filter((s) => s.family === f).length + report.conflicts.filter((x) => x.holder.family === f).length, familyLabel(f))
    }
    this.metrics?.peerRoutesBlocked.set(report.conflicts.length)
    return { changed: report.added + report.replaced + report.removed > 0, problems: report.errors.map((e) => e.message) }
  }

  private logReport(r: RouteReconcileReport): void {
    if (r.added + r.replaced + r.removed > 0) {
      this.log.info({ desired: r.desired, added: r.added, replaced: r.replaced, removed: r.removed, kept: r.kept }, 'routes to peers reconciled')
    }
    // Off-link peers are reported once when they appear or change, not every sync.
    const skips = r.skipped.map((s) => `${s.node}: ${s.reason}`).join('\n')
    if (skips !== this.reportedSkips) {
      for (const s of r.skipped) this.log.warn({ peer: s.node, family: `IPv${s.family}`, subnet: s.subnet, nodeIP: s.nodeIP, reason: s.reason }, `peer node gets no IPv${s.family} route`)
      this.reportedSkips = skips
    }
    // Blocked routes on every sync that still finds them: an operator must see them until resolved.
    for (const c of r.conflicts) {
      this.log.warn(
        { peer: c.route.node, route: peerRouteText(c.route), holderProtocol: c.holder.protocol, holderGateway: c.holder.gateway },
        'peer route not added: a route of another owner holds this destination',
      )
    }
    this.warnings = [...r.skipped.filter((s) => s.lacksFamily).map(missingFamilyText), ...r.conflicts.map(blockedRouteText)]
  }

  async remove(): Promise<string> {
    const s = this.sockets()
    const diff = diffRoutes(
      [],
      (
        await readKernelRoutes(
          s,
          this.clusters.map((c) => c.family),
        )
      ).routes,
    )
    const r = await applyRouteDiff(s, diff)
    if (r.errors.length) throw new Error(r.errors.map((e) => e.message).join('; '))
    return `${r.removed} route(s) of protocol ${DAEMON_ROUTE_PROTOCOL} removed`
  }

  status(): ReconcilerStatus {
    return this.warnings.length ? { warnings: this.warnings } : {}
  }
}
