// What the API server does to a Service on its way into storage, as pure functions shared by the
// file and etcd backends (pkg/registry/core/service and pkg/apis/core/v1/defaults.go): the
// defaults (type ClusterIP, protocol TCP, targetPort = port, sessionAffinity None with a 10800 s
// ClientIP timeout, traffic policies Cluster, ipFamilies/ipFamilyPolicy from the cluster's service
// ranges), the update rules (clusterIP immutable, an apply without clusterIP or nodePort keeps the
// allocated ones, as kubectl's merge keeps them) and the allocation of cluster IPs from the service
// ranges and node ports from 30000-32767. Which addresses and ports are taken is the caller's to
// say, read in the same compare-and-swap that stores the result (fileStore.ts, etcdStore.ts), so two
// concurrent applies never get one address or port.
import type { IService, IServicePort } from 'kubernetes-models/v1'
import { CidrError, cidrContains, cidrSize, formatAddress, parseAddress, parseCidr, type Cidr, type IpFamily } from '../../ipam/index.js'
import { ObjectStoreError } from './store.js'

/** kind's default service range (and the API server's `--service-cluster-ip-range` default family). */
export const DEFAULT_SERVICE_CIDRS: readonly string[] = ['10.96.0.0/16']
/** The API server's default `--service-node-port-range`. */
export const NODE_PORT_RANGE = { first: 30000, last: 32767 } as const

type IpFamilyName = 'IPv4' | 'IPv6'
const familyName = (f: IpFamily): IpFamilyName => (f === 4 ? 'IPv4' : 'IPv6')

/** The service ranges, primary first, at most one per family (`--service-cidr 10.96.0.0/16,fd00:10:96::/112`). */
export function parseServiceCidrs(texts: readonly string[]): Cidr[] {
  const cidrs = texts.map((text) => {
    let c: Cidr
    try {
      c = parseCidr(text.trim())
    } catch (err) {
      throw new ObjectStoreError('invalid', `service range ${JSON.stringify(text)}: ${(err as CidrError).message}`)
    }
    // Network and broadcast are never handed out: anything smaller leaves no address.
    if (cidrSize(c) < 4n) throw new ObjectStoreError('invalid', `service range ${c.text}: too small (at least 4 addresses)`)
    return c
  })
  if (cidrs.length === 0 || cidrs.length > 2 || (cidrs.length === 2 && cidrs[0]!.family === cidrs[1]!.family))
    throw new ObjectStoreError('invalid', `service ranges ${JSON.stringify(texts.join(','))}: expected one range, or two of different families (dual-stack)`)
  return cidrs
}

/** The cluster IPs and node ports a stored Service holds. */
export function serviceAllocations(svc: IService | undefined): { ips: string[]; nodePorts: number[] } {
  const ips = (svc?.spec?.clusterIPs?.length ? svc.spec.clusterIPs : svc?.spec?.clusterIP ? [svc.spec.clusterIP] : []).filter((ip) => ip && ip !== 'None')
  const nodePorts = [...new Set((svc?.spec?.ports ?? []).map((p) => p.nodePort).filter((n): n is number => typeof n === 'number' && n > 0))]
  return { ips, nodePorts }
}

/** What other Services hold, as read inside the caller's compare-and-swap. */
export interface TakenAllocations {
  ips: Pick<ReadonlySet<string>, 'has'>
  nodePorts: Pick<ReadonlySet<number>, 'has'>
}

/**
 * Who holds each cluster IP and node port (`namespace/name`), kept up to date across the applies of
 * one transaction or one store's writes, so an apply costs no scan of every Service (10 000
 * Services applied in one batch would otherwise cost 10^8 look-ups).
 */
export class AllocationIndex {
  readonly ips = new Map<string, string>()
  readonly nodePorts = new Map<number, string>()

  static of(services: Iterable<IService>): AllocationIndex {
    const index = new AllocationIndex()
    for (const svc of services) index.hold(`${svc.metadata?.namespace ?? 'default'}/${svc.metadata?.name ?? ''}`, svc)
    return index
  }

  /** What every Service but `holder` holds. */
  takenBy(holder: string): TakenAllocations {
    return {
      ips: { has: (ip) => this.ips.has(ip) && this.ips.get(ip) !== holder },
      nodePorts: { has: (n) => this.nodePorts.has(n) && this.nodePorts.get(n) !== holder },
    }
  }

  hold(holder: string, svc: IService | undefined): void {
    const held = serviceAllocations(svc)
    for (const ip of held.ips) this.ips.set(ip, holder)
    for (const n of held.nodePorts) this.nodePorts.set(n, holder)
  }

  release(holder: string, svc: IService | undefined): void {
    const held = serviceAllocations(svc)
    for (const ip of held.ips) if (this.ips.get(ip) === holder) this.ips.delete(ip)
    for (const n of held.nodePorts) if (this.nodePorts.get(n) === holder) this.nodePorts.delete(n)
  }
}

const invalid = (name: string, detail: string) => new ObjectStoreError('invalid', `Service ${JSON.stringify(name)} is invalid: ${detail}`)

/**
 * The Service to store for an apply of `incoming` over `stored` (undefined: create): defaults,
 * what the update keeps, and its cluster IPs and node ports allocated, none of them in `taken`.
 * Throws 'invalid' naming the field and value (a requested address out of range or taken, a node
 * port taken or outside 30000-32767, a changed clusterIP, a range full).
 */
export function admitService(stored: IService | undefined, incoming: IService, taken: TakenAllocations, ranges: readonly Cidr[], random: () => number = Math.random): IService {
  const svc = structuredClone(incoming)
  const name = svc.metadata?.name ?? ''
  const spec = (svc.spec ??= {})
  const old = stored?.spec
  spec.type ??= 'ClusterIP'
  const externalName = spec.type === 'ExternalName'
  const external = spec.type === 'NodePort' || spec.type === 'LoadBalancer'

  for (const p of spec.ports ?? []) {
    p.protocol ??= 'TCP'
    if (!externalName) p.targetPort ??= p.port
  }
  spec.sessionAffinity ??= 'None'
  if (spec.sessionAffinity === 'ClientIP') {
    spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800 } }
  }
  if (external) spec.externalTrafficPolicy ??= 'Cluster'
  else delete spec.externalTrafficPolicy
  if (spec.type === 'LoadBalancer') spec.allocateLoadBalancerNodePorts ??= true
  if (!externalName) spec.internalTrafficPolicy ??= 'Cluster'

  // An apply without clusterIP keeps the allocated one (kubectl's merge never sends it back), unless
  // the type leaves or enters ExternalName, which releases or allocates.
  const oldIPs = serviceAllocations(stored).ips
  const oldHeadless = old?.clusterIP === 'None'
  const crossesExternalName = stored !== undefined && (old?.type === 'ExternalName') !== externalName
  if (stored && !crossesExternalName && !externalName) {
    if (spec.clusterIP === undefined && !spec.clusterIPs?.length) {
      if (oldHeadless) {
        spec.clusterIP = 'None'
        spec.clusterIPs = ['None']
      } else if (oldIPs.length) {
        spec.clusterIP = oldIPs[0]
        spec.clusterIPs = [...oldIPs]
        if (old?.ipFamilies) spec.ipFamilies ??= [...old.ipFamilies]
        if (old?.ipFamilyPolicy) spec.ipFamilyPolicy ??= old.ipFamilyPolicy
      }
    }
    const given = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : []
    const before = oldHeadless ? ['None'] : oldIPs
    // Upgrading single- to dual-stack may add the second address; the first never changes.
    if (before.length && given[0] !== before[0]) throw invalid(name, `spec.clusterIPs[0]: Invalid value: ${JSON.stringify(given[0] ?? '')}: may not change once set (was ${JSON.stringify(before[0])})`)
    if (given.length < before.length && spec.ipFamilyPolicy !== 'SingleStack')
      throw invalid(name, `spec.clusterIPs: Invalid value: ${JSON.stringify(given)}: may not remove ${JSON.stringify(before[1])} unless ipFamilyPolicy is SingleStack`)
  }

  if (externalName) {
    delete spec.clusterIP
    delete spec.clusterIPs
    delete spec.ipFamilies
    delete spec.ipFamilyPolicy
  } else allocateClusterIPs(name, spec, taken, ranges, random)

  // Node ports: kept across an apply that leaves them out (matched by port and protocol), given
  // ones checked, missing ones allocated; a type without node ports releases them.
  const oldNodePorts = new Map((old?.ports ?? []).filter((p) => p.nodePort).map((p) => [`${p.port}/${p.protocol ?? 'TCP'}`, p.nodePort!]))
  const wantsNodePorts = spec.type === 'NodePort' || (spec.type === 'LoadBalancer' && spec.allocateLoadBalancerNodePorts !== false)
  const chosen = new Set<number>()
  ;(spec.ports ?? []).forEach((p, i) => {
    if (!external) return void delete p.nodePort
    if (p.nodePort === undefined && (old?.type === 'NodePort' || old?.type === 'LoadBalancer')) {
      const kept = oldNodePorts.get(`${p.port}/${p.protocol}`)
      if (kept !== undefined) p.nodePort = kept
    }
    if (p.nodePort !== undefined) {
      checkNodePort(name, i, p, taken)
      chosen.add(p.nodePort)
    }
  })
  if (wantsNodePorts) {
    ;(spec.ports ?? []).forEach((p) => {
      if (p.nodePort !== undefined) return
      // The same port number for two protocols shares one node port, as the API server allocates.
      const sibling = (spec.ports ?? []).find((q) => q !== p && q.port === p.port && q.nodePort !== undefined)
      p.nodePort = sibling?.nodePort ?? pickNodePort(name, taken, chosen, random)
      chosen.add(p.nodePort)
    })
  }
  return svc
}

function checkNodePort(name: string, i: number, p: IServicePort, taken: TakenAllocations): void {
  const n = p.nodePort!
  if (!(n >= NODE_PORT_RANGE.first && n <= NODE_PORT_RANGE.last))
    throw invalid(name, `spec.ports[${i}].nodePort: Invalid value: ${n}: provided port is not in the valid range. The range of valid ports is ${NODE_PORT_RANGE.first}-${NODE_PORT_RANGE.last}`)
  if (taken.nodePorts.has(n)) throw invalid(name, `spec.ports[${i}].nodePort: Invalid value: ${n}: provided port is already allocated`)
}

function pickNodePort(name: string, taken: TakenAllocations, chosen: ReadonlySet<number>, random: () => number): number {
  const size = NODE_PORT_RANGE.last - NODE_PORT_RANGE.first + 1
  // A random start spreads concurrent writers over the range, so they rarely race for one port.
  const start = Math.floor(random() * size)
  for (let k = 0; k < size; k++) {
    const n = NODE_PORT_RANGE.first + ((start + k) % size)
    if (!taken.nodePorts.has(n) && !chosen.has(n)) return n
  }
  throw invalid(name, `spec.ports: Internal error: failed to allocate a nodePort: range is full`)
}

/** spec.ipFamilies / ipFamilyPolicy / clusterIPs as the API server settles them, then allocated. */
function allocateClusterIPs(name: string, spec: NonNullable<IService['spec']>, taken: TakenAllocations, ranges: readonly Cidr[], random: () => number): void {
  if (spec.clusterIP !== undefined && spec.clusterIP !== '' && !spec.clusterIPs?.length) spec.clusterIPs = [spec.clusterIP]
  const requested = (spec.clusterIPs ?? []).filter((ip) => ip !== '')
  const headless = requested[0] === 'None'
  const clusterFamilies = ranges.map((r) => r.family)
  const policy = spec.ipFamilyPolicy ?? 'SingleStack'
  spec.ipFamilyPolicy = policy
  // Families: the requested addresses', else the requested ipFamilies, else the primary range's.
  let families: IpFamily[]
  if (!headless && requested.length) {
    families = requested.map((ip, i) => {
      try {
        return parseAddress(ip).family
      } catch {
        throw invalid(name, `spec.clusterIPs[${i}]: Invalid value: ${JSON.stringify(ip)}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`)
      }
    })
  } else if (spec.ipFamilies?.length) families = spec.ipFamilies.map((f) => (f === 'IPv6' ? 6 : 4))
  else families = [clusterFamilies[0]!]
  if (policy !== 'SingleStack' && families.length === 1) {
    const other = clusterFamilies.find((f) => f !== families[0])
    if (other !== undefined) families.push(other)
  }
  if (policy === 'SingleStack') families = families.slice(0, 1)
  for (const [i, f] of families.entries()) {
    if (!clusterFamilies.includes(f)) {
      if (policy === 'PreferDualStack' && i > 0) {
        families = families.slice(0, i)
        break
      }
      throw invalid(name, `spec.ipFamilies[${i}]: Invalid value: ${JSON.stringify(familyName(f))}: not configured on this cluster (service ranges: ${ranges.map((r) => r.text).join(', ')})`)
    }
  }
  if (policy === 'RequireDualStack' && families.length < 2)
    throw invalid(name, `spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services (service ranges: ${ranges.map((r) => r.text).join(', ')})`)
  spec.ipFamilies = families.map(familyName)
  if (headless) {
    spec.clusterIP = 'None'
    spec.clusterIPs = ['None']
    return
  }
  const out: string[] = []
  families.forEach((f, i) => {
    const range = ranges.find((r) => r.family === f)!
    const want = requested[i]
    if (want !== undefined) {
      const a = parseAddress(want)
      const text = formatAddress(a.family, a.value)
      const lastValue = range.network + cidrSize(range) - 1n
      if (!cidrContains(range, a.family, a.value) || a.value === range.network || (f === 4 && a.value === lastValue))
        throw invalid(
          name,
          `spec.clusterIPs: Invalid value: ${JSON.stringify(requested)}: failed to allocate IP ${want}: the provided IP (${want}) is not in the valid range. The range of valid IPs is ${range.text}`,
        )
      if (taken.ips.has(text)) throw invalid(name, `spec.clusterIPs: Invalid value: ${JSON.stringify(requested)}: failed to allocate IP ${want}: provided IP is already allocated`)
      out.push(text)
    } else out.push(pickAddress(name, range, taken, random))
  })
  spec.clusterIP = out[0]
  spec.clusterIPs = out
}

/**
 * A free address of `range`, never its network address, its IPv4 broadcast or its first host
 * address (the API server gives that one to the `kubernetes` Service). As the API server's
 * allocator, dynamic picks come from above the range's low static band (1/16 of it, 16 to 256
 * addresses) while it has room, so addresses users ask for by number — 10.96.0.10 for cluster
 * DNS — stay free.
 */
function pickAddress(name: string, range: Cidr, taken: TakenAllocations, random: () => number): string {
  const size = cidrSize(range)
  const first = 2n // skip the network address and the `kubernetes` Service's
  const last = range.family === 4 ? size - 2n : size - 1n
  let band = size / 16n
  band = band < 16n ? 16n : band > 256n ? 256n : band
  const spans: Array<[bigint, bigint]> =
    band + 1n < last
      ? [
          [band, last],
          [first, band - 1n],
        ]
      : [[first, last]]
  for (const [lo, hi] of spans) {
    const count = hi - lo + 1n
    if (count <= 0n) continue
    // A random start, then the next free one: concurrent writers rarely want the same address. A
    // range bigger than 2^53 is only ever probed near its random start.
    const start = BigInt(Math.floor(random() * Number(count > 1n << 52n ? 1n << 52n : count)))
    const probes = count > 65536n ? 65536n : count
    for (let k = 0n; k < probes; k++) {
      const text = formatAddress(range.family, range.network + lo + ((start + k) % count))
      if (!taken.ips.has(text)) return text
    }
  }
  throw invalid(name, `spec.clusterIPs: Internal error: failed to allocate a serviceIP: range ${range.text} is full`)
}
