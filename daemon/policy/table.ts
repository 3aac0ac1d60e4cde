// The `inet flatnet-policy` table: a PolicyPlan rendered for nftables. Pure; the reconciler
// (../reconcilers/policy.ts) applies it in one `nft -f -` transaction through net/nft.ts.
//
// Shape (one table for both families; `-v4`/`-v6` sets):
// - base chain `forward` (pod ↔ pod and pod ↔ outside: flatnet's pods sit behind host veths and
//   every packet between two pods, on one node or two, is forwarded by a node): replies of
//   allowed connections accepted first (conntrack); protocols NetworkPolicy has no ports for
//   (ICMP, …) accepted; then a packet from a local pod isolated for egress jumps to `egress`
//   (which returns when allowed), and a packet to a local pod isolated for ingress jumps to
//   `ingress`. So a connection between two pods of one node is checked for both, and one
//   between nodes for egress on the source's node and ingress on the destination's.
// - base chain `input` (pod → its own node's addresses): the egress check only.
// - Nothing on output: what the node itself sends (kubelet probes) is never filtered — a pod
//   cannot block its own node — and its replies come back as established traffic.
// - A pod talking to itself by its own address never leaves its network namespace (the address
//   is local there), so no rule here can see it: always allowed.
// Priority `filter` (0): conntrack (-200) has already classified the packet, so `ct state` is
// known; a drop in any base chain of a hook is final, whatever other tables accept.
// Denied new connections are refused, not silently dropped (TCP reset, ICMP administratively
// prohibited for UDP/SCTP), so a client learns at once; each is counted per direction.
import type { NftChain, NftSet, NftTable } from '../../net/nft.js'
import type { IpFamily } from '../../ipam/index.js'
import { FAMILIES, L4_PROTOCOLS, type AllowRule, type Direction, type PolicyPlan } from './plan.js'

export const POLICY_TABLE = 'flatnet-policy'
export const DROP_COUNTERS: Record<Direction, string> = { ingress: 'ingress-drops', egress: 'egress-drops' }

const addr = (f: IpFamily) => (f === 4 ? 'ip' : 'ip6')
const suffix = (f: IpFamily) => `v${f}`
export const isolatedSet = (d: Direction, f: IpFamily) => `${d}-isolated-${suffix(f)}`
export const knownSet = (f: IpFamily) => `local-pods-${suffix(f)}`
export const subnetSet = (f: IpFamily) => `local-subnets-${suffix(f)}`

function addressType(f: IpFamily): string {
  return f === 4 ? 'ipv4_addr' : 'ipv6_addr'
}

function refuse(d: Direction): string[] {
  const counter = `counter name "${DROP_COUNTERS[d]}"`
  return [`meta l4proto tcp ${counter} reject with tcp reset`, `${counter} reject with icmpx admin-prohibited`]
}

function allowRuleText(r: AllowRule): string {
  const a = addr(r.family)
  const [localField, peerField] = r.direction === 'ingress' ? ['daddr', 'saddr'] : ['saddr', 'daddr']
  const parts = [`${a} ${localField} @${r.local}`]
  if (r.peers) parts.push(`${a} ${peerField} @${r.peers}`)
  if (r.ports && 'numeric' in r.ports) parts.push(`meta l4proto . th dport @${r.ports.numeric}`)
  if (r.ports && 'named' in r.ports) parts.push(`${a} daddr . meta l4proto . th dport @${r.ports.named}`)
  // An allowed egress returns to `forward`, where the destination's ingress is checked next.
  parts.push(r.direction === 'ingress' ? 'accept' : 'return')
  const comment = `${r.policy} ${r.direction}[${r.index}]`.slice(0, 120)
  parts.push(`comment ${JSON.stringify(comment)}`)
  return parts.join(' ')
}

/** The rules both base chains start with: replies and port-less protocols pass. */
const PASS = ['ct state established,related accept', `meta l4proto != { ${L4_PROTOCOLS.join(', ')} } accept`]

function unknownRules(plan: PolicyPlan, d: Direction): string[] {
  if (!plan.unknownIsolated[d]) return []
  const field = d === 'ingress' ? 'daddr' : 'saddr'
  return FAMILIES.filter((f) => plan.localSubnets[f].length).flatMap((f) => refuse(d).map((r) => `${addr(f)} ${field} @${subnetSet(f)} ${addr(f)} ${field} != @${knownSet(f)} ${r}`))
}

function jumps(plan: PolicyPlan, d: Direction): string[] {
  const field = d === 'ingress' ? 'daddr' : 'saddr'
  return FAMILIES.filter((f) => plan.isolated[d][f].length).map((f) => `${addr(f)} ${field} @${isolatedSet(d, f)} jump ${d}`)
}

/** The whole table for this plan. */
export function policyTable(plan: PolicyPlan): NftTable {
  const sets: NftSet[] = []
  for (const f of FAMILIES) {
    for (const d of ['ingress', 'egress'] as const) sets.push({ name: isolatedSet(d, f), type: addressType(f), elements: plan.isolated[d][f] })
    sets.push({ name: knownSet(f), type: addressType(f), elements: plan.known[f] })
    sets.push({ name: subnetSet(f), type: addressType(f), flags: ['interval'], elements: plan.localSubnets[f] })
  }
  for (const s of plan.addressSets) sets.push({ name: s.name, type: addressType(s.family), flags: ['interval'], autoMerge: true, elements: s.elements })
  for (const s of plan.portSets) sets.push({ name: s.name, type: 'inet_proto . inet_service', flags: ['interval'], elements: s.elements })
  for (const s of plan.namedPortSets) sets.push({ name: s.name, type: `${addressType(s.family)} . inet_proto . inet_service`, elements: s.elements })
  const chains: NftChain[] = [
    {
      name: 'forward',
      base: { type: 'filter', hook: 'forward', priority: 'filter', policy: 'accept' },
      rules: [...PASS, ...unknownRules(plan, 'egress'), ...unknownRules(plan, 'ingress'), ...jumps(plan, 'egress'), ...jumps(plan, 'ingress')],
    },
    {
      name: 'input',
      base: { type: 'filter', hook: 'input', priority: 'filter', policy: 'accept' },
      rules: [...PASS, ...unknownRules(plan, 'egress'), ...jumps(plan, 'egress')],
    },
    { name: 'egress', rules: [...plan.rules.filter((r) => r.direction === 'egress').map(allowRuleText), ...refuse('egress')] },
    { name: 'ingress', rules: [...plan.rules.filter((r) => r.direction === 'ingress').map(allowRuleText), ...refuse('ingress')] },
  ]
  return { family: 'inet', name: POLICY_TABLE, counters: Object.values(DROP_COUNTERS), sets, chains }
}
