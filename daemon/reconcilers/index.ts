// The public face of daemon/reconcilers: every concern of flatnetd, built from the configuration.
// A new capability is a new file here, one row in conf/daemonConfig.ts's switch table
// (daemonConcerns) and one line below.
import type { DaemonConcern, DaemonConfig } from '../../conf/daemonConfig.js'
import { parseCidr } from '../../ipam/index.js'
import type { DaemonView } from '../objects/daemonView.js'
import type { Logger } from '../log.js'
import type { DaemonMetrics } from '../metrics.js'
import type { Reconciler } from '../reconcile/contract.js'
import { linkByIndex, listAddresses, listLinks } from '../../net/rtnl.js'
import { podSourcesOf } from '../antispoof.js'
import type { RouteSockets } from '../routeProgrammer.js'
import { AntispoofReconciler } from './antispoof.js'
import { ConflistReconciler } from './conflist.js'
import { ForwardingReconciler, forwardingHost, raDefaultRoutesOf } from './forwarding.js'
import { MasqueradeReconciler } from './masquerade.js'
import { PolicyReconciler } from './policy.js'
import { RoutesReconciler } from './routes.js'
import { VxlanReconciler } from './vxlan.js'
import { ServicesReconciler } from './services.js'
import { ServiceModelMemo } from '../services/endpoints.js'
import type { ConntrackSocket } from '../../net/conntrack.js'

export { AntispoofReconciler } from './antispoof.js'
export { ConflistReconciler, configsBefore } from './conflist.js'
export { ForwardingReconciler, forwardingHost, raDefaultRoutesOf, raWarning, type ForwardingHost, type RaDefaultRoute } from './forwarding.js'
export { MasqueradeReconciler } from './masquerade.js'
export { PolicyReconciler, type PolicyView } from './policy.js'
export { RoutesReconciler, blockedRouteText } from './routes.js'
export { VxlanReconciler } from './vxlan.js'
export { ServicesReconciler, type ServicesView, type ServiceModelSource } from './services.js'

export interface ReconcilerDeps {
  log: Logger
  /**
   * The host's netlink sockets, opened on first use (--uninstall opens them only for routes) and
   * shared by every reconciler: each socket lets one dump run at a time and queues the others
   * (the kernel refuses a dump on a socket in the middle of another).
   */
  sockets: () => RouteSockets
  /** The host's ctnetlink socket, opened on first use: the service proxy deletes stale UDP flows through it. */
  conntrack?: () => ConntrackSocket
  metrics?: DaemonMetrics
}

/** One reconciler per concern, in the order they are started and removed. */
export function buildReconcilers(cfg: DaemonConfig, deps: ReconcilerDeps): Record<DaemonConcern, Reconciler<DaemonView>> {
  const clusters = cfg.clusterCidrs.map((c) => parseCidr(c))
  const logOf = (name: string) => deps.log.child({ reconciler: name })
  const serviceModelMemo = new ServiceModelMemo()
  return {
    forwarding: new ForwardingReconciler(
      [...new Set(clusters.map((c) => c.family))],
      logOf('forwarding'),
      forwardingHost(() => raDefaultRoutesOf(deps.sockets().rtnl)),
    ),
    routes: new RoutesReconciler(cfg.nodeName, clusters, deps.sockets, logOf('routes'), deps.metrics, cfg.backend),
    vxlan: new VxlanReconciler(cfg.nodeName, clusters, { backend: cfg.backend, vni: cfg.vxlanVni, port: cfg.vxlanPort }, deps.sockets, logOf('vxlan'), deps.metrics),
    antispoof: new AntispoofReconciler(logOf('antispoof'), {
      sources: async () => {
        const { batch } = deps.sockets()
        return { 4: podSourcesOf(await batch.listRoutes(4)), 6: podSourcesOf(await batch.listRoutes(6)) }
      },
      indexes: async () => new Map((await listLinks(deps.sockets().rtnl)).map((l) => [l.name, l.index])),
    }),
    conflist: new ConflistReconciler(cfg, logOf('conflist'), async (address) => {
      const s = deps.sockets()
      const a = (await listAddresses(s.rtnl)).find((x) => x.address === address)
      return a && (await linkByIndex(s.rtnl, a.index))?.mtu
    }),
    masquerade: new MasqueradeReconciler(clusters, logOf('masquerade')),
    policy: new PolicyReconciler(logOf('policy'), deps.metrics),
    services: new ServicesReconciler(
      { nodeName: cfg.nodeName, clusterRanges: cfg.clusterCidrs },
      // Models are kept across syncs: an unchanged Service with unchanged inputs keeps its model object.
      (view) => {
        const services = view.services()
        if (!services) return undefined
        // Without Kubernetes, flatnet is the control plane: endpoints come from the selected Pods.
        const source = cfg.datastore.kind === 'kubernetes' ? 'endpointslices' : 'pods'
        return serviceModelMemo.models({ services, pods: view.pods(), endpointSlices: view.endpointSlices(), source })
      },
      logOf('services'),
      { metrics: deps.metrics, forgetFlows: deps.conntrack && ((f) => deps.conntrack!().delete(f)) },
    ),
  }
}
