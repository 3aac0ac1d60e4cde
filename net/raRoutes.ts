// IPv6 default routes the kernel learned from router advertisements. Both sides ask: the plugin
// when an ADD turns IPv6 forwarding on, flatnetd's forwarding concern on every full sync — with
// net.ipv6.conf.all.forwarding=1 the kernel ignores router advertisements on interfaces whose
// accept_ra is 1, so such a route is lost when its lifetime ends (each side says so, neither
// changes it).
import { linkByIndex, listRoutes, type RouteInfo, type Rtnl } from './rtnl.js'

/** rtm_protocol of routes the kernel installs from router advertisements (`proto ra`). */
export const RTPROT_RA = 9

/** An IPv6 default route the kernel learned from a router advertisement. */
export interface RaDefaultRoute {
  ifname: string
  gateway?: string
}

/** The IPv6 default routes in a main-table dump that came from router advertisements. */
export function raDefaults(routes: readonly RouteInfo[]): RouteInfo[] {
  return routes.filter((r) => r.family === 6 && r.dstLength === 0 && r.protocol === RTPROT_RA)
}

/** The RA-learned IPv6 default routes over a netlink socket: one IPv6 route dump, one link lookup per route. */
export async function raDefaultRoutesOf(rtnl: Rtnl): Promise<RaDefaultRoute[]> {
  const out: RaDefaultRoute[] = []
  for (const r of raDefaults(await listRoutes(rtnl, 6))) {
    // A multipath default route (several routers) carries its devices in nested nexthops, which
    // the dump decoder does not expand: such a route is not checked.
    if (r.oif === undefined) continue
    const link = await linkByIndex(rtnl, r.oif)
    if (link) out.push(r.gateway ? { ifname: link.name, gateway: r.gateway } : { ifname: link.name })
  }
  return out
}
