// vxlan: owns flatnet's VXLAN devices (flatnet.vxlan over IPv4, flatnet.vxlan6 over IPv6), every
// neighbour and FDB entry on them, and the protocol-200 routes through them: one tunnel per peer
// the shared peer plan (routes.ts desiredRoutes) does not reach by host-gw. Enabled with
// --backend vxlan or auto; switched off (host-gw) its remove() deletes both devices, which takes
// their entries and routes with them. The decisions are the pure functions of ../vxlan.ts, the
// kernel side ../vxlanProgrammer.ts.
import type { Logger } from 'pino'
import type { Cidr } from '../../ipam/index.js'
import type { ClusterView } from '../clusterView.js'
import type { NodeBackend } from '../datastore/types.js'
import type { DaemonMetrics } from '../metrics.js'
import type { Reconciler, ReconcilerStatus, SyncResult } from '../reconcile/contract.js'
import type { RouteSockets } from '../routeProgrammer.js'
import { VXLAN_DEVICE, vtepMacOf } from '../vxlan.js'
import { reconcileVxlan, removeVxlanDevices, type VxlanReport } from '../vxlanProgrammer.js'

export interface VxlanSettings {
  backend: NodeBackend
  vni: number
  port: number
}

export class VxlanReconciler implements Reconciler<ClusterView> {
  readonly name = 'vxlan'
  readonly owns = `the VXLAN devices ${VXLAN_DEVICE[4]} and ${VXLAN_DEVICE[6]}, their neighbour and FDB entries, and the routes of protocol 200 through them (one per peer reached by VXLAN)`
  readonly inputs = ['nodes'] as const
  // Like routes: until the tunnels are in place pods here cannot reach pods of off-link peers.
  readonly gatesReadiness = true
  readonly holdsWhileRefused = true
  private warnings: string[] = []
  private reportedTunnels = ''

  constructor(
    private readonly self: string,
    private readonly clusters: readonly Cidr[],
    private readonly settings: VxlanSettings,
    private readonly sockets: () => RouteSockets,
    private readonly log: Logger,
    private readonly metrics?: Pick<DaemonMetrics, 'peersByBackend' | 'vxlanEntries'>,
  ) {}

  /** This node's VTEP MAC, as it publishes it in the datastore. */
  get mac(): string {
    return vtepMacOf(this.self)
  }

  async sync(view: ClusterView): Promise<SyncResult> {
    const nodes = view.nodes()
    if (!nodes) return { changed: false, problems: [] }
    let report: VxlanReport
    try {
      report = await reconcileVxlan(this.sockets(), {
        nodes,
        self: this.self,
        clusters: this.clusters,
        backend: this.settings.backend,
        vni: this.settings.vni,
        port: this.settings.port,
        mac: this.mac,
      })
    } catch (e) {
      return { changed: false, problems: [`reconcile vxlan: ${(e as Error).message}`] }
    }
    const changed = report.families.reduce((n, f) => n + f.changed, 0)
    for (const f of report.families) {
      if (f.created) this.log.info({ device: f.device, vni: this.settings.vni, port: this.settings.port, mac: this.mac }, 'vxlan device created')
      const family = `ipv${f.family}`
      this.metrics?.vxlanEntries.set(f.neighbours, { family, kind: 'neighbour' })
      this.metrics?.vxlanEntries.set(f.fdb, { family, kind: 'fdb' })
      this.metrics?.vxlanEntries.set(f.routes, { family, kind: 'route' })
    }
    for (const c of this.clusters) {
      this.metrics?.peersByBackend.set(report.tunnels.filter((p) => p.family === c.family).length, { family: `ipv${c.family}`, backend: 'vxlan' })
    }
    if (changed > 0) this.log.info({ tunnels: report.tunnels.length, changed, errors: report.errors.length }, 'vxlan tunnels to peers reconciled')
    const tunnels = report.tunnels.map((p) => `${p.node}/${p.family}/${p.gateway}/${p.vtepMac}`).join('\n')
    if (tunnels !== this.reportedTunnels) {
      for (const p of report.tunnels) this.log.debug({ peer: p.node, family: `IPv${p.family}`, subnet: `${p.dst}/${p.dstLength}`, nodeIP: p.gateway, vtepMac: p.vtepMac }, 'peer reached by vxlan')
      this.reportedTunnels = tunnels
    }
    this.warnings = report.blocked
    return { changed: changed > 0, problems: report.errors.map((e) => e.message) }
  }

  async remove(): Promise<string> {
    const n = await removeVxlanDevices(this.sockets())
    return `${n} vxlan device(s) removed, with their neighbour, FDB and route entries`
  }

  status(): ReconcilerStatus {
    return this.warnings.length ? { warnings: this.warnings } : {}
  }
}
