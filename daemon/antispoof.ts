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
import { NftTransaction, type NftTable, type NftTableState } from '../net/nft.js'

export const ANTISPOOF_FAMILY = 'inet'
export const ANTISPOOF_TABLE = 'flatnet-antispoof'
/** The host veths of pods: plugin/wiring.ts hostVethName is `fn` + 13 hex digits. */
export const HOST_VETH_PATTERN = 'fn*'

const NEIGHBOUR_DISCOVERY = ['nd-router-solicit', 'nd-neighbor-solicit', 'nd-neighbor-advert'] as const

/** The whole table (it depends on nothing: which pod owns which address is in the host routes). */
export function antispoofTable(): NftTable {
  return {
    family: ANTISPOOF_FAMILY,
    name: ANTISPOOF_TABLE,
    chains: [
      {
        name: 'prerouting',
        base: { type: 'filter', hook: 'prerouting', priority: 'raw', policy: 'accept' },
        rules: [
          `iifname "${HOST_VETH_PATTERN}" icmpv6 type { ${NEIGHBOUR_DISCOVERY.join(', ')} } ip6 hoplimit 255 fib daddr . iif type { local, multicast } accept`,
          `iifname "${HOST_VETH_PATTERN}" fib saddr . iif oif missing drop`,
        ],
      },
    ],
  }
}

/** One transaction that leaves exactly the table in place, whatever was there before. */
export function antispoofInstallScript(): string {
  return new NftTransaction().replaceTable(antispoofTable()).text()
}

/** The table as `nft -j list table` shows it once installed (nft 1.0.6, handles dropped). */
export function antispoofState(): NftTableState {
  const onHostVeth = { match: { op: '==', left: { meta: { key: 'iifname' } }, right: HOST_VETH_PATTERN } }
  return {
    chains: [{ name: 'prerouting', type: 'filter', hook: 'prerouting', prio: -300, policy: 'accept' }],
    sets: [],
    maps: [],
    rules: [
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
