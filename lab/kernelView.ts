// What the lab reads back from the kernel of a node: the routes flatnetd programmed (route
// protocol 200, the daemon's mark) and the pod's interface addresses.
import { runOk } from './exec.js'

/** The route protocol number flatnetd marks its routes with (daemon contract). */
export const FLATNET_ROUTE_PROTOCOL = 200

export interface PeerRoute {
  /** e.g. 10.244.1.0/24 */
  dst: string
  /** The peer's node IP. */
  gateway?: string
}

/** `ip -n NETNS route show proto 200`: the routes to other nodes' subnets. */
export async function peerRoutes(netns: string): Promise<PeerRoute[]> {
  const { stdout } = await runOk(['ip', '-n', netns, '-4', '-j', 'route', 'show', 'table', 'main', 'proto', String(FLATNET_ROUTE_PROTOCOL)], {
    what: `list flatnet routes in ${netns}`,
  })
  const raw = JSON.parse(stdout.trim() || '[]') as Array<{ dst: string; gateway?: string }>
  return raw.map((r) => ({ dst: r.dst, gateway: r.gateway })).sort((a, b) => (a.dst < b.dst ? -1 : a.dst > b.dst ? 1 : 0))
}

/** IPv4 addresses (`a.b.c.d/len`) of one interface in a namespace. */
export async function interfaceAddresses(netns: string, ifname: string): Promise<string[]> {
  const { stdout } = await runOk(['ip', '-n', netns, '-4', '-j', 'address', 'show', 'dev', ifname], { what: `read addresses of ${ifname} in ${netns}` })
  const raw = JSON.parse(stdout.trim() || '[]') as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>
  return raw.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`))
}
