// Routing between pods is the host's job: forwarding must be on for each family a pod range has
// (a new host may have it off), and only for those: an IPv4-only network never turns IPv6
// forwarding on behind the operator's back.
import { readFileSync, writeFileSync } from 'node:fs'
import type { IpFamily } from '../net/ipbytes.js'
import { raDefaultRoutesOf } from '../net/raRoutes.js'
import type { Rtnl } from '../net/rtnl.js'
import { CniError, Code } from './errors.js'

const FORWARDING_FILE: Record<IpFamily, string> = { 4: '/proc/sys/net/ipv4/ip_forward', 6: '/proc/sys/net/ipv6/conf/all/forwarding' }

/** Turns forwarding on for each family; resolves the families it changed. */
export function enableForwarding(families: Iterable<IpFamily>): IpFamily[] {
  const changed: IpFamily[] = []
  for (const family of new Set(families)) {
    const file = FORWARDING_FILE[family]
    try {
      if (readFileSync(file, 'utf8').trim() === '1') continue
      writeFileSync(file, '1')
      changed.push(family)
    } catch (e) {
      throw new CniError(Code.ioFailure, `enable forwarding (${file}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  return changed
}

/**
 * With net.ipv6.conf.all.forwarding=1 the kernel ignores router advertisements on interfaces
 * whose accept_ra is 1 (2 keeps accepting them): a host that learnt its IPv6 default route by RA
 * there loses it when the route expires. That is the operator's to decide (accept_ra=2, or a
 * static route), so it is only reported, naming the interface.
 */
export async function raDefaultRouteWarnings(host: Rtnl): Promise<string[]> {
  const out: string[] = []
  for (const r of await raDefaultRoutesOf(host)) {
    let acceptRa = ''
    try {
      acceptRa = readFileSync(`/proc/sys/net/ipv6/conf/${r.ifname}/accept_ra`, 'utf8').trim()
    } catch {
      continue
    }
    if (acceptRa === '1') {
      out.push(
        `IPv6 forwarding is now on: the host's IPv6 default route via ${r.gateway ?? '?'} dev ${r.ifname} was learnt from a router advertisement, and with accept_ra=1 on ${r.ifname} the kernel stops accepting them; set net.ipv6.conf.${r.ifname}.accept_ra=2 or a static default route`,
      )
    }
  }
  return out
}
