// The network state one pod attachment leaves in the kernel, read back from the kernel and
// normalized: the pod's address becomes POD, the gateway GW, the range RANGE, the host-side veth
// HOSTVETH. Two plugins that wire a pod the same way give equal normalized states even though
// they used different ranges and host veth names.
import { addresses, links, routeGet, routes, type Netns, type RouteState } from '../helpers/index.js'

export interface Placeholders {
  pod: string
  gateway: string
  range: string
  hostVeth: string
}

export interface LinkView {
  name: string
  kind: string | undefined
  up: boolean
  operstate: string
  mtu: number
}

export interface RouteView {
  dst: string
  gateway: string | undefined
  dev: string | undefined
  type: string | undefined
}

export interface LookupView {
  gateway: string | undefined
  dev: string
  prefsrc: string | undefined
}

export interface PodState {
  links: LinkView[]
  /** per interface, IPv4 `address/len` */
  addresses: Record<string, string[]>
  routes: RouteView[]
  /** scope of each route, by its normalized dst: kept apart because ptp and flatnet may differ */
  scopes: Record<string, string>
  /** `ip route get` for the gateway, another address of the range, and an address outside it */
  lookups: { gateway: LookupView; inRange: LookupView; outside: LookupView }
}

export interface HostState {
  hostVeth: LinkView | undefined
  /** IPv4 of the host veth */
  addresses: string[]
  /** main-table routes through the host veth */
  routes: RouteView[]
  /** how the host reaches the pod */
  toPod: LookupView
}

/** A pod address other than the pod's own, inside the range (for lookups; nothing is sent). */
export function otherInRange(range: string): string {
  return range.replace(/\.0\/24$/, '.77')
}

/** An address outside every test range (TEST-NET-2); only looked up, never sent to. */
export const OUTSIDE = '198.51.100.7'

export function normalizer(p: Placeholders): (s: string | undefined) => string | undefined {
  const pairs: Array<[string, string]> = [
    [p.range, 'RANGE'],
    [otherInRange(p.range), 'OTHER'],
    [p.pod, 'POD'],
    [p.gateway, 'GW'],
    [p.hostVeth, 'HOSTVETH'],
  ]
  return (s) => {
    if (s === undefined) return undefined
    for (const [from, to] of pairs) {
      if (s === from) return to
      if (s.startsWith(`${from}/`)) return `${to}${s.slice(from.length)}`
    }
    return s
  }
}

function routeView(r: RouteState, n: (s: string | undefined) => string | undefined): RouteView {
  return { dst: n(r.dst)!, gateway: n(r.gateway), dev: n(r.dev), type: r.type }
}

function byDst(a: RouteView, b: RouteView): number {
  return a.dst.localeCompare(b.dst)
}

export async function podState(ns: Netns, p: Placeholders): Promise<PodState> {
  const n = normalizer(p)
  const linkList = await links(ns)
  const addrs = await addresses(ns)
  const rs = await routes(ns)
  const lookup = async (address: string): Promise<LookupView> => {
    const r = await routeGet(address, ns)
    return { gateway: n(r.gateway), dev: r.dev, prefsrc: n(r.prefsrc) }
  }
  return {
    links: linkList.map((l) => ({ name: l.ifname, kind: l.kind, up: l.flags.includes('UP'), operstate: l.operstate, mtu: l.mtu })).sort((a, b) => a.name.localeCompare(b.name)),
    addresses: Object.fromEntries([...addrs.entries()].map(([name, list]) => [name, list.filter((a) => a.family === 'inet').map((a) => n(`${a.local}/${a.prefixlen}`)!)])),
    routes: rs.map((r) => routeView(r, n)).sort(byDst),
    scopes: Object.fromEntries(rs.map((r) => [n(r.dst)!, r.scope ?? 'global'])),
    lookups: { gateway: await lookup(p.gateway), inRange: await lookup(otherInRange(p.range)), outside: await lookup(OUTSIDE) },
  }
}

export async function hostState(p: Placeholders): Promise<HostState> {
  const n = normalizer(p)
  const veth = (await links()).find((l) => l.ifname === p.hostVeth)
  const addrs = (await addresses()).get(p.hostVeth) ?? []
  const toPod = await routeGet(p.pod)
  return {
    hostVeth: veth && { name: n(veth.ifname)!, kind: veth.kind, up: veth.flags.includes('UP'), operstate: veth.operstate, mtu: veth.mtu },
    addresses: addrs.filter((a) => a.family === 'inet').map((a) => n(`${a.local}/${a.prefixlen}`)!),
    routes: (await routes())
      .filter((r) => r.dev === p.hostVeth)
      .map((r) => routeView(r, n))
      .sort(byDst),
    toPod: { gateway: n(toPod.gateway), dev: n(toPod.dev)!, prefsrc: n(toPod.prefsrc) },
  }
}
