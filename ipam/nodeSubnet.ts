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
    throw new CidrError(
      `node subnet prefix length ${prefixLength} does not fit cluster range ${cluster.text}: it must be between ${cluster.prefixLength} and ${bits}`,
    )
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
 * The lowest node subnet of the plan that overlaps none of the used subnets, or undefined when
 * the range is exhausted. Used subnets may be of any size or family (records written under an
 * older configuration): whatever they overlap is taken. O(n log n) in the number of used subnets.
 */
export function lowestFreeNodeSubnet(plan: NodeSubnetPlan, used: readonly Cidr[]): Cidr | undefined {
  const { cluster, prefixLength, count } = plan
  const step = 1n << BigInt(addressBits(cluster.family) - prefixLength)
  const clusterEnd = cluster.network + cidrSize(cluster) - 1n
  // Every used subnet blocks a run of node-subnet indices [lo, hi]; the answer is the first gap.
  const blocked: Array<[bigint, bigint]> = []
  for (const u of used) {
    if (u.family !== cluster.family) continue
    const start = u.network > cluster.network ? u.network : cluster.network
    const uEnd = u.network + cidrSize(u) - 1n
    const end = uEnd < clusterEnd ? uEnd : clusterEnd
    if (start > end) continue
    blocked.push([(start - cluster.network) / step, (end - cluster.network) / step])
  }
  blocked.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  let candidate = 0n
  for (const [lo, hi] of blocked) {
    if (lo > candidate) break
    if (hi >= candidate) candidate = hi + 1n
  }
  return candidate < count ? subnetAt(cluster, prefixLength, candidate) : undefined
}
