// The NetworkPolicy semantics of shared/NETPOL.md as a plain predicate over the objects, for
// randomized tests: would a new connection from one end to another be allowed? Written from the
// checklist, independently of compile.ts (its own selector matching, no sets, no interning), so a
// test comparing it with the kernel compares two readings of the rules. NETPOL.md points in brackets.
import type { INamespace, IPod } from 'kubernetes-models/v1'
import type { INetworkPolicy, INetworkPolicyPeer, INetworkPolicyPort } from 'kubernetes-models/networking.k8s.io/v1'
import { parseAddress, parseCidr } from '../../../ipam/index.js'

type Selector = NonNullable<INetworkPolicyPeer['podSelector']>
type Labels = Record<string, string>

/** One end of a connection: a pod (by its object) or a bare address. */
export type End = { pod: IPod; address: string } | { address: string }

export interface OracleObjects {
  namespaces: readonly INamespace[]
  pods: readonly IPod[]
  policies: readonly INetworkPolicy[]
}

const hasKey = (labels: Labels, key: string) => Object.prototype.hasOwnProperty.call(labels, key)

/** [9] matchLabels AND matchExpressions; NotIn and DoesNotExist match a missing key; {} matches all. */
export function matches(sel: Selector | undefined, labels: Labels): boolean {
  if (!sel) return true
  for (const [key, value] of Object.entries(sel.matchLabels ?? {})) if (labels[key] !== value) return false
  for (const e of sel.matchExpressions ?? []) {
    const has = hasKey(labels, e.key)
    const values = e.values ?? []
    if (e.operator === 'In' && !(has && values.includes(labels[e.key]!))) return false
    if (e.operator === 'NotIn' && has && values.includes(labels[e.key]!)) return false
    if (e.operator === 'Exists' && !has) return false
    if (e.operator === 'DoesNotExist' && has) return false
  }
  return true
}

/** [4] policyTypes defaulting. */
function types(p: INetworkPolicy): string[] {
  const given = p.spec?.policyTypes ?? []
  if (given.length) return given
  return p.spec?.egress?.length ? ['Ingress', 'Egress'] : ['Ingress']
}

function inCidr(address: string, cidr: string): boolean {
  const a = parseAddress(address)
  const c = parseCidr(cidr)
  return a.family === c.family && a.value >= c.network && a.value < c.network + (1n << BigInt((c.family === 4 ? 32 : 128) - c.prefixLength))
}

function namespaceLabels(objects: OracleObjects, name: string): Labels {
  const ns = objects.namespaces.find((n) => n.metadata?.name === name)
  return { ...(ns?.metadata?.labels ?? {}), 'kubernetes.io/metadata.name': name } // [18]
}

/** [8, 10] Does `peer`, of a policy in `policyNs`, match the other end? */
function peerMatches(objects: OracleObjects, policyNs: string, peer: INetworkPolicyPeer, other: End): boolean {
  if (peer.ipBlock) return inCidr(other.address, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((e) => inCidr(other.address, e))
  if (!('pod' in other)) return false // selectors match pods only
  const ns = other.pod.metadata?.namespace ?? 'default'
  if (peer.namespaceSelector) {
    if (!matches(peer.namespaceSelector, namespaceLabels(objects, ns))) return false
  } else if (ns !== policyNs) return false
  return matches(peer.podSelector, other.pod.metadata?.labels ?? {})
}

/** [11] Does a rule's ports list allow `protocol`/`port` on the destination `dst`? */
function portsMatch(ports: readonly INetworkPolicyPort[] | undefined, dst: End, protocol: 'TCP' | 'UDP', port: number): boolean {
  if (!ports || ports.length === 0) return true
  return ports.some((p) => {
    if ((p.protocol ?? 'TCP') !== protocol) return false
    if (p.port === undefined) return true
    if (typeof p.port === 'number') return port >= p.port && port <= (p.endPort ?? p.port)
    if (!('pod' in dst)) return false // a named port resolves on the destination pod
    return (dst.pod.spec?.containers ?? []).some((c) => (c.ports ?? []).some((cp) => cp.name === p.port && (cp.protocol ?? 'TCP') === protocol && cp.containerPort === port))
  })
}

/** [1, 2, 6, 7] Whether `direction` of the pod `self` allows the connection with `other` (true when not isolated). */
function sideAllows(objects: OracleObjects, direction: 'Ingress' | 'Egress', self: IPod, other: End, dst: End, protocol: 'TCP' | 'UDP', port: number): boolean {
  const ns = self.metadata?.namespace ?? 'default'
  const selecting = objects.policies.filter((p) => (p.metadata?.namespace ?? 'default') === ns && types(p).includes(direction) && matches(p.spec?.podSelector, self.metadata?.labels ?? {}))
  if (selecting.length === 0) return true
  return selecting.some((p) =>
    ((direction === 'Ingress' ? p.spec?.ingress : p.spec?.egress) ?? []).some((rule) => {
      const peers = direction === 'Ingress' ? (rule as { from?: INetworkPolicyPeer[] }).from : (rule as { to?: INetworkPolicyPeer[] }).to
      const peerOk = !peers || peers.length === 0 || peers.some((peer) => peerMatches(objects, ns, peer, other))
      return peerOk && portsMatch(rule.ports, dst, protocol, port)
    }),
  )
}

/**
 * [3] A new connection is allowed when the source's egress and the destination's ingress both
 * allow it. `enforced` names the sides checked (a test node enforces only its own pods' sides).
 */
export function connectionAllowed(
  objects: OracleObjects,
  from: End,
  to: End,
  protocol: 'TCP' | 'UDP',
  port: number,
  enforced: { egress: boolean; ingress: boolean } = { egress: true, ingress: true },
): boolean {
  if (enforced.egress && 'pod' in from && !sideAllows(objects, 'Egress', from.pod, to, to, protocol, port)) return false
  if (enforced.ingress && 'pod' in to && !sideAllows(objects, 'Ingress', to.pod, from, to, protocol, port)) return false
  return true
}
