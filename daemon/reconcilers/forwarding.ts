// forwarding: owns net.ipv4.ip_forward=1 in the daemon's network namespace. Without it the node
// drops every packet routed between a pod's veth and the node network, so it gates readiness.
// Set at every sync, level-triggered: an unprivileged container whose read-only /proc/sys holds 0
// keeps the daemon up, not ready, retrying — and a 0 written by someone later is repaired.
import type { Logger } from 'pino'
import { ensureSysctl } from '../../net/sysctl.js'
import type { InputSource, Reconciler, ReconcilerStatus, SyncResult } from '../reconcile/contract.js'

export const FORWARDING_SYSCTL = 'net.ipv4.ip_forward'

export class ForwardingReconciler implements Reconciler {
  readonly name = 'forwarding'
  // Worded without the sysctl's name: a node where forwarding is already on never logs about it.
  readonly owns = "IPv4 forwarding (on) in this node's network namespace"
  readonly inputs = [] as const
  readonly gatesReadiness = true
  // Turning forwarding on harms nothing a refused configuration could protect.
  readonly holdsWhileRefused = false

  constructor(
    private readonly log: Logger,
    private readonly ensure: (key: string, value: string) => Promise<boolean> = ensureSysctl,
  ) {}

  async sync(_view: InputSource): Promise<SyncResult> {
    try {
      const changed = await this.ensure(FORWARDING_SYSCTL, '1')
      if (changed) this.log.info(`set ${FORWARDING_SYSCTL}=1`)
      return { changed, problems: [] }
    } catch (e) {
      return { changed: false, problems: [`${(e as Error).message}: pods cannot be routed until ${FORWARDING_SYSCTL} is 1`] }
    }
  }

  /** Left as it is: other software on the node (a runtime, another CNI) may rely on forwarding. */
  async remove(): Promise<string> {
    return `${FORWARDING_SYSCTL} left as it is (other software on the node may rely on it)`
  }

  status(): ReconcilerStatus {
    return {}
  }
}
