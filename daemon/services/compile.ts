// ServiceModels → what the service proxy wants in each family's table, as plain data: the chains,
// the affinity sets, and the elements of the verdict and endpoint maps. Pure; table.ts renders it
// (whole, or as the difference from what was written last) and the reconciler
// (../reconcilers/services.ts) applies it in one `nft -f -` transaction.
//
// The dispatch is the one kube-proxy's nftables mode proved — `service-ips` maps `daddr . l4proto
// . dport` of every cluster, external and load-balancer IP to a verdict; `service-nodeports` maps
// `l4proto . dport` to one, consulted only for the node's own addresses (`fib daddr type local`,
// loopback excluded) — but a Service is data, not chains:
// - its verdict is `goto pick-<kind>-<N>`, a chain shared by every Service port with N endpoints
//   of that kind (cluster IP; external with externalTrafficPolicy Cluster or Local; node port, the
//   same two), which masquerades where the kind needs it and picks an endpoint in one rule:
//   `dnat ip to ip daddr . meta l4proto . th dport . numgen random mod N map @endpoint-addresses :
//   ip daddr . meta l4proto . th dport map @endpoint-ports` — `endpoint-addresses` holds
//   `addr . proto . port . i : endpoint address` for i in 0..N-1, `endpoint-ports` the target
//   port (`nodeport-addresses`/`nodeport-ports` the same keyed by `proto . port`). Each endpoint
//   gets 1/N; a map lookup costs the same whatever the number of Services.
// - Why not a chain per Service (kube-proxy's layout): nft 1.0.6 fetches every chain of a table
//   (and every anonymous map of their rules) before it applies any change to it, so adding one
//   Service to 10 000 took 306 ms with 10 000 chains; as map elements it writes its own elements
//   and nothing else. Chains of their own remain for the few Services that need them: session
//   affinity (see affinityChains), and a named targetPort that pods map to different numbers.
// - Hairpin (an endpoint reaching itself through its Service) is caught after the DNAT, in nat
//   postrouting, by the set `endpoint-hairpins` of `addr . addr` pairs of every endpoint (nft cannot
//   compare saddr with daddr): a pair appears once whatever the number of Services sharing the pod.
// - A Service port whose IP or node port has no ready endpoint to send to goes in
//   `no-endpoint-services` / `no-endpoint-nodeports`, checked by filter chains that reject it.
// Each element of the verdict maps carries the Service port as its comment (`ns/name:port`), so a
// listing still says which Service an address is.
import type { IpFamily } from '../../ipam/index.js'
import { serviceKey, type ServiceEndpoint, type ServiceModel, type ServicePortModel } from './model.js'

/** The verdict maps: a Service's address or node port → what to do with a new connection to it. */
export const VERDICT_MAPS = ['service-ips', 'service-nodeports', 'no-endpoint-services', 'no-endpoint-nodeports'] as const
/**
 * The endpoint maps: a Service's address or node port and an index → the endpoint's address; the
 * Service's address or node port → its endpoints' port.
 */
export const ENDPOINT_MAPS = ['endpoint-addresses', 'endpoint-ports', 'nodeport-addresses', 'nodeport-ports'] as const
export const SERVICE_MAPS = [...VERDICT_MAPS, ...ENDPOINT_MAPS] as const
export type ServiceMapName = (typeof SERVICE_MAPS)[number]

/** What the compiler needs to know of this node. */
export interface ServicesNode {
  /** This node's name: endpoints with this nodeName are local (traffic policies Local). */
  nodeName: string
  /** The cluster's pod ranges (CIDRs, any family): sources inside them are in-cluster clients, kept as they are. */
  clusterRanges: readonly string[]
}

/** One affinity set: the clients an endpoint served recently, each expiring after `timeout` seconds. */
export interface AffinitySet {
  name: string
  timeout: number
}

/** What one family's table holds beyond its fixed skeleton (table.ts). */
export interface FamilyServices {
  family: IpFamily
  /** The cluster ranges of this family. */
  clusterRanges: string[]
  /**
   * Chain name → rules: the shared `pick-…` chains the Services use (SHARED_CHAIN), and the chains
   * of Services with session affinity (their Service port, external and endpoint chains).
   */
  chains: Map<string, string[]>
  sets: Map<string, AffinitySet>
  /** `addr . addr` of every endpoint DNATed to: its connections to itself are masqueraded (hairpin). Shared between Services. */
  hairpins: Set<string>
  /** Per map: key → value (a verdict, or an endpoint's `addr . port`). */
  elements: Record<ServiceMapName, Map<string, string>>
  /** Element key of a verdict map → its comment: the Service port it stands for (`ns/name:port`). */
  comments: Map<string, string>
}

export interface ServicesPlan {
  families: FamilyServices[]
  stats: { services: number; servicePorts: number; endpoints: number; noEndpoints: number }
}

export const FAMILIES: readonly IpFamily[] = [4, 6]

export const familyOf = (address: string): IpFamily => (address.includes(':') ? 6 : 4)
const ipKw = (f: IpFamily) => (f === 4 ? 'ip' : 'ip6')

/**
 * 7 characters (FNV-1a, 32 bits, base 32) in front of the readable part of a name, as kube-proxy's
 * chain names carry a hash. The readable part is already unique; the hash keeps names distinct where
 * it is not (an IPv6 address spelt with dots) and costs next to nothing (a SHA-256 each was a
 * measurable share of a sync when every Service had chains).
 */
function hash(text: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return (h >>> 0).toString(32).toUpperCase().padStart(7, '0')
}

/** `ns/name/tcp/http`: a Service port as chain names spell it (its name, or its number when unnamed). */
export function servicePortId(s: ServiceModel, p: ServicePortModel): string {
  return `${serviceKey(s)}/${p.protocol.toLowerCase()}/${p.name || p.port}`
}

// nft identifiers allow letters, digits and `/ \ _ . -`; an IPv6 address's colons become dots
// (the hash keeps names distinct).
const endpointText = (e: ServiceEndpoint) => `${e.address.replace(/:/g, '.')}/${e.port}`

function dnatTarget(e: ServiceEndpoint): string {
  return familyOf(e.address) === 6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`
}

function emptyFamily(family: IpFamily, node: ServicesNode): FamilyServices {
  return {
    family,
    clusterRanges: node.clusterRanges.filter((r) => familyOf(r) === family),
    chains: new Map(),
    sets: new Map(),
    hairpins: new Set(),
    elements: Object.fromEntries(SERVICE_MAPS.map((m) => [m, new Map<string, string>()])) as FamilyServices['elements'],
    comments: new Map(),
  }
}

/** The map key of an address, protocol and port: `10.96.0.10 . udp . 53`. */
export const ipKey = (address: string, protocol: string, port: number) => `${address} . ${protocol.toLowerCase()} . ${port}`
export const nodePortKey = (protocol: string, port: number) => `${protocol.toLowerCase()} . ${port}`

const REJECT = 'goto reject-endpointless'

/** Both families' contents with nothing in them yet (the cluster ranges only). */
export function emptyPlan(node: ServicesNode): ServicesPlan {
  return { families: FAMILIES.map((f) => emptyFamily(f, node)), stats: { services: 0, servicePorts: 0, endpoints: 0, noEndpoints: 0 } }
}

/**
 * Several plans as one (each Service compiled on its own: their elements, sets and own chains are
 * disjoint, being named and keyed by the Service's own addresses and ports; a shared `pick-` chain
 * is the same in every plan that has it).
 */
export function mergePlans(parts: Iterable<ServicesPlan>, node: ServicesNode): ServicesPlan {
  const out = emptyPlan(node)
  for (const p of parts) {
    for (const [i, f] of p.families.entries()) {
      const o = out.families[i]!
      for (const [k, v] of f.chains) o.chains.set(k, v)
      for (const [k, v] of f.sets) o.sets.set(k, v)
      for (const h of f.hairpins) o.hairpins.add(h)
      for (const m of SERVICE_MAPS) for (const [k, v] of f.elements[m]) o.elements[m].set(k, v)
      for (const [k, v] of f.comments) o.comments.set(k, v)
    }
    for (const k of Object.keys(out.stats) as Array<keyof ServicesPlan['stats']>) out.stats[k] += p.stats[k]
  }
  return out
}

/** Compiles every Service into both families' table contents. Models are expected sorted (endpoints.ts sorts them). */
export function compileServices(models: readonly ServiceModel[], node: ServicesNode): ServicesPlan {
  const families = new Map(FAMILIES.map((f) => [f, emptyFamily(f, node)]))
  const stats = { services: 0, servicePorts: 0, endpoints: 0, noEndpoints: 0 }
  for (const s of models) {
    stats.services++
    for (const p of s.ports) {
      stats.servicePorts++
      for (const fam of FAMILIES) {
        const out = families.get(fam)!
        const clusterIPs = s.clusterIPs.filter((a) => familyOf(a) === fam)
        const externalIPs = [...s.externalIPs, ...s.loadBalancerIPs].filter((a) => familyOf(a) === fam)
        // A single-stack Service's node port is served in its own family only, as upstream does.
        if (clusterIPs.length === 0 && externalIPs.length === 0) continue
        compilePort(out, s, p, fam, clusterIPs, externalIPs, node, stats)
      }
    }
  }
  return { families: FAMILIES.map((f) => families.get(f)!), stats }
}

const NO_ENTRIES = new Map<never, never>()
const NO_MEMBERS = new Set<never>()

/**
 * The plan with every empty map and set of its families replaced by one shared empty instance,
 * for plans kept long (the services reconciler keeps one per Service): a Service uses 6 of a
 * family's 12 collections at most, one family only when single-stack, and 10 000 Services held
 * 240 000 collections. The result must not be changed (merge it with mergePlans into a new one).
 */
export function compactPlan(plan: ServicesPlan): ServicesPlan {
  const map = <K, V>(m: Map<K, V>): Map<K, V> => (m.size ? m : (NO_ENTRIES as Map<K, V>))
  return {
    stats: plan.stats,
    families: plan.families.map((f) => ({
      family: f.family,
      clusterRanges: f.clusterRanges,
      chains: map(f.chains),
      sets: map(f.sets),
      hairpins: f.hairpins.size ? f.hairpins : (NO_MEMBERS as Set<string>),
      elements: Object.fromEntries(SERVICE_MAPS.map((m) => [m, map(f.elements[m])])) as FamilyServices['elements'],
      comments: map(f.comments),
    })),
  }
}

/**
 * A chain shared by every Service port of one kind with N endpoints: `pick-<kind>-<N>`. Its rules
 * depend only on its name, the family and the cluster ranges, so it is written once and dropped
 * when no Service uses it any more.
 */
export const SHARED_CHAIN = /^pick-/

type PickKind = 'cluster' | 'external' | 'external-local' | 'nodeport' | 'nodeport-local'

/**
 * The rule that marks a new connection of `kind` for masquerade, if it needs it. Clients outside
 * the cluster's pod ranges (the node itself, a host routing to cluster IPs) are masqueraded so
 * replies come back through this node; pods keep their own address. External traffic with
 * externalTrafficPolicy Cluster may go to an endpoint on another node, whose reply must come back
 * here to be un-NATed; Local keeps the client's address.
 */
function masquerade(a: string, kind: PickKind): string[] {
  if (kind === 'cluster') return [`${a} saddr != @cluster-ranges jump mark-for-masquerade`]
  return kind === 'external' || kind === 'nodeport' ? ['jump mark-for-masquerade'] : []
}

/** The shared chain for `kind` and `n` endpoints, added to `out` with its rules. */
function pickChain(out: FamilyServices, kind: PickKind, n: number): string {
  const name = `pick-${kind}-${n}`
  if (out.chains.has(name)) return name
  const a = ipKw(out.family)
  const nodePort = kind.startsWith('nodeport')
  const key = nodePort ? 'meta l4proto . th dport' : `${a} daddr . meta l4proto . th dport`
  const [addresses, ports] = nodePort ? ['nodeport-addresses', 'nodeport-ports'] : ['endpoint-addresses', 'endpoint-ports']
  // The address by the index numgen draws, the port by the Service port alone: the endpoints of a
  // Service port that comes here share one target port. (One `addr . port` map would do, but nft
  // 1.0.6 cannot add a rule using a map whose `typeof` value has a port, once that map is in the
  // kernel: "conflicting protocols specified".) The port mapping needs a transport protocol match;
  // every protocol a Service can have is one.
  out.chains.set(name, [...masquerade(a, kind), `meta l4proto { tcp, udp, sctp } dnat ${a} to ${key} . numgen random mod ${n} map @${addresses} : ${key} map @${ports}`])
  return name
}

function compilePort(out: FamilyServices, s: ServiceModel, p: ServicePortModel, fam: IpFamily, clusterIPs: string[], externalIPs: string[], node: ServicesNode, stats: ServicesPlan['stats']): void {
  const a = ipKw(fam)
  const id = servicePortId(s, p)
  const comment = `${serviceKey(s)}:${p.name || p.port}`
  const proto = p.protocol.toLowerCase()
  const all = p.endpoints.filter((e) => familyOf(e.address) === fam)
  const local = (e: ServiceEndpoint) => e.nodeName === node.nodeName
  // Among the endpoints a traffic policy allows, the ready ones; none ready, the serving terminating ones.
  const usable = (eps: ServiceEndpoint[]) => {
    const ready = eps.filter((e) => e.ready)
    return ready.length ? ready : eps.filter((e) => e.servingTerminating)
  }
  const internal = usable(s.internalTrafficLocal ? all.filter(local) : all)
  const external = usable(s.externalTrafficLocal ? all.filter(local) : all)
  stats.endpoints += all.filter((e) => e.ready).length
  for (const e of new Set([...internal, ...external])) out.hairpins.add(`${e.address} . ${e.address}`)
  if (internal.length === 0 && clusterIPs.length) stats.noEndpoints++

  const verdict = (m: 'service-ips' | 'service-nodeports', key: string, target: string | undefined) => {
    out.elements[target ? m : m === 'service-ips' ? 'no-endpoint-services' : 'no-endpoint-nodeports'].set(key, target ? `goto ${target}` : REJECT)
    out.comments.set(key, comment)
  }
  if (s.sessionAffinityTimeoutSeconds !== undefined) {
    const chains = affinityChains(out, s, p, fam, clusterIPs, internal, external)
    for (const ip of clusterIPs) verdict('service-ips', ipKey(ip, proto, p.port), chains.cluster)
    for (const ip of externalIPs) verdict('service-ips', ipKey(ip, proto, p.port), chains.external)
    if (p.nodePort !== undefined) verdict('service-nodeports', nodePortKey(proto, p.nodePort), chains.external)
    return
  }
  // Endpoints with one target port are data in the shared chains' maps. A named targetPort that
  // different pods map to different numbers needs its own chain, picking `addr . port` pairs.
  const oneTargetPort = (eps: ServiceEndpoint[]) => eps.every((e) => e.port === eps[0]!.port)
  const ownChain = (name: string, kind: PickKind, eps: ServiceEndpoint[]) => {
    const pairs = eps.map((e, i) => `${i} : ${e.address} . ${e.port}`).join(', ')
    out.chains.set(name, [...masquerade(a, kind), `meta l4proto ${proto} dnat ${a} addr . port to numgen random mod ${eps.length} map { ${pairs} }`])
    return name
  }
  const target = (key: string, kind: PickKind, eps: ServiceEndpoint[], ownName: string): string | undefined => {
    if (eps.length === 0) return undefined
    if (!oneTargetPort(eps)) return ownChain(ownName, kind, eps)
    const nodePort = kind.startsWith('nodeport')
    eps.forEach((e, i) => out.elements[nodePort ? 'nodeport-addresses' : 'endpoint-addresses'].set(`${key} . ${i}`, e.address))
    out.elements[nodePort ? 'nodeport-ports' : 'endpoint-ports'].set(key, String(eps[0]!.port))
    return pickChain(out, kind, eps.length)
  }
  for (const ip of clusterIPs) {
    const key = ipKey(ip, proto, p.port)
    verdict('service-ips', key, target(key, 'cluster', internal, `service-${hash(`${fam}/${id}`)}-${id}`))
  }
  const externalChain = `external-${hash(`${fam}/${id}`)}-${id}`
  for (const ip of externalIPs) {
    const key = ipKey(ip, proto, p.port)
    verdict('service-ips', key, target(key, s.externalTrafficLocal ? 'external-local' : 'external', external, externalChain))
  }
  if (p.nodePort !== undefined) {
    const key = nodePortKey(proto, p.nodePort)
    verdict('service-nodeports', key, target(key, s.externalTrafficLocal ? 'nodeport-local' : 'nodeport', external, externalChain))
  }
}

/**
 * A Service port with sessionAffinity ClientIP: chains of its own, as kube-proxy has them. Each
 * endpoint has a chain that records the client in the endpoint's affinity set (a dynamic set with
 * the affinity's timeout) and DNATs; the Service port's chain sends a client found in an
 * endpoint's set back to it, and any other to a random endpoint. Returns the chains the verdict
 * maps lead to (undefined where there is no endpoint to send to).
 */
function affinityChains(
  out: FamilyServices,
  s: ServiceModel,
  p: ServicePortModel,
  fam: IpFamily,
  clusterIPs: string[],
  internal: ServiceEndpoint[],
  external: ServiceEndpoint[],
): { cluster?: string; external?: string } {
  const a = ipKw(fam)
  const id = servicePortId(s, p)
  const proto = p.protocol.toLowerCase()
  const timeout = s.sessionAffinityTimeoutSeconds!
  const affinitySet = (e: ServiceEndpoint): AffinitySet => {
    // The timeout is part of the name: a changed timeout is a new set, never an edited one.
    const set = { name: `affinity-${hash(`${fam}/${id}/${endpointText(e)}/${timeout}`)}`, timeout }
    out.sets.set(set.name, set)
    return set
  }
  const endpointChain = (e: ServiceEndpoint) => {
    const name = `endpoint-${hash(`${fam}/${id}/${endpointText(e)}`)}-${id}__${endpointText(e)}`
    if (!out.chains.has(name)) out.chains.set(name, [`update @${affinitySet(e).name} { ${a} saddr }`, `meta l4proto ${proto} dnat to ${dnatTarget(e)}`])
    return name
  }
  const choose = (eps: ServiceEndpoint[]): string[] => {
    const chains = eps.map(endpointChain)
    const rules = eps.map((e, i) => `${a} saddr @${affinitySet(e).name} goto ${chains[i]}`)
    // One rule per endpoint, each taking 1 of the endpoints left: rule i matches with probability
    // 1/(N-i) among the packets that reach it, so every endpoint gets 1/N. Not one
    // `numgen random mod N vmap { … }`: each such rule is an anonymous verdict map, and the kernel
    // checks every jump or goto added to the table for loops through all of the table's verdict
    // maps — quadratic in Services. Only a connection's first packet passes here (NAT).
    chains.forEach((c, i) => rules.push(i === chains.length - 1 ? `goto ${c}` : `numgen random mod ${chains.length - i} 0 goto ${c}`))
    return rules
  }
  const result: { cluster?: string; external?: string } = {}
  const serviceChain = `service-${hash(`${fam}/${id}`)}-${id}`
  if (internal.length && clusterIPs.length) {
    const masq = `${a} daddr ${set(clusterIPs)} ${a} saddr != @cluster-ranges jump mark-for-masquerade`
    out.chains.set(serviceChain, [masq, ...choose(internal)])
    result.cluster = serviceChain
  }
  if (external.length) {
    const externalChain = `external-${hash(`${fam}/${id}`)}-${id}`
    const rules: string[] = []
    if (!s.externalTrafficLocal) rules.push('jump mark-for-masquerade')
    if (!s.externalTrafficLocal && internal.length === external.length && result.cluster) rules.push(`goto ${serviceChain}`)
    else rules.push(...choose(external))
    out.chains.set(externalChain, rules)
    result.external = externalChain
  }
  return result
}

const set = (xs: string[]) => (xs.length === 1 ? xs[0]! : `{ ${xs.join(', ')} }`)
