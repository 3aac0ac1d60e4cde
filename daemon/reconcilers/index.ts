// The public face of daemon/reconcilers: every concern of flatnetd, built from the configuration.
// A new capability is a new file here, one row in conf/daemonConfig.ts's switch table
// (daemonConcerns) and one line below.
import type { DaemonConcern, DaemonConfig } from '../../conf/daemonConfig.js'
import { parseCidr } from '../../ipam/index.js'
import type { DaemonView } from '../objects/daemonView.js'
import type { Logger } from '../log.js'
import type { DaemonMetrics } from '../metrics.js'
import type { Reconciler } from '../reconcile/contract.js'
import type { RouteSockets } from '../routeProgrammer.js'
import { AntispoofReconciler } from './antispoof.js'
import { ConflistReconciler } from './conflist.js'
import { ForwardingReconciler, forwardingHost, raDefaultRoutesOwnSocket } from './forwarding.js'
import { MasqueradeReconciler } from './masquerade.js'
import { PolicyReconciler } from './policy.js'
import { RoutesReconciler } from './routes.js'
import { ServicesReconciler } from './services.js'
import { serviceModels } from '../services/endpoints.js'

export { AntispoofReconciler } from './antispoof.js'
export { ConflistReconciler, configsBefore } from './conflist.js'
export { ForwardingReconciler, forwardingHost, raDefaultRoutesOf, raDefaultRoutesOwnSocket, raWarning, type ForwardingHost, type RaDefaultRoute } from './forwarding.js'
export { MasqueradeReconciler } from './masquerade.js'
export { PolicyReconciler, type PolicyView } from './policy.js'
export { RoutesReconciler, blockedRouteText } from './routes.js'
export { ServicesReconciler, type ServicesView, type ServiceModelSource } from './services.js'

export interface ReconcilerDeps {
  log: Logger
  /** The host's netlink sockets, opened on first use (--uninstall opens them only for routes). */
  sockets: () => RouteSockets
  metrics?: DaemonMetrics
}

/** One reconciler per concern, in the order they are started and removed. */
export function buildReconcilers(cfg: DaemonConfig, deps: ReconcilerDeps): Record<DaemonConcern, Reconciler<DaemonView>> {
  const clusters = cfg.clusterCidrs.map((c) => parseCidr(c))
  const logOf = (name: string) => deps.log.child({ reconciler: name })
  return {
    forwarding: new ForwardingReconciler([...new Set(clusters.map((c) => c.family))], logOf('forwarding'), forwardingHost(raDefaultRoutesOwnSocket)),
    routes: new RoutesReconciler(cfg.nodeName, clusters, deps.sockets, logOf('routes'), deps.metrics),
    antispoof: new AntispoofReconciler(logOf('antispoof')),
    conflist: new ConflistReconciler(cfg, logOf('conflist')),
    masquerade: new MasqueradeReconciler(clusters, logOf('masquerade')),
    policy: new PolicyReconciler(logOf('policy'), deps.metrics),
    services: new ServicesReconciler(
      { nodeName: cfg.nodeName, clusterRanges: cfg.clusterCidrs },
      (view) => {
        const services = view.services()
        if (!services) return undefined
        // Without Kubernetes, flatnet is the control plane: endpoints come from the selected Pods.
        const source = cfg.datastore.kind === 'kubernetes' ? 'endpointslices' : 'pods'
        return serviceModels({ services, pods: view.pods(), endpointSlices: view.endpointSlices(), source })
      },
      logOf('services'),
      deps.metrics,
    ),
  }
}
