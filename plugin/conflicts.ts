// What ADD refuses before it changes anything, because going ahead would take something that is
// not this attachment's: another attachment's live veth, a route or address someone else put on
// the host, a pod whose routing another interface already owns. Each refusal names the object
// in the way and who holds it; nothing here modifies the kernel.
import type { IpFamily } from '../net/ipbytes.js'
import { exactRoute, linkByIndex, linkByName, listAddresses, listLinks, listRoutes, type LinkInfo, type RouteInfo, type Rtnl } from '../net/rtnl.js'
import { CniError, Code } from './errors.js'
import { networkOfAlias, POD_ROUTE_PROTOCOL, type PodAddress } from './wiring.js'

async function linkText(s: Rtnl, index: number | undefined): Promise<string> {
  if (!index) return 'no device'
  const link = await linkByIndex(s, index)
  return link ? `dev ${link.name}${link.alias ? ` (${link.alias})` : ''}` : `dev #${index}`
}

async function routeText(s: Rtnl, r: RouteInfo): Promise<string> {
  const type = ({ 1: '', 6: 'blackhole ', 7: 'unreachable ', 8: 'prohibit ' } as Record<number, string>)[r.type] ?? `type ${r.type} `
  return `${type}${r.dst}/${r.dstLength}${r.gateway ? ` via ${r.gateway}` : ''} ${await linkText(s, r.oif)} proto ${r.protocol}`
}

/**
 * The host end's name is derived from container ID and interface, so an existing one is this
 * attachment's name in use. The kernel deletes both ends of a veth together (an end never
 * outlives its peer, and a namespace's teardown takes its ends with it), so an existing host end
 * always has a live pod end — and it is not in this pod, whose `ifname` was just found absent:
 * the same container ID and interface are attached in another namespace. Deleting it would cut
 * that pod off; refuse and name both.
 */
export async function refuseHostVethInUse(host: Rtnl, hostVeth: string, want: { containerId: string; ifname: string; netns: string }): Promise<void> {
  const link = await linkByName(host, hostVeth)
  if (!link) return
  const where = link.peerNetnsId !== undefined ? `in another network namespace (netnsid ${link.peerNetnsId}, ifindex ${link.peerIndex ?? '?'})` : 'in the host namespace'
  throw new CniError(
    Code.interfaceExists,
    `attach ${want.containerId}/${want.ifname} to ${want.netns}: host veth ${hostVeth} already exists${link.alias ? ` (${link.alias})` : ''} with its pod end ${where}; ` +
      `that attachment is live — DEL it first`,
  )
}

/**
 * The pod gets a default route and a /32 (/128) route to the gateway through `ifname`; the kernel
 * refuses both with EEXIST when the pod already has them (a second flatnet interface, or another
 * plugin's default route). flatnet wires one interface per pod: say so up front, naming the
 * interface that holds the route, instead of failing halfway with an I/O error.
 */
export async function refusePodRoutesTaken(pod: Rtnl, ifname: string, addresses: readonly { family: IpFamily; gateway: string }[]): Promise<void> {
  for (const { family, gateway } of addresses) {
    const bits = family === 4 ? 32 : 128
    const taken = (await listRoutes(pod, family)).find((r) => r.dstLength === 0 || (r.dst === gateway && r.dstLength === bits))
    if (taken) {
      const what = taken.dstLength === 0 ? `a default route (${await routeText(pod, taken)})` : `a route to the gateway ${gateway} (${await routeText(pod, taken)})`
      throw new CniError(Code.podRoutingTaken, `attach ${ifname}: the pod already has ${what}; flatnet wires one interface per pod and gives it the default route`)
    }
  }
}

function isFlatnetHostVeth(link: LinkInfo | undefined): boolean {
  return link?.kind === 'veth' && networkOfAlias(link.alias) !== undefined
}

/**
 * Before the host side is wired: the gateway may already sit on the host only on flatnet's own
 * host veths (every one of them holds it); anywhere else — a range overlapping the node network
 * whose .1 is the node's router or the node's own address — the host would answer for that
 * address on two links. The pod address must not be an address of the host, and the host must
 * have no route to it already: a /32 route someone else made (or another live attachment's)
 * would be replaced by the pod's and then deleted with it. Each one is named.
 */
export async function refuseHostConflicts(host: Rtnl, addresses: readonly PodAddress[]): Promise<void> {
  const hostAddresses = await listAddresses(host)
  // Every flatnet host veth on the node holds the gateway, so the holders are as many as the
  // node's pods: one link dump names them all (a GETLINK per holder made ADD's cost grow with the
  // pods on the node, 6 ms at 240 pods, twice over for dual-stack).
  const gateways = new Set(addresses.map((p) => p.gateway))
  const holders = hostAddresses.filter((x) => gateways.has(x.address))
  const links = holders.length ? new Map((await listLinks(host)).map((l) => [l.index, l])) : new Map<number, LinkInfo>()
  for (const p of addresses) {
    for (const a of holders.filter((x) => x.address === p.gateway)) {
      const link = links.get(a.index)
      // Gone since the dump: a concurrent DEL removed that attachment's host veth, and the
      // address went with it (seen in the 16-way churn: 75 of 500 ADDs refused before this).
      if (!link) continue
      if (!isFlatnetHostVeth(link)) {
        throw new CniError(
          Code.invalidConfig,
          `gateway ${p.gateway} of the pod range is already an address of the host (${a.address}/${a.prefixLength} on ${link.name}): the range overlaps a host network; choose a range the host does not use`,
        )
      }
    }
    const own = hostAddresses.find((x) => x.address === p.address)
    if (own) throw new CniError(Code.addressUnavailable, `pod address ${p.address} is already an address of the host (${own.address}/${own.prefixLength} ${await linkText(host, own.index)})`)
    const route = await exactRoute(host, p.family, p.address)
    if (route) {
      const whose = route.protocol === POD_ROUTE_PROTOCOL ? 'another flatnet attachment holds it' : 'flatnet did not make it'
      throw new CniError(Code.addressUnavailable, `pod address ${p.address} already has a host route (${await routeText(host, route)}): ${whose}; it is left alone`)
    }
  }
}
