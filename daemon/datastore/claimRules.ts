// The rules of claim() shared by every backend: a backend reads the current records, asks
// chooseSubnet what this node gets, and then writes it with its own compare-and-swap. Keeping the
// decision here makes every backend answer the same way to restarts, conflicts and exhaustion.
import { CidrError, parseAddress, parseCidr, type Cidr } from '../../ipam/index.js'
import { NodeSubnetAllocator, isPlanSubnet, planNodeSubnets, type NodeSubnetPlan } from '../../ipam/nodeSubnet.js'
import { DatastoreError, type ClaimRequest, type NodeRecord } from './types.js'

// Node names end up in etcd keys, file records and log lines: the Kubernetes node name syntax
// (DNS subdomain, lower case) plus upper case and underscore for hand-made lab names.
const nodeNameSyntax = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/

export function checkNodeName(name: string, operation: string): void {
  if (typeof name !== 'string' || !nodeNameSyntax.test(name)) {
    throw new DatastoreError('invalid', `${operation}: invalid node name ${JSON.stringify(name)}: letters, digits, '.', '-', '_', at most 253, starting and ending with a letter or digit`)
  }
}

export function checkOwner(owner: string, operation: string): void {
  if (typeof owner !== 'string' || owner === '' || owner.length > 256) {
    throw new DatastoreError('invalid', `${operation}: invalid owner ${JSON.stringify(owner)}: a non-empty string of at most 256 characters`)
  }
}

/** Validates a claim request; returns the plan of node subnets it asks for. */
export function checkClaimRequest(req: ClaimRequest): NodeSubnetPlan {
  const operation = `claim a subnet for node ${JSON.stringify(req.name)}`
  checkNodeName(req.name, operation)
  checkOwner(req.owner, operation)
  try {
    parseAddress(req.nodeIP)
    if (req.preferSubnet !== undefined) parseCidr(req.preferSubnet)
    return planNodeSubnets(req.clusterCidr, req.prefixLength)
  } catch (err) {
    if (err instanceof CidrError) throw new DatastoreError('invalid', `${operation}: ${err.message}`, { cause: err })
    throw err
  }
}

/** Validates a batch of claims: each as checkClaimRequest, distinct names, one plan for all. */
export function checkClaimRequests(reqs: readonly ClaimRequest[]): NodeSubnetPlan | undefined {
  const names = new Set<string>()
  let plan: NodeSubnetPlan | undefined
  for (const req of reqs) {
    const p = checkClaimRequest(req)
    if (names.has(req.name)) throw new DatastoreError('invalid', `claim subnets for ${reqs.length} nodes: node ${req.name} appears twice`)
    names.add(req.name)
    if (plan && (p.cluster.text !== plan.cluster.text || p.prefixLength !== plan.prefixLength)) {
      throw new DatastoreError(
        'invalid',
        `claim subnets for ${reqs.length} nodes: node ${req.name} asks for /${p.prefixLength} of ${p.cluster.text}, the others for /${plan.prefixLength} of ${plan.cluster.text}`,
      )
    }
    plan ??= p
  }
  return plan
}

/** An allocator over the plan that counts every live record's subnet as used. */
export function allocatorFor(plan: NodeSubnetPlan, live: readonly NodeRecord[]): NodeSubnetAllocator {
  return new NodeSubnetAllocator(
    plan,
    live.map((r) => parseCidr(r.subnet)),
  )
}

/**
 * The subnet node req.name gets, given its own live record (if any) and an allocator that counts
 * every live record as used. Throws 'conflict', 'invalid' or 'exhausted' as claim() documents.
 */
export function chooseSubnet(req: ClaimRequest, own: NodeRecord | undefined, allocator: NodeSubnetAllocator, liveCount: number): Cidr {
  const { plan } = allocator
  if (own) {
    if (own.owner !== req.owner) {
      throw new DatastoreError(
        'conflict',
        `claim a subnet for node ${req.name}: node ${req.name} is held by another live daemon (owner ${JSON.stringify(own.owner)}, subnet ${own.subnet}, node IP ${own.nodeIP}, updated ${own.updatedAt}); refusing to claim it as owner ${JSON.stringify(req.owner)}`,
      )
    }
    const held = parseCidr(own.subnet)
    if (!isPlanSubnet(plan, held)) {
      throw new DatastoreError(
        'invalid',
        `claim a subnet for node ${req.name}: it holds ${held.text}, which is not a /${plan.prefixLength} of cluster range ${plan.cluster.text}; the cluster range or node prefix length changed — remove the node (flatnetctl node remove ${req.name}) to allocate anew`,
      )
    }
    return held
  }
  if (req.preferSubnet !== undefined) {
    const preferred = parseCidr(req.preferSubnet)
    if (allocator.take(preferred)) return preferred
  }
  const subnet = allocator.next()
  if (!subnet) {
    throw new DatastoreError(
      'exhausted',
      `claim a subnet for node ${req.name}: cluster range ${plan.cluster.text} is exhausted: all ${plan.count} /${plan.prefixLength} node subnets are held (${liveCount} nodes)`,
    )
  }
  return subnet
}

/** Addresses compared as addresses (IPv6 has many spellings of one); undefined for an unreadable one. */
function addressKey(text: string): string | undefined {
  try {
    const a = parseAddress(text)
    return `${a.family}/${a.value}`
  } catch {
    return undefined
  }
}

/**
 * Refuses req when another live node's record holds the same node address: peers route a node's
 * subnet to its address, so with two records of one address every peer sends both nodes' pods to
 * whichever host really has it (a node started with another node's --node-ip was ready, and did
 * exactly that). Refused like a second daemon with one node name: 'conflict', naming the holder.
 * `live` may include req's own record (skipped by name).
 */
export function checkAddressFree(req: ClaimRequest, live: Iterable<NodeRecord>): void {
  const key = addressKey(req.nodeIP)
  if (key === undefined) return // checkClaimRequest refuses it
  for (const other of live) {
    if (other.name === req.name || addressKey(other.nodeIP) !== key) continue
    throw new DatastoreError(
      'conflict',
      `claim a subnet for node ${req.name}: node address ${req.nodeIP} is held by node ${other.name} (subnet ${other.subnet}, owner ${JSON.stringify(other.owner)}, updated ${other.updatedAt}); two nodes of one address would receive each other's pod traffic — give this node its own address (--node-ip), or remove node ${other.name} if it is gone (flatnetctl node remove ${other.name})`,
    )
  }
}

export function sortByName(nodes: NodeRecord[]): NodeRecord[] {
  return nodes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}
