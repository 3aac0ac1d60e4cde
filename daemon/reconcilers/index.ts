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
import { ConflistReconciler } from './conflist.js'
import { ForwardingReconciler } from './forwarding.js'
import { MasqueradeReconciler } from './masquerade.js'
import { PolicyReconciler } from './policy.js'
import { RoutesReconciler } from './routes.js'

export { ConflistReconciler, configsBefore } from './conflist.js'
export { ForwardingReconciler } from './forwarding.js'
export { MasqueradeReconciler } from './masquerade.js'
export { PolicyReconciler, type PolicyView } from './policy.js'
export { RoutesReconciler, blockedRouteText } from './routes.js'

export interface ReconcilerDeps {
  log: Logger
  /** The host's netlink sockets, opened on first use (--uninstall opens them only for routes). */
  sockets: () => RouteSockets
  metrics?: DaemonMetrics
}

/** One reconciler per concern, in the order they are started and removed. */
export function buildReconcilers(cfg: DaemonConfig, deps: ReconcilerDeps): Record<DaemonConcern, Reconciler<DaemonView>> {
  const cluster = parseCidr(cfg.clusterCidr)
  const logOf = (name: string) => deps.log.child({ reconciler: name })
  return {
    forwarding: new ForwardingReconciler(logOf('forwarding')),
    routes: new RoutesReconciler(cfg.nodeName, cluster, deps.sockets, logOf('routes'), deps.metrics),
    conflist: new ConflistReconciler(cfg, logOf('conflist')),
    masquerade: new MasqueradeReconciler(cluster, logOf('masquerade')),
    policy: new PolicyReconciler(logOf('policy'), deps.metrics),
  }
}
