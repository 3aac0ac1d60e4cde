// Masquerade of pod traffic leaving the cluster ranges, in one nftables table of flatnet's own
// (`inet flatnet`: one table serves both families, so IPv4-only, IPv6-only and dual-stack nodes
// own the same single object), so it never edits anyone else's rules and can be removed whole.
// Pure desired state; the reconciler that applies it is reconcilers/masquerade.ts, through
// net/nft.ts.
//
// The rule, per cluster range, is "source in the range, destination outside it → masquerade",
// matched in the range's own family (an `ip` match never sees IPv6 packets, nor `ip6` IPv4 ones):
// - pod → pod, on this node or any other, has both ends in the cluster range: never NATed, so the
//   receiver sees the sender's own address (the Kubernetes network model);
// - pod → this node's own addresses is delivered locally and never passes the postrouting hook;
// - pod → anything else leaves with the node's address of that family, which the outside can
//   answer.
//
// Versions before dual-stack owned `ip flatnet` (IPv4 only). Every install removes it in the same
// transaction that writes `inet flatnet`, so an upgraded node never holds both (two masquerade
// rules would be harmless but are two owners of one concern) and never holds neither.
//
// The table is replaced in one `nft -f -` transaction (create-if-missing, delete, create): there
// is never a moment without the rule, and never two versions of it.
import type { Cidr } from '../ipam/index.js'
import { NftTransaction, renderNftTable, type NftFamily, type NftTable, type NftTableState } from '../net/nft.js'

export const MASQUERADE_TABLE = 'flatnet'
export const MASQUERADE_FAMILY: NftFamily = 'inet'
/** The IPv4-only table of versions before dual-stack, removed by every install and by remove(). */
export const LEGACY_MASQUERADE_TABLE = { family: 'ip', name: 'flatnet' } as const satisfies { family: NftFamily; name: string }

function addrProto(c: Cidr): 'ip' | 'ip6' {
  return c.family === 4 ? 'ip' : 'ip6'
}

/** The table flatnet wants for these cluster ranges (one rule per range, in configuration order). */
export function masqueradeTable(clusters: readonly Cidr[]): NftTable {
  return {
    family: MASQUERADE_FAMILY,
    name: MASQUERADE_TABLE,
    chains: [
      {
        name: 'postrouting',
        // srcnat (100) is the standard priority of source NAT in the postrouting hook.
        base: { type: 'nat', hook: 'postrouting', priority: 'srcnat', policy: 'accept' },
        // The packet mark is cleared before masquerading (kubernetes #88986): a mark set by
        // another component (kube-proxy's masquerade mark) is carried by the kernel into the
        // VXLAN-encapsulated packet, whose outer header was then NATed as well, stalling
        // connections for 63 s. Written as nft lists it back (0x00000000).
        rules: clusters.map((c) => `${addrProto(c)} saddr ${c.text} ${addrProto(c)} daddr != ${c.text} meta mark set 0x00000000 masquerade`),
      },
    ],
  }
}

/** The whole table, as nft will list it back. */
export function renderMasqueradeTable(clusters: readonly Cidr[]): string {
  return renderNftTable(masqueradeTable(clusters))
}

/** One transaction that leaves exactly the rendered table in place, and no legacy table, whatever was there before. */
export function masqueradeInstallScript(clusters: readonly Cidr[]): string {
  return new NftTransaction().removeTable(LEGACY_MASQUERADE_TABLE.family, LEGACY_MASQUERADE_TABLE.name).replaceTable(masqueradeTable(clusters)).text()
}

/** One transaction that removes the table (and the legacy one), and succeeds when there is none. */
export function masqueradeRemoveScript(): string {
  return new NftTransaction().removeTable(LEGACY_MASQUERADE_TABLE.family, LEGACY_MASQUERADE_TABLE.name).removeTable(MASQUERADE_FAMILY, MASQUERADE_TABLE).text()
}

/**
 * The table as `nft -j list table` shows it once installed (handles dropped): what a read-back is
 * compared with, structurally, to decide whether it needs rebuilding.
 */
export function masqueradeState(clusters: readonly Cidr[]): NftTableState {
  return {
    chains: [{ name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' }],
    sets: [],
    maps: [],
    rules: clusters.map((c) => {
      const proto = addrProto(c)
      const range = { prefix: { addr: c.text.split('/')[0]!, len: c.prefixLength } }
      return {
        chain: 'postrouting',
        expr: [
          { match: { op: '==', left: { payload: { protocol: proto, field: 'saddr' } }, right: range } },
          { match: { op: '!=', left: { payload: { protocol: proto, field: 'daddr' } }, right: range } },
          { mangle: { key: { meta: { key: 'mark' } }, value: 0 } },
          { masquerade: null },
        ],
      }
    }),
  }
}
