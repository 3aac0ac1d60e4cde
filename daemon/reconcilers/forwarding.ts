// forwarding: owns forwarding (on) in the daemon's network namespace, per configured family:
// net.ipv4.ip_forward=1 when an IPv4 cluster range is configured, net.ipv6.conf.all.forwarding=1
// when an IPv6 one is (and only then: it changes how the host treats router advertisements, see
// below). Without it the node drops every packet routed between a pod's veth and the node
// network, so it gates readiness. Set at every sync, level-triggered: an unprivileged container
// whose read-only /proc/sys holds 0 keeps the daemon up, not ready, retrying — and a 0 written by
// someone later is repaired.
//
// IPv6 forwarding and router advertisements: with net.ipv6.conf.all.forwarding=1 the kernel
// ignores router advertisements on every interface whose accept_ra is 1 (only accept_ra=2 keeps
// accepting them on a forwarding host). A host that learns its IPv6 default route from RAs keeps
// the learned route until its lifetime runs out, then has none. flatnetd does not change
// accept_ra or the routes behind the operator's back: it says so, in the log and as a /readyz
// warning, on every sync that still finds such a route, naming the interface and the fix.
import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { IpFamily } from '../../ipam/index.js'
import type { RaDefaultRoute } from '../../net/raRoutes.js'

export { raDefaultRoutesOf, raDefaults, type RaDefaultRoute } from '../../net/raRoutes.js'
import { ensureSysctl } from '../../net/sysctl.js'
import type { InputSource, Reconciler, ReconcilerStatus, SyncResult } from '../reconcile/contract.js'

export const FORWARDING_SYSCTL = 'net.ipv4.ip_forward'
export const FORWARDING6_SYSCTL = 'net.ipv6.conf.all.forwarding'
const SYSCTL_OF: Record<IpFamily, string> = { 4: FORWARDING_SYSCTL, 6: FORWARDING6_SYSCTL }

/** What the forwarding concern reads from the host besides the sysctls it sets (injectable for tests). */
export interface ForwardingHost {
  ensure(key: string, value: string): Promise<boolean>
  /** The IPv6 default routes of the main table learned from router advertisements. */
  raDefaultRoutes(): Promise<RaDefaultRoute[]>
  /** net.ipv6.conf.<ifname>.accept_ra (read by path: an interface name may hold a '.'). */
  acceptRa(ifname: string): Promise<string>
}

export async function readAcceptRa(ifname: string): Promise<string> {
  if (ifname.includes('/') || ifname === '..' || ifname === '.') throw new Error(`read accept_ra of ${JSON.stringify(ifname)}: not an interface name`)
  try {
    return (await readFile(`/proc/sys/net/ipv6/conf/${ifname}/accept_ra`, 'utf8')).trim()
  } catch (e) {
    throw new Error(`read net.ipv6.conf.${ifname}.accept_ra: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
}

/** The warning for one RA-learned default route on an interface with accept_ra=1. */
export function raWarning(r: RaDefaultRoute): string {
  return (
    `the IPv6 default route${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.ifname} is learned from router advertisements with accept_ra=1, ` +
    `and ${FORWARDING6_SYSCTL}=1 (needed to route pods' IPv6) makes the kernel ignore router advertisements there: the route is lost when its lifetime ends. ` +
    `Set net.ipv6.conf.${r.ifname}.accept_ra=2 or configure the default route statically (flatnetd changes neither)`
  )
}

export class ForwardingReconciler implements Reconciler {
  readonly name = 'forwarding'
  // Worded without the sysctl's name: a node where forwarding is already on never logs about it.
  readonly owns: string
  readonly inputs = [] as const
  readonly gatesReadiness = true
  // Turning forwarding on harms nothing a refused configuration could protect.
  readonly holdsWhileRefused = false
  private warnings: string[] = []

  constructor(
    private readonly families: readonly IpFamily[],
    private readonly log: Logger,
    private readonly host: ForwardingHost,
  ) {
    this.owns = `${families.map((f) => `IPv${f}`).join(' and ')} forwarding (on) in this node's network namespace`
  }

  async sync(_view: InputSource): Promise<SyncResult> {
    let changed = false
    const problems: string[] = []
    for (const family of this.families) {
      const key = SYSCTL_OF[family]
      try {
        if (await this.host.ensure(key, '1')) {
          changed = true
          this.log.info(`set ${key}=1`)
        }
      } catch (e) {
        problems.push(`${(e as Error).message}: pods cannot be routed until ${key} is 1`)
      }
    }
    if (this.families.includes(6)) await this.checkRouterAdvertisements()
    return { changed, problems }
  }

  private async checkRouterAdvertisements(): Promise<void> {
    const warnings: string[] = []
    try {
      for (const r of await this.host.raDefaultRoutes()) if ((await this.host.acceptRa(r.ifname)) === '1') warnings.push(raWarning(r))
    } catch (e) {
      // Only a warning is at stake: say the check failed rather than fail forwarding.
      warnings.push(`check IPv6 default routes learned from router advertisements: ${(e as Error).message}`)
    }
    if (warnings.join('\n') !== this.warnings.join('\n')) for (const w of warnings) this.log.warn(w)
    this.warnings = warnings
  }

  /** Left as it is: other software on the node (a runtime, another CNI) may rely on forwarding. */
  async remove(): Promise<string> {
    return `${this.families.map((f) => SYSCTL_OF[f]).join(' and ')} left as it is (other software on the node may rely on it)`
  }

  status(): ReconcilerStatus {
    return this.warnings.length ? { warnings: this.warnings } : {}
  }
}

/** The host's side: sysctls through /proc/sys, the IPv6 main table's RA-learned default routes. */
export function forwardingHost(raDefaultRoutes: () => Promise<RaDefaultRoute[]>): ForwardingHost {
  return { ensure: ensureSysctl, raDefaultRoutes, acceptRa: readAcceptRa }
}
