// The rules of claim() shared by every backend: a backend reads the current records, asks
// chooseSubnets what this node gets, and then writes it with its own compare-and-swap. Keeping the
// decision here makes every backend answer the same way to restarts, conflicts and exhaustion.
import { CidrError, parseAddress, parseCidr, type Cidr } from '../../ipam/index.js'
import { NodeSubnetAllocator, isPlanSubnet, planNodeSubnets, type NodeSubnetPlan } from '../../ipam/nodeSubnet.js'
import {
  DatastoreError,
  NODE_BACKENDS,
  VTEP_MAC_SYNTAX,
  claimAddresses,
  claimRanges,
  nodeFamilies,
  subnetOf,
  type ClaimRange,
  type BackendFields,
  type ClaimRequest,
  type NodeBackend,
  type NodeRecord,
} from './types.js'

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

/** Validates a claim request; returns the plan of node subnets of each range it asks for, primary first. */
export function checkClaimRequest(req: ClaimRequest): NodeSubnetPlan[] {
  const operation = `claim a subnet for node ${JSON.stringify(req.name)}`
  checkNodeName(req.name, operation)
  checkOwner(req.owner, operation)
  try {
    readRecordBackend({ backend: req.backend, vtepMac: req.vtepMac })
  } catch (e) {
    throw new DatastoreError('invalid', `${operation}: ${(e as Error).message}`)
  }
  try {
    const families = new Map<number, string>()
    for (const ip of claimAddresses(req)) {
      const { family } = parseAddress(ip)
      const same = families.get(family)
      if (same !== undefined) throw new DatastoreError('invalid', `${operation}: node addresses ${same} and ${ip} are both IPv${family}; one address per family`)
      families.set(family, ip)
    }
    const plans: NodeSubnetPlan[] = []
    for (const range of claimRanges(req)) {
      if (range.preferSubnet !== undefined) parseCidr(range.preferSubnet)
      const plan = planNodeSubnets(range.clusterCidr, range.prefixLength)
      const same = plans.find((p) => p.cluster.family === plan.cluster.family)
      if (same) throw new DatastoreError('invalid', `${operation}: cluster ranges ${same.cluster.text} and ${plan.cluster.text} are both IPv${plan.cluster.family}; one range per family`)
      plans.push(plan)
    }
    return plans
  } catch (err) {
    if (err instanceof CidrError) throw new DatastoreError('invalid', `${operation}: ${err.message}`, { cause: err })
    throw err
  }
}

const planText = (plans: readonly NodeSubnetPlan[]) => plans.map((p) => `/${p.prefixLength} of ${p.cluster.text}`).join(' and ')

/** Validates a batch of claims: each as checkClaimRequest, distinct names, the same ranges for all. */
export function checkClaimRequests(reqs: readonly ClaimRequest[]): NodeSubnetPlan[] | undefined {
  const names = new Set<string>()
  let plans: NodeSubnetPlan[] | undefined
  for (const req of reqs) {
    const p = checkClaimRequest(req)
    if (names.has(req.name)) throw new DatastoreError('invalid', `claim subnets for ${reqs.length} nodes: node ${req.name} appears twice`)
    names.add(req.name)
    if (plans && planText(p) !== planText(plans)) {
      throw new DatastoreError('invalid', `claim subnets for ${reqs.length} nodes: node ${req.name} asks for ${planText(p)}, the others for ${planText(plans)}`)
    }
    plans ??= p
  }
  return plans
}

/** Every subnet a record holds, of every family. */
export function subnetsHeldBy(rec: NodeRecord): Cidr[] {
  return nodeFamilies(rec).map((f) => parseCidr(f.subnet))
}

/** Every address a record names, of every family. */
function addressesOf(rec: NodeRecord): string[] {
  return rec.nodeIPs && rec.nodeIPs.length ? rec.nodeIPs : [rec.nodeIP]
}

/** One allocator per plan, each counting every subnet of every live record as used. */
export function allocatorsFor(plans: readonly NodeSubnetPlan[], live: readonly NodeRecord[], moreUsed: readonly Cidr[] = []): NodeSubnetAllocator[] {
  const used = [...live.flatMap(subnetsHeldBy), ...moreUsed]
  return plans.map((plan) => new NodeSubnetAllocator(plan, used))
}

/**
 * The subnet of one range node req.name gets, given its own live record (if any) and an allocator
 * of that range that counts every live record as used. Throws 'invalid' or 'exhausted' (naming the
 * family and the range) as claim() documents; the owner is checked by chooseSubnets.
 */
export function chooseSubnetOf(req: ClaimRequest, range: ClaimRange, own: NodeRecord | undefined, allocator: NodeSubnetAllocator, liveCount: number): Cidr {
  const { plan } = allocator
  const heldText = own ? subnetOf(own, plan.cluster.family) : undefined
  if (heldText !== undefined) {
    const held = parseCidr(heldText)
    if (!isPlanSubnet(plan, held)) {
      throw new DatastoreError(
        'invalid',
        `claim a subnet for node ${req.name}: it holds ${held.text}, which is not a /${plan.prefixLength} of cluster range ${plan.cluster.text}; the cluster range or node prefix length changed — remove the node (flatnetctl node remove ${req.name}) to allocate anew`,
      )
    }
    return held
  }
  if (range.preferSubnet !== undefined) {
    const preferred = parseCidr(range.preferSubnet)
    if (allocator.take(preferred)) return preferred
  }
  const subnet = allocator.next()
  if (!subnet) {
    throw new DatastoreError(
      'exhausted',
      `claim a subnet for node ${req.name}: the IPv${plan.cluster.family} cluster range ${plan.cluster.text} is exhausted: all ${plan.count} /${plan.prefixLength} node subnets are held (${liveCount} nodes)`,
    )
  }
  return subnet
}

/** Refuses a claim of node req.name when a live record of that name belongs to another owner. */
export function checkOwnRecord(req: ClaimRequest, own: NodeRecord | undefined): void {
  if (own && own.owner !== req.owner) {
    throw new DatastoreError(
      'conflict',
      `claim a subnet for node ${req.name}: node ${req.name} is held by another live daemon (owner ${JSON.stringify(own.owner)}, subnet ${nodeFamilies(own)
        .map((f) => f.subnet)
        .join(',')}, node IP ${addressesOf(own).join(',')}, updated ${own.updatedAt}); refusing to claim it as owner ${JSON.stringify(req.owner)}`,
    )
  }
}

/**
 * The subnets node req.name gets, one per range in request order, given its own live record (if
 * any) and one allocator per range (allocatorsFor). Throws 'conflict', 'invalid' or 'exhausted'
 * as claim() documents; a throw for any range means the node gets none.
 */
export function chooseSubnets(req: ClaimRequest, own: NodeRecord | undefined, allocators: readonly NodeSubnetAllocator[], liveCount: number): Cidr[] {
  checkOwnRecord(req, own)
  const ranges = claimRanges(req)
  return allocators.map((allocator, i) => chooseSubnetOf(req, ranges[i]!, own, allocator, liveCount))
}

/**
 * The record of node req.name holding `subnets` (one per range, request order). Single-range
 * records keep the shape of earlier versions (no arrays); with several ranges `subnets` lists
 * them and `nodeIPs` the node's addresses of the claimed families, both in range order.
 */
export function recordFor(req: ClaimRequest, subnets: readonly Cidr[], updatedAt: string): NodeRecord {
  const record: NodeRecord = { name: req.name, nodeIP: req.nodeIP, subnet: subnets[0]!.text, owner: req.owner, updatedAt }
  if (subnets.length > 1) {
    const addresses = claimAddresses(req)
    record.subnets = subnets.map((s) => s.text)
    record.nodeIPs = subnets.flatMap((s) => addresses.find((a) => parseAddress(a).family === s.family) ?? [])
    if (!record.nodeIPs.includes(req.nodeIP)) record.nodeIPs.unshift(req.nodeIP)
  }
  if (req.backend !== undefined) record.backend = req.backend
  if (req.vtepMac !== undefined) record.vtepMac = req.vtepMac
  return record
}

/**
 * Reads the backend fields of a stored record (file or etcd JSON, Node annotations): both absent
 * on records of earlier versions. Throws an Error whose message is the detail for the backend's
 * 'corrupt' message.
 */
export function readRecordBackend(d: Record<string, unknown>): BackendFields {
  const out: BackendFields = {}
  if (d.backend !== undefined) {
    if (!(NODE_BACKENDS as readonly unknown[]).includes(d.backend)) throw new Error(`backend is ${JSON.stringify(d.backend)}, expected one of ${NODE_BACKENDS.join(', ')}`)
    out.backend = d.backend as NodeBackend
  }
  if (d.vtepMac !== undefined) {
    if (typeof d.vtepMac !== 'string' || !VTEP_MAC_SYNTAX.test(d.vtepMac)) throw new Error(`vtepMac is ${JSON.stringify(d.vtepMac)}, expected a MAC like 02:aa:bb:cc:dd:ee`)
    out.vtepMac = d.vtepMac
  }
  return out
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
 * The live records by node address (every family; spelled canonically), so a batch of claims
 * checks each address in constant time: a check that read every record for every claim made
 * seeding 1000 dual-stack nodes take 13 s. A claim's record is add()ed once it is taken.
 */
export class NodeAddressIndex {
  private readonly byKey = new Map<string, NodeRecord[]>()
  constructor(live: Iterable<NodeRecord>) {
    for (const rec of live) this.add(rec)
  }
  add(rec: NodeRecord): void {
    for (const a of addressesOf(rec)) {
      const key = addressKey(a)
      if (key === undefined) continue
      const list = this.byKey.get(key)
      if (list) list.push(rec)
      else this.byKey.set(key, [rec])
    }
  }
  /** Records holding the address of `key` (see addressKey). */
  holders(key: string): readonly NodeRecord[] {
    return this.byKey.get(key) ?? []
  }
}

/**
 * Refuses req when another live node's record holds one of its node addresses: peers route a
 * node's subnet to its address, so with two records of one address every peer sends both nodes'
 * pods to whichever host really has it (a node started with another node's --node-ip was ready,
 * and did exactly that). Refused like a second daemon with one node name: 'conflict', naming the
 * holder. Every family's address counts. `live` may include req's own record (skipped by name).
 */
export function checkAddressFree(req: ClaimRequest, live: Iterable<NodeRecord> | NodeAddressIndex): void {
  const index = live instanceof NodeAddressIndex ? live : new NodeAddressIndex(live)
  for (const mine of claimAddresses(req)) {
    const key = addressKey(mine)
    if (key === undefined) continue // checkClaimRequest refuses it
    for (const other of index.holders(key)) {
      if (other.name === req.name) continue
      throw new DatastoreError(
        'conflict',
        `claim a subnet for node ${req.name}: node address ${mine} is held by node ${other.name} (subnet ${other.subnet}, owner ${JSON.stringify(other.owner)}, updated ${other.updatedAt}); two nodes of one address would receive each other's pod traffic — give this node its own address (--node-ip), or remove node ${other.name} if it is gone (flatnetctl node remove ${other.name})`,
      )
    }
  }
}

/**
 * Reads the per-family fields of a stored record (file or etcd JSON): absent on single-family
 * records and those of earlier versions; otherwise canonical subnets of distinct families with
 * `subnet` first, and addresses of distinct families with `nodeIP` among them. Throws an Error
 * whose message is the detail for the backend's 'corrupt' message.
 */
export function readRecordFamilies(d: Record<string, unknown>): Pick<NodeRecord, 'subnets' | 'nodeIPs'> {
  const out: Pick<NodeRecord, 'subnets' | 'nodeIPs'> = {}
  if (d.subnets !== undefined) {
    if (!Array.isArray(d.subnets) || d.subnets.length === 0 || !d.subnets.every((x) => typeof x === 'string')) throw new Error(`subnets is ${JSON.stringify(d.subnets)}`)
    const cidrs = d.subnets.map((x: string) => parseCidr(x))
    cidrs.forEach((c, i) => {
      if (c.text !== d.subnets![i as never]) throw new Error(`subnet ${c.text} is not in canonical form`)
    })
    if (cidrs[0]!.text !== d.subnet) throw new Error(`subnets ${JSON.stringify(d.subnets)} does not start with subnet ${JSON.stringify(d.subnet)}`)
    if (new Set(cidrs.map((c) => c.family)).size !== cidrs.length) throw new Error(`subnets ${JSON.stringify(d.subnets)} holds two subnets of one family`)
    out.subnets = cidrs.map((c) => c.text)
  }
  if (d.nodeIPs !== undefined) {
    if (!Array.isArray(d.nodeIPs) || d.nodeIPs.length === 0 || !d.nodeIPs.every((x) => typeof x === 'string')) throw new Error(`nodeIPs is ${JSON.stringify(d.nodeIPs)}`)
    const families = d.nodeIPs.map((x: string) => parseAddress(x).family)
    if (new Set(families).size !== families.length) throw new Error(`nodeIPs ${JSON.stringify(d.nodeIPs)} holds two addresses of one family`)
    if (!(d.nodeIPs as unknown[]).includes(d.nodeIP)) throw new Error(`nodeIPs ${JSON.stringify(d.nodeIPs)} does not include nodeIP ${JSON.stringify(d.nodeIP)}`)
    out.nodeIPs = [...(d.nodeIPs as string[])]
  }
  return out
}

export function sortByName(nodes: NodeRecord[]): NodeRecord[] {
  return nodes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}
