// What flatnet reads from and writes to Kubernetes objects, as plain functions over their JSON:
// which subnet and address a Node stands for, the annotations flatnet keeps on a Node when it
// allocates subnets itself, and the per-subnet Lease that makes such an allocation atomic.
// No I/O here; kubernetes.ts does the requests.
import { CidrError, parseAddress, parseCidr, type Cidr, type IpFamily } from '../../ipam/index.js'
import { NODE_BACKENDS, VTEP_MAC_SYNTAX, type BackendFields, type NodeBackend, type NodeRecord } from './types.js'

/**
 * Where node subnets come from.
 * - `podCIDRs`: kube-controller-manager assigns them (`--allocate-node-cidrs`, as kind does) into
 *   `Node.spec.podCIDRs`; flatnet only reads them.
 * - `flatnet`: the cluster assigns none; flatnet allocates from its cluster range, holding each
 *   subnet with a Lease named after it and recording it in Node annotations (`spec.podCIDR(s)`
 *   belong to the node IPAM controller and can be set only once).
 */
export type SubnetSource = 'podCIDRs' | 'flatnet'

/** The Node annotations flatnet writes in `flatnet` mode (in `podCIDRs` mode only backend and vtepMac). */
export const nodeAnnotation = {
  /** This node's subnet (of the primary family, when it holds several), canonical CIDR text. */
  podCidr: 'flatnet.io/pod-cidr',
  /** Dual-stack: every subnet of the node, comma separated, primary first (absent with one subnet). */
  podCidrs: 'flatnet.io/pod-cidrs',
  /** Owner id of the flatnet daemon that claimed it (its state directory's owner-id). */
  owner: 'flatnet.io/owner',
  /** The node IP that daemon uses; peers route through it when the Node reports no address of the family. */
  nodeIP: 'flatnet.io/node-ip',
  /** Dual-stack: every node IP that daemon uses, comma separated, one per family (absent with one). */
  nodeIPs: 'flatnet.io/node-ips',
  /** When the claim was made or its node IP last changed (ISO 8601). */
  updatedAt: 'flatnet.io/updated-at',
  /** The daemon's dataplane backend (host-gw, vxlan or auto); written in both subnet modes. */
  backend: 'flatnet.io/backend',
  /** The MAC of the node's VXLAN devices (its VTEP); written in both subnet modes. */
  vtepMac: 'flatnet.io/vtep-mac',
} as const

/**
 * The backend fields a Node's annotations publish. An unreadable value counts as absent: the peer
 * is then reached by host-gw only, which is what a node of an earlier version gets too.
 */
export function backendOf(node: NodeJson): BackendFields {
  const a = node.metadata.annotations ?? {}
  const out: BackendFields = {}
  const backend = a[nodeAnnotation.backend]
  if (backend !== undefined && (NODE_BACKENDS as readonly string[]).includes(backend)) out.backend = backend as NodeBackend
  const mac = a[nodeAnnotation.vtepMac]
  if (mac !== undefined && VTEP_MAC_SYNTAX.test(mac)) out.vtepMac = mac
  return out
}

/** Labels of the subnet claim Leases, so that one selector lists all of them and nothing else. */
export const claimLabels = { 'app.kubernetes.io/managed-by': 'flatnet', 'app.kubernetes.io/component': 'subnet-claim' } as const
export const claimLabelSelector = Object.entries(claimLabels)
  .map(([k, v]) => `${k}=${v}`)
  .join(',')

/** Owner of a subnet assigned by the cluster: the Node object itself (a re-created Node is another owner). */
export function clusterOwner(uid: string | undefined): string {
  return `kubernetes-node:${uid ?? 'unknown'}`
}

export interface ObjectMeta {
  name: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  creationTimestamp?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }>
}

export interface NodeAddress {
  type: string
  address: string
}

export interface NodeCondition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  reason?: string
  message?: string
  lastHeartbeatTime?: string
  lastTransitionTime?: string
}

/** The parts of a v1 Node flatnet looks at (the JSON as the API server sends it). */
export interface NodeJson {
  apiVersion?: string
  kind?: string
  metadata: ObjectMeta
  spec?: { podCIDR?: string; podCIDRs?: string[]; providerID?: string; unschedulable?: boolean }
  status?: { addresses?: NodeAddress[]; conditions?: NodeCondition[] }
}

/** A coordination.k8s.io/v1 Lease. */
export interface LeaseJson {
  apiVersion?: string
  kind?: string
  metadata: ObjectMeta
  spec?: { holderIdentity?: string; acquireTime?: string; renewTime?: string; leaseDurationSeconds?: number }
}

export interface ListJson<T> {
  metadata: { resourceVersion?: string; continue?: string }
  items: T[]
}

/** A v1 Status, the body of every API error and of a watch ERROR event. */
export interface StatusJson {
  kind?: string
  status?: string
  message?: string
  reason?: string
  code?: number
}

/** What one Node means to flatnet: a peer record, nothing (no subnet or address yet), or an unreadable flatnet claim. */
export type NodeReading = { kind: 'record'; record: NodeRecord } | { kind: 'skipped'; why: string } | { kind: 'corrupt'; why: string }

const familyName = (family: IpFamily) => `IPv${family}`

function cidrOrUndefined(text: string): Cidr | undefined {
  try {
    return parseCidr(text)
  } catch (err) {
    if (err instanceof CidrError) return undefined
    throw err
  }
}

function familyOf(address: string): IpFamily | undefined {
  try {
    return parseAddress(address).family
  } catch (err) {
    if (err instanceof CidrError) return undefined
    throw err
  }
}

/**
 * The address peers route this node's subnet through: its InternalIP of the subnet's family, else
 * its ExternalIP of that family, else (flatnet mode) the node IP its daemon recorded.
 */
export function nodeAddressOf(node: NodeJson, family: IpFamily, recorded?: string): string | undefined {
  const addresses = node.status?.addresses ?? []
  for (const type of ['InternalIP', 'ExternalIP']) {
    const found = addresses.find((a) => a.type === type && familyOf(a.address) === family)
    if (found) return found.address
  }
  return recorded !== undefined && familyOf(recorded) === family ? recorded : undefined
}

/** The cluster-assigned pod CIDRs of a Node: spec.podCIDRs, or the older single spec.podCIDR. */
export function podCidrsOf(node: NodeJson): string[] {
  const list = node.spec?.podCIDRs
  if (list && list.length > 0) return list
  return node.spec?.podCIDR ? [node.spec.podCIDR] : []
}

/**
 * The record of node `name` holding `subnets` (primary first), addressed per family by `addressOf`;
 * a family without an address is left out of nodeIPs (peers get no route of it), a node with no
 * address at all is skipped.
 */
function recordOfSubnets(name: string, subnets: readonly Cidr[], addressOf: (family: IpFamily) => string | undefined, owner: string, updatedAt: string): NodeReading {
  const addresses = subnets.flatMap((s) => addressOf(s.family) ?? [])
  if (addresses.length === 0) {
    return { kind: 'skipped', why: `Node ${name} reports no InternalIP or ExternalIP of ${subnets.map((s) => familyName(s.family)).join(' or ')} in status.addresses` }
  }
  const record: NodeRecord = { name, nodeIP: addresses[0]!, subnet: subnets[0]!.text, owner, updatedAt }
  if (subnets.length > 1) {
    record.subnets = subnets.map((s) => s.text)
    record.nodeIPs = addresses
  }
  return { kind: 'record', record }
}

/**
 * Reads a Node as flatnet sees it. `families` picks among dual-stack podCIDRs (the families of the
 * daemon's cluster ranges, primary first); without it the first one (the cluster's primary family)
 * is taken. The primary family's podCIDR is required; the others are taken where present.
 */
export function readNode(node: NodeJson, source: SubnetSource, families?: readonly IpFamily[]): NodeReading {
  const reading = readNodeSubnets(node, source, families)
  if (reading.kind === 'record') Object.assign(reading.record, backendOf(node))
  return reading
}

function readNodeSubnets(node: NodeJson, source: SubnetSource, families?: readonly IpFamily[]): NodeReading {
  const name = node.metadata.name
  if (source === 'podCIDRs') {
    const cidrs = podCidrsOf(node)
      .map(cidrOrUndefined)
      .filter((c): c is Cidr => c !== undefined)
    const subnets = families === undefined || families.length === 0 ? cidrs.slice(0, 1) : families.flatMap((f) => cidrs.find((c) => c.family === f) ?? [])
    const primary = families?.[0]
    if (subnets.length === 0 || (primary !== undefined && subnets[0]!.family !== primary)) {
      return { kind: 'skipped', why: `Node ${name} has no spec.podCIDRs${primary ? ` of ${familyName(primary)}` : ''}` }
    }
    return recordOfSubnets(name, subnets, (f) => nodeAddressOf(node, f), clusterOwner(node.metadata.uid), node.metadata.creationTimestamp ?? '')
  }
  const found = flatnetClaimOf(node)
  if (found.kind !== 'claim') return found
  const { claim } = found
  const subnets = claim.subnets.map((s) => parseCidr(s))
  const reading = recordOfSubnets(
    name,
    subnets,
    (f) =>
      nodeAddressOf(
        node,
        f,
        claim.nodeIPs.find((ip) => familyOf(ip) === f),
      ),
    claim.owner,
    claim.updatedAt,
  )
  if (reading.kind === 'skipped') {
    return { kind: 'skipped', why: `Node ${name} has no address of ${subnets.map((s) => familyName(s.family)).join(' or ')} (status.addresses InternalIP/ExternalIP, ${nodeAnnotation.nodeIP})` }
  }
  return reading
}

/** What flatnet recorded on a Node in `flatnet` mode (its annotations). */
export interface FlatnetClaim {
  /** The primary subnet (= subnets[0]). */
  subnet: string
  /** Every subnet, primary first (one per family). */
  subnets: string[]
  owner: string
  /** The recorded node IP of the primary family, if any. */
  nodeIP?: string
  /** Every recorded node IP (empty when none). */
  nodeIPs: string[]
  updatedAt: string
}

export function flatnetClaimOf(node: NodeJson): { kind: 'claim'; claim: FlatnetClaim } | { kind: 'skipped'; why: string } | { kind: 'corrupt'; why: string } {
  const name = node.metadata.name
  const annotations = node.metadata.annotations ?? {}
  const subnetText = annotations[nodeAnnotation.podCidr]
  if (subnetText === undefined) return { kind: 'skipped', why: `Node ${name} has no ${nodeAnnotation.podCidr} annotation` }
  const bad = (detail: string) => ({ kind: 'corrupt' as const, why: `Node ${name}: annotation ${detail}; fix or remove the flatnet.io/ annotations of this Node` })
  const subnet = cidrOrUndefined(subnetText)
  if (!subnet || subnet.text !== subnetText) return bad(`${nodeAnnotation.podCidr}=${JSON.stringify(subnetText)} is not a canonical CIDR`)
  const subnetsText = annotations[nodeAnnotation.podCidrs]
  let cidrs: Cidr[] = [subnet]
  if (subnetsText !== undefined) {
    const parts = subnetsText.split(',')
    const parsed = parts.map(cidrOrUndefined)
    if (parsed.some((c, i) => !c || c.text !== parts[i])) return bad(`${nodeAnnotation.podCidrs}=${JSON.stringify(subnetsText)} is not a list of canonical CIDRs`)
    cidrs = parsed as Cidr[]
  }
  if (cidrs[0]!.text !== subnet.text || new Set(cidrs.map((c) => c.family)).size !== cidrs.length) {
    return bad(`${nodeAnnotation.podCidrs}=${JSON.stringify(subnetsText)} must start with ${nodeAnnotation.podCidr} and hold one subnet per family`)
  }
  const owner = annotations[nodeAnnotation.owner]
  if (!owner) return bad(`${nodeAnnotation.owner} is missing or empty`)
  const nodeIP = annotations[nodeAnnotation.nodeIP]
  if (nodeIP !== undefined && familyOf(nodeIP) === undefined) return bad(`${nodeAnnotation.nodeIP}=${JSON.stringify(nodeIP)} is not an IP address`)
  const nodeIPsText = annotations[nodeAnnotation.nodeIPs]
  const nodeIPs = nodeIPsText === undefined ? (nodeIP === undefined ? [] : [nodeIP]) : nodeIPsText.split(',')
  if (nodeIPs.some((ip) => familyOf(ip) === undefined)) return bad(`${nodeAnnotation.nodeIPs}=${JSON.stringify(nodeIPsText)} is not a list of IP addresses`)
  return { kind: 'claim', claim: { subnet: subnet.text, subnets: cidrs.map((c) => c.text), owner, nodeIP, nodeIPs, updatedAt: annotations[nodeAnnotation.updatedAt] ?? '' } }
}

/** The Lease that holds a subnet in `flatnet` mode: `flatnet-subnet-10-244-3-0-24` (a DNS subdomain, for both families). */
export function claimLeaseName(subnet: string): string {
  return `flatnet-subnet-${subnet.toLowerCase().replace(/[.:/]/g, '-')}`
}

/** The subnet a claim Lease holds, checked against its name; undefined for a Lease that is not a well-formed claim. */
export function claimedSubnetOf(lease: LeaseJson): Cidr | undefined {
  const text = lease.metadata.annotations?.[nodeAnnotation.podCidr]
  const subnet = text === undefined ? undefined : cidrOrUndefined(text)
  return subnet && claimLeaseName(subnet.text) === lease.metadata.name ? subnet : undefined
}

/** Lease times are MicroTime: RFC 3339 with exactly six fractional digits, which the API server insists on. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
}

/** A new claim Lease for node `node` (owned by it, so the garbage collector frees the claim when the Node is deleted). */
export function claimLease(subnet: string, node: NodeJson, namespace: string, now: Date): LeaseJson {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name: claimLeaseName(subnet),
      namespace,
      labels: { ...claimLabels },
      annotations: { [nodeAnnotation.podCidr]: subnet },
      ownerReferences: node.metadata.uid ? [{ apiVersion: 'v1', kind: 'Node', name: node.metadata.name, uid: node.metadata.uid }] : [],
    },
    // No leaseDurationSeconds: the claim lasts as long as the Node (or until `flatnetctl node remove`).
    spec: { holderIdentity: node.metadata.name, acquireTime: microTime(now) },
  }
}

/**
 * Whether a claim Lease belongs to this very Node object: its holder is the Node's name and its
 * ownerReference the Node's uid. A Lease of an earlier Node of the same name (deleted and
 * registered again before the garbage collector got to the Lease) does not: the collector is
 * about to delete it, so a new Node must not build on it.
 */
export function leaseHeldBy(lease: LeaseJson, node: NodeJson): boolean {
  if (lease.spec?.holderIdentity !== node.metadata.name) return false
  const owners = lease.metadata.ownerReferences ?? []
  return owners.length === 0 || owners.some((o) => o.kind === 'Node' && o.uid === node.metadata.uid)
}
