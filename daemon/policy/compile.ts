// NetworkPolicy (networking.k8s.io/v1) compiled for one node: pure, over plain Kubernetes
// objects. The semantics (who is isolated, what is allowed) follow the API's documented rules;
// each is cited where it forces the code. Cost: every set is computed once per distinct
// selector (cached by its canonical text) and named ports are one set per (name, protocol), so
// the output grows with pods + policies, never with their product of pod pairs.
import type { INamespace, IPod } from 'kubernetes-models/v1'
import type { INetworkPolicy, INetworkPolicyPeer, INetworkPolicyPort } from 'kubernetes-models/networking.k8s.io/v1'
import { parseCidr, type Cidr, type IpFamily } from '../../ipam/index.js'
import { addressFamily, inSubnets, ipBlockRanges } from './addresses.js'
import { DIRECTIONS, FAMILIES, type Direction, type L4Protocol, type PerFamily, type PolicyPlan } from './plan.js'
import { selectorKey, selectorMatches, type Labels } from './selectors.js'

/** The label the control plane puts on every Namespace (immutable): policies select namespaces by name with it. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name'

export interface PolicyInputs {
  namespaces: readonly INamespace[]
  pods: readonly IPod[]
  policies: readonly INetworkPolicy[]
  /** This node's pod subnets (one per family): a pod is local when one of its addresses is in them. */
  nodeSubnets: readonly string[]
  /**
   * Addresses this node's CNI ADDs gave pods (`namespace/name` → addresses), for pods whose
   * status carries none yet: the pod is then known, with its labels, from its first packet.
   */
  attachments?: ReadonlyMap<string, readonly string[]>
}

/** A pod as policy sees it. */
interface PolicyPod {
  namespace: string
  name: string
  labels: Labels
  addresses: PerFamily<string[]>
  local: boolean
  /** containerPort by `name/PROTOCOL`. */
  namedPorts: Map<string, number>
}

const perFamily = <T>(make: () => T): PerFamily<T> => ({ 4: make(), 6: make() })
const nftProtocol = (p: string | undefined): L4Protocol | undefined => (p === undefined || p === 'TCP' ? 'tcp' : p === 'UDP' ? 'udp' : p === 'SCTP' ? 'sctp' : undefined)

/**
 * The effective policyTypes. The API server defaults an empty list to [Ingress], plus Egress when
 * spec.egress has entries; doing it here too keeps an object written without defaulting right.
 */
export function policyTypes(p: INetworkPolicy): Direction[] {
  const given = p.spec?.policyTypes
  if (given && given.length) return DIRECTIONS.filter((d) => given.includes(d === 'ingress' ? 'Ingress' : 'Egress'))
  return p.spec?.egress?.length ? ['ingress', 'egress'] : ['ingress']
}

function podAddresses(pod: IPod, attachments: PolicyInputs['attachments']): string[] {
  const fromStatus = pod.status?.podIPs?.map((x) => x.ip).filter((x): x is string => !!x) ?? []
  if (fromStatus.length) return fromStatus
  if (pod.status?.podIP) return [pod.status.podIP]
  return [...(attachments?.get(`${pod.metadata?.namespace ?? 'default'}/${pod.metadata?.name ?? ''}`) ?? [])]
}

function policyPods(inputs: PolicyInputs, subnets: readonly Cidr[]): PolicyPod[] {
  const out: PolicyPod[] = []
  for (const pod of inputs.pods) {
    // Host-network pods hold the node's addresses: their traffic is node traffic (ipBlock only).
    if (pod.spec?.hostNetwork) continue
    // A finished pod's address may already belong to a new pod.
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue
    const addresses = perFamily<string[]>(() => [])
    for (const a of podAddresses(pod, inputs.attachments)) {
      const f = addressFamily(a)
      if (f) addresses[f].push(a)
    }
    if (!addresses[4].length && !addresses[6].length) continue
    const namedPorts = new Map<string, number>()
    for (const c of pod.spec?.containers ?? []) {
      for (const p of c.ports ?? []) if (p.name) namedPorts.set(`${p.name}/${p.protocol ?? 'TCP'}`, p.containerPort)
    }
    out.push({
      namespace: pod.metadata?.namespace ?? 'default',
      name: pod.metadata?.name ?? '',
      labels: pod.metadata?.labels ?? {},
      addresses,
      local: [...addresses[4], ...addresses[6]].some((a) => inSubnets(a, subnets)),
      namedPorts,
    })
  }
  return out
}

/** Interns sets by content, so equal sets (equal selectors) are one nft set. */
class SetRegistry<E extends { name: string; elements: string[] }> {
  private readonly byKey = new Map<string, E>()
  readonly all: E[] = []
  constructor(private readonly prefix: string) {}
  intern(key: string, make: (name: string) => E): E {
    let s = this.byKey.get(key)
    if (!s) {
      s = make(`${this.prefix}-${this.all.length}`)
      this.byKey.set(key, s)
      this.all.push(s)
    }
    return s
  }
}

export function compilePolicies(inputs: PolicyInputs): PolicyPlan {
  const subnets = inputs.nodeSubnets.map((s) => parseCidr(s))
  const pods = policyPods(inputs, subnets)
  const podsByNamespace = new Map<string, PolicyPod[]>()
  for (const p of pods) {
    const list = podsByNamespace.get(p.namespace)
    if (list) list.push(p)
    else podsByNamespace.set(p.namespace, [p])
  }
  const namespaceLabels = new Map<string, Labels>()
  for (const ns of inputs.namespaces) {
    const name = ns.metadata?.name
    if (name) namespaceLabels.set(name, { ...ns.metadata?.labels, [NAMESPACE_NAME_LABEL]: name })
  }
  // Pods of a namespace flatnet has no object for still carry its name label (the control plane sets it on every Namespace).
  for (const name of podsByNamespace.keys()) if (!namespaceLabels.has(name)) namespaceLabels.set(name, { [NAMESPACE_NAME_LABEL]: name })

  const plan: PolicyPlan = {
    isolated: { ingress: perFamily(() => []), egress: perFamily(() => []) },
    known: perFamily(() => []),
    localSubnets: perFamily(() => []),
    unknownIsolated: { ingress: false, egress: false },
    addressSets: [],
    portSets: [],
    namedPortSets: [],
    rules: [],
    stats: { policies: inputs.policies.length, podsSelected: 0, rules: 0 },
  }
  for (const s of subnets) plan.localSubnets[s.family].push(s.text)
  for (const p of pods) if (p.local) for (const f of FAMILIES) plan.known[f].push(...p.addresses[f])

  const addressSets = perFamily(() => new SetRegistry<{ name: string; family: IpFamily; elements: string[] }>(''))
  addressSets[4] = new SetRegistry('addr4')
  addressSets[6] = new SetRegistry('addr6')
  const portSets = new SetRegistry<{ name: string; elements: string[] }>('ports')
  const namedSets = perFamily(() => new SetRegistry<{ name: string; family: IpFamily; port: string; protocol: L4Protocol; elements: string[] }>(''))
  namedSets[4] = new SetRegistry('named4')
  namedSets[6] = new SetRegistry('named6')

  const addressSet = (family: IpFamily, addresses: string[]): string | undefined => {
    if (addresses.length === 0) return undefined
    const elements = [...new Set(addresses)].sort()
    return addressSets[family].intern(elements.join(','), (name) => ({ name, family, elements })).name
  }

  // Selected local pods, per (namespace, podSelector).
  const selectedCache = new Map<string, PolicyPod[]>()
  const selectedLocal = (namespace: string, sel: Parameters<typeof selectorMatches>[0]): PolicyPod[] => {
    const key = `${namespace}\n${selectorKey(sel)}`
    let hit = selectedCache.get(key)
    if (!hit) selectedCache.set(key, (hit = (podsByNamespace.get(namespace) ?? []).filter((p) => p.local && selectorMatches(sel, p.labels))))
    return hit
  }

  // Peer addresses, per (policy namespace, peer).
  const peerCache = new Map<string, PerFamily<string[]>>()
  const peerAddresses = (namespace: string, peer: INetworkPolicyPeer): PerFamily<string[]> => {
    const key = peer.ipBlock
      ? `ip\n${peer.ipBlock.cidr}\n${[...(peer.ipBlock.except ?? [])].sort().join(',')}`
      : `sel\n${peer.namespaceSelector ? `*${selectorKey(peer.namespaceSelector)}` : namespace}\n${peer.podSelector ? selectorKey(peer.podSelector) : '-'}`
    let hit = peerCache.get(key)
    if (hit) return hit
    hit = perFamily(() => [])
    if (peer.ipBlock) {
      // A peer is an ipBlock or selectors, never both (validation); an ipBlock matches any address in cidr and in no except.
      const r = ipBlockRanges(peer.ipBlock.cidr, peer.ipBlock.except ?? [])
      if (r && !peer.podSelector && !peer.namespaceSelector) hit[r.family].push(...r.elements)
    } else if (peer.podSelector || peer.namespaceSelector) {
      // namespaceSelector alone: every pod of the selected namespaces; podSelector alone: pods of
      // the policy's own namespace; both in one peer: pods matching both (AND).
      const namespaces = peer.namespaceSelector ? [...namespaceLabels].filter(([, labels]) => selectorMatches(peer.namespaceSelector, labels)).map(([n]) => n) : [namespace]
      for (const ns of namespaces) {
        for (const p of podsByNamespace.get(ns) ?? []) {
          if (peer.podSelector && !selectorMatches(peer.podSelector, p.labels)) continue
          for (const f of FAMILIES) hit[f].push(...p.addresses[f])
        }
      }
    }
    peerCache.set(key, hit)
    return hit
  }

  // A named port resolves on the destination pod, for ingress and egress alike: one set per
  // (name, protocol) of every pod that owns it, keyed by the pod's address.
  const namedCache = new Map<string, string | undefined>()
  const namedPortSet = (family: IpFamily, port: string, protocol: L4Protocol, specProtocol: string): string | undefined => {
    const key = `${family}\n${port}/${specProtocol}`
    if (namedCache.has(key)) return namedCache.get(key)
    const elements: string[] = []
    for (const p of pods) {
      const n = p.namedPorts.get(`${port}/${specProtocol}`)
      if (n !== undefined) for (const a of p.addresses[family]) elements.push(`${a} . ${protocol} . ${n}`)
    }
    elements.sort()
    const name = elements.length ? namedSets[family].intern(key, (name) => ({ name, family, port, protocol, elements })).name : undefined
    namedCache.set(key, name)
    return name
  }

  const selectedSet = new Set<string>()
  const ordered = [...inputs.policies].sort((a, b) => {
    const ka = `${a.metadata?.namespace ?? 'default'}/${a.metadata?.name ?? ''}`
    const kb = `${b.metadata?.namespace ?? 'default'}/${b.metadata?.name ?? ''}`
    return ka < kb ? -1 : ka > kb ? 1 : 0
  })
  for (const policy of ordered) {
    const namespace = policy.metadata?.namespace ?? 'default'
    const id = `${namespace}/${policy.metadata?.name ?? ''}`
    const types = policyTypes(policy)
    for (const d of types) plan.unknownIsolated[d] = true
    // An empty podSelector selects every pod of the policy's namespace.
    const selected = selectedLocal(namespace, policy.spec?.podSelector ?? {})
    if (selected.length === 0) continue
    for (const p of selected) selectedSet.add(`${p.namespace}/${p.name}`)
    for (const direction of types) {
      const local = perFamily(() => [] as string[])
      for (const p of selected) for (const f of FAMILIES) local[f].push(...p.addresses[f])
      for (const f of FAMILIES) plan.isolated[direction][f].push(...local[f])
      // ingress/egress missing or []: the policy only isolates.
      const rules = (direction === 'ingress' ? policy.spec?.ingress : policy.spec?.egress) ?? []
      rules.forEach((rule, index) => {
        const peers: INetworkPolicyPeer[] | undefined = direction === 'ingress' ? (rule as { from?: INetworkPolicyPeer[] }).from : (rule as { to?: INetworkPolicyPeer[] }).to
        const ports = compilePorts(rule.ports)
        if (ports === 'nothing') return
        for (const family of FAMILIES) {
          const localSet = addressSet(family, local[family])
          if (!localSet) continue
          // from/to missing or empty: every address; present: any of the peers (OR).
          let peerSet: string | undefined
          if (peers && peers.length) {
            peerSet = addressSet(
              family,
              peers.flatMap((peer) => peerAddresses(namespace, peer)[family]),
            )
            if (!peerSet) continue // the peers hold no address of this family: nothing to allow
          }
          const base = { direction, family, policy: id, index, local: localSet, ...(peerSet ? { peers: peerSet } : {}) }
          if (ports === 'any') {
            plan.rules.push(base)
            continue
          }
          if (ports.numeric.length) {
            const elements = [...new Set(ports.numeric)].sort()
            plan.rules.push({ ...base, ports: { numeric: portSets.intern(elements.join(','), (name) => ({ name, elements })).name } })
          }
          for (const named of ports.named) {
            const set = namedPortSet(family, named.port, named.protocol, named.specProtocol)
            if (set) plan.rules.push({ ...base, ports: { named: set } })
          }
        }
      })
    }
  }
  for (const d of DIRECTIONS) for (const f of FAMILIES) plan.isolated[d][f] = [...new Set(plan.isolated[d][f])].sort()
  for (const f of FAMILIES) plan.known[f] = [...new Set(plan.known[f])].sort()
  plan.addressSets = [...addressSets[4].all, ...addressSets[6].all]
  plan.portSets = portSets.all
  plan.namedPortSets = [...namedSets[4].all, ...namedSets[6].all]
  plan.stats.podsSelected = selectedSet.size
  plan.stats.rules = plan.rules.length
  return plan
}

type CompiledPorts = 'any' | 'nothing' | { numeric: string[]; named: Array<{ port: string; protocol: L4Protocol; specProtocol: string }> }

/**
 * A rule's ports: missing or empty = every port of every protocol. Each entry's protocol
 * defaults to TCP; `port` missing = every port of that protocol; a number, with `endPort` an
 * inclusive range; a string, a named port (resolved per destination pod). An entry the API
 * server would refuse allows nothing.
 */
function compilePorts(ports: readonly INetworkPolicyPort[] | undefined): CompiledPorts {
  if (!ports || ports.length === 0) return 'any'
  const out: Exclude<CompiledPorts, 'any' | 'nothing'> = { numeric: [], named: [] }
  for (const entry of ports) {
    const protocol = nftProtocol(entry.protocol)
    if (!protocol) continue
    const port = entry.port
    if (port === undefined) {
      if (entry.endPort === undefined) out.numeric.push(`${protocol} . 0-65535`)
    } else if (typeof port === 'number') {
      if (!Number.isInteger(port) || port < 1 || port > 65535) continue
      const end = entry.endPort
      if (end === undefined) out.numeric.push(`${protocol} . ${port}`)
      else if (Number.isInteger(end) && end >= port && end <= 65535) out.numeric.push(end === port ? `${protocol} . ${port}` : `${protocol} . ${port}-${end}`)
    } else if (entry.endPort === undefined && port !== '') {
      out.named.push({ port, protocol, specProtocol: entry.protocol ?? 'TCP' })
    }
  }
  return out.numeric.length || out.named.length ? out : 'nothing'
}
