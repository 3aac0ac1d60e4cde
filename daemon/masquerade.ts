// Masquerade of pod traffic leaving the cluster range, in an nftables table of flatnet's own
// (`ip flatnet`), so it never edits anyone else's rules and can be removed whole. Pure desired
// state; the reconciler that applies it is reconcilers/masquerade.ts, through net/nft.ts.
//
// The rule is "source in the cluster range, destination outside it → masquerade":
// - pod → pod, on this node or any other, has both ends in the cluster range: never NATed, so the
//   receiver sees the sender's own address (the Kubernetes network model);
// - pod → this node's own addresses is delivered locally and never passes the postrouting hook;
// - pod → anything else leaves with the node's address, which the outside can answer.
//
// The table is replaced in one `nft -f -` transaction (create-if-missing, delete, create): there
// is never a moment without the rule, and never two versions of it.
import type { Cidr } from '../ipam/index.js'
import { NftTransaction, renderNftTable, type NftFamily, type NftTable, type NftTableState } from '../net/nft.js'

export const MASQUERADE_TABLE = 'flatnet'

export function masqueradeFamily(family: 4 | 6): NftFamily {
  return family === 4 ? 'ip' : 'ip6'
}

/** The table flatnet wants for this cluster range. */
export function masqueradeTable(cluster: Cidr): NftTable {
  const addr = cluster.family === 4 ? 'ip' : 'ip6'
  return {
    family: masqueradeFamily(cluster.family),
    name: MASQUERADE_TABLE,
    chains: [
      {
        name: 'postrouting',
        // srcnat (100) is the standard priority of source NAT in the postrouting hook.
        base: { type: 'nat', hook: 'postrouting', priority: 'srcnat', policy: 'accept' },
        rules: [`${addr} saddr ${cluster.text} ${addr} daddr != ${cluster.text} masquerade`],
      },
    ],
  }
}

/** The whole table, as nft will list it back. */
export function renderMasqueradeTable(cluster: Cidr): string {
  return renderNftTable(masqueradeTable(cluster))
}

/** One transaction that leaves exactly the rendered table in place, whatever was there before. */
export function masqueradeInstallScript(cluster: Cidr): string {
  return new NftTransaction().replaceTable(masqueradeTable(cluster)).text()
}

/** One transaction that removes the table, and succeeds when there is none. */
export function masqueradeRemoveScript(family: 4 | 6): string {
  return new NftTransaction().removeTable(masqueradeFamily(family), MASQUERADE_TABLE).text()
}

/**
 * The table as `nft -j list table` shows it once installed (handles dropped): what a read-back is
 * compared with, structurally, to decide whether it needs rebuilding.
 */
export function masqueradeState(cluster: Cidr): NftTableState {
  const proto = cluster.family === 4 ? 'ip' : 'ip6'
  const [addr, len] = [cluster.text.split('/')[0]!, Number(cluster.text.split('/')[1])]
  const range = { prefix: { addr, len } }
  return {
    chains: [{ name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' }],
    sets: [],
    maps: [],
    rules: [
      {
        chain: 'postrouting',
        expr: [
          { match: { op: '==', left: { payload: { protocol: proto, field: 'saddr' } }, right: range } },
          { match: { op: '!=', left: { payload: { protocol: proto, field: 'daddr' } }, right: range } },
          { masquerade: null },
        ],
      },
    ],
  }
}
