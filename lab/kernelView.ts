// What the lab reads back from the kernel of a node: the routes flatnetd programmed (route
// protocol 200, the daemon's mark) and the pod's interface addresses.
import { runOk } from './exec.js'

/** The route protocol number flatnetd marks its routes with (daemon contract). */
export const FLATNET_ROUTE_PROTOCOL = 200

export interface PeerRoute {
  /** e.g. 10.244.1.0/24 */
  dst: string
  /** The peer's node IP (host-gw), or the peer subnet's network address (VXLAN, onlink). */
  gateway?: string
  /** The device the route leaves by: the node's uplink (host-gw) or flatnet's VXLAN device. */
  dev?: string
}

/** How a node reaches a peer's subnet, as read from the route it programmed; `none`: no route. */
export type PeerBackend = 'host-gw' | 'vxlan' | 'none'

/** flatnetd's VXLAN devices: `flatnet.vxlan` (IPv4 underlay) and its IPv6 sibling, e.g. `flatnet.vxlan6`. */
export const VXLAN_DEVICE_PREFIX = 'flatnet.vxlan'

/** A route via flatnet's VXLAN device is the overlay; any other flatnet route to a peer is host-gw. */
export function backendOfRoute(route: PeerRoute | undefined): PeerBackend {
  if (!route) return 'none'
  return route.dev?.startsWith(VXLAN_DEVICE_PREFIX) ? 'vxlan' : 'host-gw'
}

/**
 * `ip -n NETNS -4|-6 route show proto 200`: the routes to other nodes' subnets, of both families
 * (iproute2 lists one family per call), IPv4 first, each family sorted by destination; each with
 * the device it leaves by (flatnetRoutes), or only destination and gateway (peerRoutes, the shape
 * the tests of flat labs compare).
 */
export async function flatnetRoutes(netns: string): Promise<PeerRoute[]> {
  const lists = await Promise.all(
    (['-4', '-6'] as const).map(async (family) => {
      const { stdout } = await runOk(['ip', '-n', netns, family, '-j', 'route', 'show', 'table', 'main', 'proto', String(FLATNET_ROUTE_PROTOCOL)], {
        what: `list flatnet ${family === '-4' ? 'IPv4' : 'IPv6'} routes in ${netns}`,
      })
      const raw = JSON.parse(stdout.trim() || '[]') as Array<{ dst: string; gateway?: string; dev?: string }>
      return raw.map((r) => ({ dst: r.dst, gateway: r.gateway, dev: r.dev })).sort(byDestination)
    }),
  )
  return lists.flat()
}

export async function peerRoutes(netns: string): Promise<PeerRoute[]> {
  return (await flatnetRoutes(netns)).map((r) => ({ dst: r.dst, gateway: r.gateway }))
}

export function byDestination(a: PeerRoute, b: PeerRoute): number {
  return a.dst < b.dst ? -1 : a.dst > b.dst ? 1 : 0
}

/**
 * Addresses (`address/len`) of one interface in a namespace: IPv4, or IPv6 without the link-local
 * fe80::/64 every interface gets on its own (the kernel's, not the plugin's).
 */
export async function interfaceAddresses(netns: string, ifname: string, family: 4 | 6 = 4): Promise<string[]> {
  const { stdout } = await runOk(['ip', '-n', netns, `-${family}`, '-j', 'address', 'show', 'dev', ifname], { what: `read IPv${family} addresses of ${ifname} in ${netns}` })
  const raw = JSON.parse(stdout.trim() || '[]') as Array<{ addr_info?: Array<{ local: string; prefixlen: number; scope?: string }> }>
  return raw.flatMap((l) => (l.addr_info ?? []).filter((a) => family === 4 || a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`))
}
