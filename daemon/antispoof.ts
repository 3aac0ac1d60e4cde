// Anti-spoofing: a pod may send only with a source address of its own, in either family. Pure
// desired state (one constant table); the reconciler that applies it is reconcilers/antispoof.ts.
//
// IPv4 has rp_filter, IPv6 has no equivalent, and rp_filter is a host-wide sysctl that flatnet
// does not own. So one nftables rule serves both families, in a table of flatnet's own
// (`inet flatnet-antispoof`), on flatnet's host veths only (`iifname "fn*"`: the plugin names the
// host end of every pod veth "fn" + 13 hex digits, plugin/wiring.ts hostVethName):
//
//   fib saddr . iif oif missing drop
//
// "Is there a route back to this source through the interface it came in on?" The plugin adds a
// host route `<pod address>/32|/128 dev <host veth>` for each address of the pod, so the pod's own
// addresses pass, and any other source — a neighbour pod's (routed through its own veth), another
// node's, the outside's (routed through the uplink), the other family's unassigned range — has no
// route through that veth and is dropped. Link-local sources pass where the host veth has its
// fe80::/64 route.
//
// Exempt: IPv6 neighbour discovery a pod needs to reach its gateway — router solicitation (133),
// neighbour solicitation (135) and advertisement (136) — whatever their source, because DAD and
// early solicitations are sent from the unspecified address `::`, which no route covers. The
// exemption is bounded so that it cannot carry a forged packet anywhere: hop limit 255 (RFC 4861
// §7.1.1: every valid ND message has it, and a receiver discards any other) and a destination
// that is this host itself or a multicast group (`fib daddr . iif type local|multicast`), so the
// exempted packet is never forwarded. Router advertisements (134) and redirects (137) are not
// exempt: a pod is never a router on its link.
//
// Base chain at priority raw (-300): before connection tracking (-200), so a forged packet never
// creates a conntrack entry, and before any NAT or policy table sees it.
//
// The fib rule costs every packet from a pod a route lookup, and IPv6's is the dear one: in the
// lab, removing the table raised IPv6 forwarding by 6-11% (TCP) and ~15% (small UDP packets),
// IPv4 by 2-4% (README, "The data plane"). So the chain first looks the packet up in a set of the pairs that lookup
// would accept anyway — `iif . saddr` of every host route the plugin made (protocol 201,
// `<pod address> dev <host veth>`) — and accepts those at once; the fib rule judges the rest.
// The set changes nothing about what passes: a pair is a route back through that very veth, and
// a pair whose veth is gone names an interface index the kernel does not reuse (it allocates
// them cyclically), so no packet can match it. A pod the daemon has not listed yet (ADD just
// returned, flatnetd down) is judged by the fib rule alone, as before.
import { NftTransaction, type NftTable, type NftTableState } from '../net/nft.js'
import type { IpFamily } from '../net/ipbytes.js'
import type { RouteInfo } from '../net/rtnl.js'
import { POD_ROUTE_PROTOCOL } from '../plugin/wiring.js'

export const ANTISPOOF_FAMILY = 'inet'
export const ANTISPOOF_TABLE = 'flatnet-antispoof'
/** The host veths of pods: plugin/wiring.ts hostVethName is `fn` + 13 hex digits. */
export const HOST_VETH_PATTERN = 'fn*'

const NEIGHBOUR_DISCOVERY = ['nd-router-solicit', 'nd-neighbor-solicit', 'nd-neighbor-advert'] as const

/** A pod's source address and the host veth (interface index) it may arrive on. */
export interface PodSource {
  index: number
  address: string
}

/** Per family, the pairs the fib rule would accept: from the plugin's host routes. */
export type PodSources = Record<IpFamily, PodSource[]>

export const podSourcesSet = (f: IpFamily) => `pod-sources-v${f}`
const sourceField = (f: IpFamily) => (f === 4 ? 'ip saddr' : 'ip6 saddr')
/** An element as nft takes it: an interface index stays valid after its link is gone (nft resolves names only while the link exists). */
export const podSourceElement = (p: PodSource) => `${p.index} . ${p.address}`

/** The host routes of pods: protocol 201, one address (/32 or /128) through one interface. */
export function podSourcesOf(routes: readonly RouteInfo[]): PodSource[] {
  const out: PodSource[] = []
  for (const r of routes) if (r.protocol === POD_ROUTE_PROTOCOL && r.oif && r.dstLength === (r.family === 4 ? 32 : 128)) out.push({ index: r.oif, address: r.dst })
  return out
}

/** The whole table: constant rules, and the pod sources known at this sync. */
export function antispoofTable(sources: PodSources = { 4: [], 6: [] }): NftTable {
  return {
    family: ANTISPOOF_FAMILY,
    name: ANTISPOOF_TABLE,
    sets: ([4, 6] as const).map((f) => ({ name: podSourcesSet(f), type: `iface_index . ipv${f}_addr`, elements: sources[f].map(podSourceElement) })),
    chains: [
      {
        name: 'prerouting',
        base: { type: 'filter', hook: 'prerouting', priority: 'raw', policy: 'accept' },
        rules: [
          ...([4, 6] as const).map((f) => `iif . ${sourceField(f)} @${podSourcesSet(f)} accept`),
          `iifname "${HOST_VETH_PATTERN}" icmpv6 type { ${NEIGHBOUR_DISCOVERY.join(', ')} } ip6 hoplimit 255 fib daddr . iif type { local, multicast } accept`,
          `iifname "${HOST_VETH_PATTERN}" fib saddr . iif oif missing drop`,
        ],
      },
    ],
  }
}

/** One transaction that leaves exactly the table in place, whatever was there before. */
export function antispoofInstallScript(sources?: PodSources): string {
  return new NftTransaction().replaceTable(antispoofTable(sources)).text()
}

/**
 * The table as `nft -j list table` shows it once installed (nft 1.0.6, handles dropped), set
 * elements left out: they are compared by podSourcesListed.
 */
export function antispoofState(): NftTableState {
  const onHostVeth = { match: { op: '==', left: { meta: { key: 'iifname' } }, right: HOST_VETH_PATTERN } }
  return {
    chains: [{ name: 'prerouting', type: 'filter', hook: 'prerouting', prio: -300, policy: 'accept' }],
    sets: ([4, 6] as const).map((f) => ({ name: podSourcesSet(f), type: ['iface_index', `ipv${f}_addr`] })),
    maps: [],
    rules: [
      ...([4, 6] as const).map((f) => ({
        chain: 'prerouting',
        expr: [
          {
            match: {
              op: '==',
              left: { concat: [{ meta: { key: 'iif' } }, { payload: { protocol: `ip${f === 4 ? '' : '6'}`, field: 'saddr' } }] },
              right: `@${podSourcesSet(f)}`,
            },
          },
          { accept: null },
        ],
      })),
      {
        chain: 'prerouting',
        expr: [
          onHostVeth,
          { match: { op: '==', left: { payload: { protocol: 'icmpv6', field: 'type' } }, right: { set: [...NEIGHBOUR_DISCOVERY] } } },
          { match: { op: '==', left: { payload: { protocol: 'ip6', field: 'hoplimit' } }, right: 255 } },
          { match: { op: '==', left: { fib: { result: 'type', flags: ['daddr', 'iif'] } }, right: { set: ['local', 'multicast'] } } },
          { accept: null },
        ],
      },
      {
        chain: 'prerouting',
        expr: [onHostVeth, { match: { op: '==', left: { fib: { result: 'oif', flags: ['saddr', 'iif'] } }, right: false } }, { drop: null }],
      },
    ],
  }
}

/**
 * The elements of a listed pod-sources set as `index . address`. nft -j lists the interface by
 * name while the link exists and by its number, as a string, once it is gone; `indexOf` maps
 * names back. Anything else is kept as listed, so that it differs from every wanted element.
 */
export function podSourcesListed(elem: unknown, indexOf: (name: string) => number | undefined): string[] {
  if (!Array.isArray(elem)) return []
  return elem.map((e) => {
    const pair = (e as { concat?: unknown[] }).concat
    if (!Array.isArray(pair) || pair.length !== 2) return JSON.stringify(e)
    const [link, address] = pair
    const index = typeof link === 'number' ? link : typeof link === 'string' ? (indexOf(link) ?? (/^\d+$/.test(link) ? Number(link) : undefined)) : undefined
    return `${index ?? JSON.stringify(link)} . ${String(address)}`
  })
}
