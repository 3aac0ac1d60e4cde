// What flatnet reads from and writes to Kubernetes objects, as plain functions over their JSON:
// which subnet and address a Node stands for, the annotations flatnet keeps on a Node when it
// allocates subnets itself, and the per-subnet Lease that makes such an allocation atomic.
// No I/O here; kubernetes.ts does the requests.
import { CidrError, parseAddress, parseCidr, type Cidr, type IpFamily } from '../../ipam/index.js'
import type { NodeRecord } from './types.js'

/**
 * Where node subnets come from.
 * - `podCIDRs`: kube-controller-manager assigns them (`--allocate-node-cidrs`, as kind does) into
 *   `Node.spec.podCIDRs`; flatnet only reads them.
 * - `flatnet`: the cluster assigns none; flatnet allocates from its cluster range, holding each
 *   subnet with a Lease named after it and recording it in Node annotations (`spec.podCIDR(s)`
 *   belong to the node IPAM controller and can be set only once).
 */
export type SubnetSource = 'podCIDRs' | 'flatnet'

/** The Node annotations flatnet writes in `flatnet` mode (in `podCIDRs` mode it writes none). */
export const nodeAnnotation = {
  /** This node's subnet, canonical CIDR text. */
  podCidr: 'flatnet.io/pod-cidr',
  /** Owner id of the flatnet daemon that claimed it (its state directory's owner-id). */
  owner: 'flatnet.io/owner',
  /** The node IP that daemon uses; peers route through it when the Node reports no address of the family. */
  nodeIP: 'flatnet.io/node-ip',
  /** When the claim was made or its node IP last changed (ISO 8601). */
  updatedAt: 'flatnet.io/updated-at',
} as const

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
 * Reads a Node as flatnet sees it. `family` picks among dual-stack podCIDRs (the family of the
 * daemon's cluster range); without it the first one (the cluster's primary family) is taken.
 */
export function readNode(node: NodeJson, source: SubnetSource, family?: IpFamily): NodeReading {
  const name = node.metadata.name
  if (source === 'podCIDRs') {
    const cidrs = podCidrsOf(node)
      .map(cidrOrUndefined)
      .filter((c): c is Cidr => c !== undefined)
    const subnet = family === undefined ? cidrs[0] : cidrs.find((c) => c.family === family)
    if (!subnet) return { kind: 'skipped', why: `Node ${name} has no spec.podCIDRs${family ? ` of ${familyName(family)}` : ''}` }
    const nodeIP = nodeAddressOf(node, subnet.family)
    if (!nodeIP) return { kind: 'skipped', why: `Node ${name} reports no InternalIP or ExternalIP of ${familyName(subnet.family)} in status.addresses` }
    return { kind: 'record', record: { name, nodeIP, subnet: subnet.text, owner: clusterOwner(node.metadata.uid), updatedAt: node.metadata.creationTimestamp ?? '' } }
  }
  const found = flatnetClaimOf(node)
  if (found.kind !== 'claim') return found
  const { claim } = found
  const subnetFamily = parseCidr(claim.subnet).family
  const nodeIP = nodeAddressOf(node, subnetFamily, claim.nodeIP)
  if (!nodeIP) return { kind: 'skipped', why: `Node ${name} has no address of ${familyName(subnetFamily)} (status.addresses InternalIP/ExternalIP, ${nodeAnnotation.nodeIP})` }
  return { kind: 'record', record: { name, nodeIP, subnet: claim.subnet, owner: claim.owner, updatedAt: claim.updatedAt } }
}

/** What flatnet recorded on a Node in `flatnet` mode (its annotations). */
export interface FlatnetClaim {
  subnet: string
  owner: string
  nodeIP?: string
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
  const owner = annotations[nodeAnnotation.owner]
  if (!owner) return bad(`${nodeAnnotation.owner} is missing or empty`)
  const nodeIP = annotations[nodeAnnotation.nodeIP]
  if (nodeIP !== undefined && familyOf(nodeIP) === undefined) return bad(`${nodeAnnotation.nodeIP}=${JSON.stringify(nodeIP)} is not an IP address`)
  return { kind: 'claim', claim: { subnet: subnet.text, owner, nodeIP, updatedAt: annotations[nodeAnnotation.updatedAt] ?? '' } }
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
