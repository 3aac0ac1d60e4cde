// The `ip flatnet-services` and `ip6 flatnet-services` tables: a ServicesPlan rendered for
// nftables, whole (the first write, a repair) or as the statements that turn the last written plan
// into the new one (a partial sync: one Service added or changed touches only its chains and map
// elements). Pure; the reconciler applies either in one `nft -f -` transaction.
//
// One table per family, as kube-proxy: every rule then reads `ip …` or `ip6 …` and NAT needs no
// family qualifier; both tables change in the same transaction.
//
// Hooks and priorities (flatnet's other tables: `inet flatnet` masquerade in nat postrouting at
// srcnat, `inet flatnet-policy` in filter forward/input at 0):
// - nat prerouting at dstnat (-100): pods' and outside traffic to cluster/external IPs and node ports.
// - nat output at dstnat (-100): the node's own traffic (node → ClusterIP, node → its NodePort).
// - filter input/forward/output at -110 (before NAT on output, before policy everywhere): new
//   connections to a Service port with no endpoint are rejected (TCP reset, ICMP port
//   unreachable), so a client fails at once instead of timing out.
// - nat postrouting at srcnat (100): a DNATed connection from an endpoint to itself (its
//   `addr . addr` in the set `endpoint-hairpins`) is marked there, then masquerade of the packets
//   marked for it (hairpin, external traffic with externalTrafficPolicy Cluster, clients outside
//   the cluster ranges); the mark is cleared first so nothing downstream sees it.
// NetworkPolicy (filter forward at 0) therefore judges the translated packet: the backend pod's
// address and port, the client's own address.
import { createHash } from 'node:crypto'
import type { IpFamily } from '../../ipam/index.js'
import { NftTransaction, type NftChain, type NftFamily, type NftMap, type NftTable } from '../../net/nft.js'
import { SERVICE_MAPS, SHARED_CHAIN, VERDICT_MAPS, type AffinitySet, type FamilyServices, type ServiceMapName } from './compile.js'

export const SERVICES_TABLE = 'flatnet-services'

/**
 * The packet mark bit that asks for masquerade in nat postrouting. kube-proxy uses 0x4000; a
 * different bit keeps the two from clearing each other's mark where both run during a migration.
 */
export const MASQUERADE_MARK = '0x00001000'

/** The set of `addr . addr` endpoint pairs whose DNATed connections are hairpin (compile.ts). */
export const HAIRPIN_SET = 'endpoint-hairpins'

export const tableFamily = (f: IpFamily): NftFamily => (f === 4 ? 'ip' : 'ip6')
const addrType = (f: IpFamily) => (f === 4 ? 'ipv4_addr' : 'ipv6_addr')
const loopback = (f: IpFamily) => (f === 4 ? '127.0.0.0/8' : '::1')

const VERDICT_MAP_KEYS: Record<(typeof VERDICT_MAPS)[number], (f: IpFamily) => string> = {
  'service-ips': (f) => `${addrType(f)} . inet_proto . inet_service`,
  'service-nodeports': () => 'inet_proto . inet_service',
  'no-endpoint-services': (f) => `${addrType(f)} . inet_proto . inet_service`,
  'no-endpoint-nodeports': () => 'inet_proto . inet_service',
}

/**
 * The endpoint maps. The address maps are declared by `typeof` (their key ends with the index
 * `numgen` draws, which has no named type): `daddr . l4proto . dport . i` or `l4proto . dport . i`
 * → the endpoint's address. The port maps: `daddr . l4proto . dport` or `l4proto . dport` → the
 * endpoints' target port.
 */
function endpointMaps(f: IpFamily): NftMap[] {
  const a = f === 4 ? 'ip' : 'ip6'
  const ipKey = `${a} daddr . meta l4proto . th dport`
  const portKey = 'meta l4proto . th dport'
  return [
    { name: 'endpoint-addresses', typeOf: true, type: `${ipKey} . numgen random mod 1`, valueType: `${a} daddr` },
    { name: 'endpoint-ports', type: `${addrType(f)} . inet_proto . inet_service`, valueType: 'inet_service' },
    { name: 'nodeport-addresses', typeOf: true, type: `${portKey} . numgen random mod 1`, valueType: `${a} daddr` },
    { name: 'nodeport-ports', type: 'inet_proto . inet_service', valueType: 'inet_service' },
  ]
}

/** The chains and sets every table has whatever the Services: hooks, dispatch, masquerade, reject. */
export function skeleton(fam: FamilyServices): NftTable {
  const f = fam.family
  const a = f === 4 ? 'ip' : 'ip6'
  const local = `fib daddr type local ${a} daddr != ${loopback(f)}`
  const chains: NftChain[] = [
    { name: 'mark-for-masquerade', rules: [`meta mark set meta mark | ${MASQUERADE_MARK}`] },
    { name: 'masquerading', rules: [`meta mark & ${MASQUERADE_MARK} == 0 return`, `meta mark set meta mark ^ ${MASQUERADE_MARK}`, 'masquerade fully-random'] },
    { name: 'services', rules: [`${a} daddr . meta l4proto . th dport vmap @service-ips`, `${local} meta l4proto . th dport vmap @service-nodeports`] },
    { name: 'reject-endpointless', rules: ['meta l4proto tcp reject with tcp reset', 'reject'] },
    { name: 'endpoints-check', rules: [`${a} daddr . meta l4proto . th dport vmap @no-endpoint-services`, `${local} meta l4proto . th dport vmap @no-endpoint-nodeports`] },
    { name: 'nat-prerouting', base: { type: 'nat', hook: 'prerouting', priority: 'dstnat' }, rules: ['jump services'] },
    { name: 'nat-output', base: { type: 'nat', hook: 'output', priority: -100 }, rules: ['jump services'] },
    {
      name: 'nat-postrouting',
      base: { type: 'nat', hook: 'postrouting', priority: 'srcnat' },
      rules: [`ct status dnat ${a} saddr . ${a} daddr @${HAIRPIN_SET} jump mark-for-masquerade`, 'jump masquerading'],
    },
    ...(['input', 'forward', 'output'] as const).map((hook) => ({ name: `filter-${hook}`, base: { type: 'filter' as const, hook, priority: -110 }, rules: ['ct state new jump endpoints-check'] })),
  ]
  return {
    family: tableFamily(f),
    name: SERVICES_TABLE,
    sets: [
      { name: 'cluster-ranges', type: addrType(f), flags: ['interval'], elements: fam.clusterRanges },
      { name: HAIRPIN_SET, type: `${addrType(f)} . ${addrType(f)}`, elements: [...fam.hairpins] },
    ],
    maps: [...VERDICT_MAPS.map((m) => ({ name: m, type: VERDICT_MAP_KEYS[m](f), valueType: 'verdict' })), ...endpointMaps(f)],
    chains,
  }
}

/** One Service model's digest: the first four 32-bit words of the SHA-256 of its JSON text. */
export function modelDigest(model: unknown): readonly number[] {
  const d = createHash('sha256').update(JSON.stringify(model)).digest()
  return [0, 4, 8, 12].map((o) => d.readUInt32BE(o))
}

/**
 * A digest of everything the tables are built from (the node's cluster ranges and every Service's
 * model digest), carried by each table as an empty chain `synced-<digest>`: a restarted flatnetd
 * that finds it equal to what it wants knows the table is its own last write and rewrites nothing.
 * The models' digests are summed word by word (mod 2^32), which needs no order and no pass over
 * the models' text: a sync of 10 000 Services hashed every model's JSON again before.
 */
export function inputDigest(clusterRanges: readonly string[], modelDigests: Iterable<readonly number[]>): string {
  const sum = [0, 0, 0, 0]
  let count = 0
  for (const d of modelDigests) {
    for (let i = 0; i < 4; i++) sum[i] = (sum[i]! + d[i]!) >>> 0
    count++
  }
  return createHash('sha256')
    .update(`${clusterRanges.join(',')}\n${count}\n${sum.join(',')}`)
    .digest('hex')
    .slice(0, 32)
}

export const digestChain = (digest: string) => `synced-${digest}`

/**
 * The whole table in one transaction, replacing whatever is there (missing, older, hand-edited):
 * created if missing, deleted, created whole. Affinity entries are lost with it; established
 * connections keep their NAT (conntrack).
 */
export function writeWhole(tx: NftTransaction, fam: FamilyServices, digest: string): void {
  const t = tableFamily(fam.family)
  tx.addTable(t, SERVICES_TABLE).deleteTable(t, SERVICES_TABLE)
  const sk = skeleton(fam)
  // Declared without the base chains first, so no hook sees a half-built table within the script
  // (the kernel commits it all at once anyway), then sets, chains, rules, elements.
  tx.declareTable({ ...sk, chains: sk.chains.filter((c) => !c.base) })
  tx.addChain(t, SERVICES_TABLE, digestChain(digest))
  writeContent(tx, t, fam, [...fam.chains.keys()], [...fam.sets.values()])
  for (const m of SERVICE_MAPS) tx.addElements(t, SERVICES_TABLE, m, elementList(fam, m, [...fam.elements[m].keys()]))
  tx.declareTable({ ...sk, sets: [], maps: [], chains: sk.chains.filter((c) => c.base) })
}

function writeContent(tx: NftTransaction, t: NftFamily, fam: FamilyServices, chains: string[], sets: AffinitySet[]): void {
  for (const s of sets) tx.addSet(t, SERVICES_TABLE, { name: s.name, type: t === 'ip' ? 'ipv4_addr' : 'ipv6_addr', flags: ['dynamic', 'timeout'], timeout: s.timeout })
  for (const c of chains) tx.addChain(t, SERVICES_TABLE, c)
  for (const c of chains) for (const r of fam.chains.get(c)!) tx.addRule(t, SERVICES_TABLE, c, r)
}

const sameRules = (a: readonly string[] | undefined, b: readonly string[]) => a !== undefined && a.length === b.length && a.every((r, i) => r === b[i])

/** `key comment "…" : value`, for nft (the comment only on verdict maps' elements). */
function elementText(fam: FamilyServices, m: ServiceMapName, key: string): string {
  const comment = fam.comments.get(key)
  return comment !== undefined && (VERDICT_MAPS as readonly string[]).includes(m) ? `${key} comment ${JSON.stringify(comment)} : ${fam.elements[m].get(key)!}` : `${key} : ${fam.elements[m].get(key)!}`
}

const elementList = (fam: FamilyServices, m: ServiceMapName, keys: readonly string[]) => keys.map((k) => elementText(fam, m, k))

/** What the table holds of shared `pick-` chains before and after the change (the changed Services' plans alone cannot say). */
export interface SharedChains {
  /** Whether the table holds the chain now. */
  present(name: string): boolean
  /** Whether a Service the change does not touch still uses it. */
  kept(name: string): boolean
}

/**
 * The statements that turn `old` (the plan last written, in the kernel as written) into `now`:
 * new and changed chains rewritten, map elements deleted and added, chains and sets no longer
 * wanted flushed and deleted after nothing points at them. Undefined when the skeleton itself
 * changed (other cluster ranges): then only a whole write will do. `old` and `now` may be the
 * plans of the changed Services only: a hairpin pair they drop stays while `hairpinKept` says
 * another Service still has that endpoint, and a shared `pick-` chain is written only when the
 * table lacks it and dropped only when no other Service uses it (`shared`).
 */
export function writeDifference(
  tx: NftTransaction,
  old: FamilyServices,
  now: FamilyServices,
  oldDigest: string,
  digest: string,
  hairpinKept: (pair: string) => boolean = () => false,
  shared: SharedChains = { present: (name) => old.chains.has(name), kept: () => false },
): boolean | undefined {
  if (old.clusterRanges.join(',') !== now.clusterRanges.join(',')) return undefined
  const t = tableFamily(now.family)
  // A shared chain's rules follow from its name, the family and the cluster ranges: never rewritten.
  const changedChains = [...now.chains].filter(([name, rules]) => (SHARED_CHAIN.test(name) ? !shared.present(name) : !sameRules(old.chains.get(name), rules))).map(([name]) => name)
  const goneChains = [...old.chains.keys()].filter((name) => !now.chains.has(name) && !(SHARED_CHAIN.test(name) && shared.kept(name)))
  const newSets = [...now.sets.values()].filter((s) => !old.sets.has(s.name))
  const goneSets = [...old.sets.keys()].filter((name) => !now.sets.has(name))
  let changed = changedChains.length + goneChains.length + newSets.length + goneSets.length > 0
  for (const c of changedChains) if (old.chains.has(c)) tx.flushChain(t, SERVICES_TABLE, c)
  writeContent(tx, t, now, changedChains, newSets)
  // Elements whose value or comment changed are deleted and added again (nft cannot edit one).
  const differs = (m: ServiceMapName, k: string) => old.elements[m].get(k) !== now.elements[m].get(k) || old.comments.get(k) !== now.comments.get(k)
  for (const m of SERVICE_MAPS) {
    const gone = [...old.elements[m].keys()].filter((k) => differs(m, k))
    const added = [...now.elements[m].keys()].filter((k) => differs(m, k))
    tx.deleteElements(t, SERVICES_TABLE, m, gone)
    tx.addElements(t, SERVICES_TABLE, m, elementList(now, m, added))
    if (gone.length || added.length) changed = true
  }
  const newPairs = [...now.hairpins].filter((h) => !old.hairpins.has(h))
  const gonePairs = [...old.hairpins].filter((h) => !now.hairpins.has(h) && !hairpinKept(h))
  tx.addElements(t, SERVICES_TABLE, HAIRPIN_SET, newPairs)
  tx.deleteElements(t, SERVICES_TABLE, HAIRPIN_SET, gonePairs)
  if (newPairs.length || gonePairs.length) changed = true
  for (const c of goneChains) tx.flushChain(t, SERVICES_TABLE, c)
  for (const c of goneChains) tx.deleteChain(t, SERVICES_TABLE, c)
  for (const s of goneSets) tx.deleteSet(t, SERVICES_TABLE, s)
  if (changed || oldDigest !== digest) {
    tx.addChain(t, SERVICES_TABLE, digestChain(digest))
    if (oldDigest !== digest) tx.deleteChain(t, SERVICES_TABLE, digestChain(oldDigest))
  }
  return changed
}
