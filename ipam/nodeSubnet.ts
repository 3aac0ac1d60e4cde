// Node subnet allocation choice: which /N of the cluster range a new node gets. Plain functions
// over plain data; the datastores call them inside their compare-and-swap, so the choice itself
// needs no locking and is unit-tested without root.
import { CidrError, addressBits, cidrSize, parseCidr, podRange, subnetAt, subnetCount, subnetIndex, type Cidr } from './cidr.js'

/** The cluster range cut into equal node subnets. */
export interface NodeSubnetPlan {
  cluster: Cidr
  prefixLength: number
  /** How many node subnets the cluster range holds. */
  count: bigint
}

/**
 * Validates a cluster range and per-node prefix length. Throws CidrError naming both when the
 * prefix length does not fit inside the range, or leaves a node subnet too small for a gateway
 * and one pod (IPv4 /31, /32; IPv6 /127, /128).
 */
export function planNodeSubnets(clusterCidr: string, prefixLength: number): NodeSubnetPlan {
  const cluster = parseCidr(clusterCidr)
  const bits = addressBits(cluster.family)
  if (!Number.isInteger(prefixLength) || prefixLength < cluster.prefixLength || prefixLength > bits) {
    throw new CidrError(`node subnet prefix length ${prefixLength} does not fit cluster range ${cluster.text}: it must be between ${cluster.prefixLength} and ${bits}`)
  }
  try {
    podRange(subnetAt(cluster, prefixLength, 0n))
  } catch (err) {
    throw new CidrError(`node subnet prefix length /${prefixLength} of cluster range ${cluster.text} is unusable: ${(err as Error).message}`)
  }
  return { cluster, prefixLength, count: subnetCount(cluster, prefixLength) }
}

/** True when subnet is exactly one of the plan's node subnets (same family, size, inside, aligned). */
export function isPlanSubnet(plan: NodeSubnetPlan, subnet: Cidr): boolean {
  return subnet.prefixLength === plan.prefixLength && subnetIndex(plan.cluster, subnet) !== undefined
}

/**
 * Hands out the free node subnets of a plan, lowest first. Built once from the subnets in use
 * (which may be of any size or family — records written under an older configuration: whatever
 * they overlap is taken), then next() walks the gaps, so allocating k subnets among n used ones
 * costs O(n log n + k), not O(k·n): seeding thousands of nodes in one write stays fast.
 */
export class NodeSubnetAllocator {
  private readonly step: bigint
  /** Blocked runs of node-subnet indices [lo, hi], sorted by lo. */
  private readonly blocked: Array<[bigint, bigint]> = []
  private cursor = 0
  private candidate = 0n

  constructor(
    readonly plan: NodeSubnetPlan,
    used: readonly Cidr[],
  ) {
    const { cluster } = plan
    this.step = 1n << BigInt(addressBits(cluster.family) - plan.prefixLength)
    const clusterEnd = cluster.network + cidrSize(cluster) - 1n
    for (const u of used) {
      if (u.family !== cluster.family) continue
      const start = u.network > cluster.network ? u.network : cluster.network
      const uEnd = u.network + cidrSize(u) - 1n
      const end = uEnd < clusterEnd ? uEnd : clusterEnd
      if (start > end) continue
      this.blocked.push([(start - cluster.network) / this.step, (end - cluster.network) / this.step])
    }
    this.blocked.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  }

  /**
   * Takes one particular node subnet if it is one of the plan's and free (e.g. the subnet a node
   * held before its claim expired); false otherwise. O(n).
   */
  take(subnet: Cidr): boolean {
    if (!isPlanSubnet(this.plan, subnet)) return false
    const index = subnetIndex(this.plan.cluster, subnet)!
    // Below the candidate everything is blocked or already handed out.
    if (index < this.candidate) return false
    let at = this.blocked.length
    for (let i = this.cursor; i < this.blocked.length; i++) {
      const [lo, hi] = this.blocked[i]!
      if (lo <= index && index <= hi) return false
      if (lo > index && at === this.blocked.length) at = i
    }
    this.blocked.splice(at, 0, [index, index])
    return true
  }

  /** The lowest free node subnet, now counted as used; undefined when the range is exhausted. */
  next(): Cidr | undefined {
    for (; this.cursor < this.blocked.length; this.cursor++) {
      const [lo, hi] = this.blocked[this.cursor]!
      if (lo > this.candidate) break
      if (hi >= this.candidate) this.candidate = hi + 1n
    }
    if (this.candidate >= this.plan.count) return undefined
    const index = this.candidate
    this.candidate++
    return subnetAt(this.plan.cluster, this.plan.prefixLength, index)
  }
}

/** The lowest node subnet of the plan that overlaps none of the used subnets; undefined when exhausted. */
export function lowestFreeNodeSubnet(plan: NodeSubnetPlan, used: readonly Cidr[]): Cidr | undefined {
  return new NodeSubnetAllocator(plan, used).next()
}
