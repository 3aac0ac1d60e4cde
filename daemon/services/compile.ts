// ServiceModels → what the service proxy wants in each family's table, as plain data: the chains
// of every Service port and endpoint, the affinity sets, and the elements of the four verdict maps.
// Pure; table.ts renders it (whole, or as the difference from what was written last) and the
// reconciler (../reconcilers/services.ts) applies it in one `nft -f -` transaction.
//
// The layout is the one kube-proxy's nftables mode proved:
// - `service-ips` maps `daddr . l4proto . dport` of every cluster, external and load-balancer IP
//   to `goto` a chain of its Service port; `service-nodeports` maps `l4proto . dport` to the same,
//   consulted only for the node's own addresses (`fib daddr type local`, loopback excluded).
// - `service-H-<ns>/<name>/<proto>/<port>` (cluster IPs) picks an endpoint and DNATs to it in one
//   rule, `dnat ip addr . port to numgen random mod N map { 0 : addr . port, … }` — or, when
//   sessionAffinity is ClientIP, the client's affinity entry first, then `numgen random` rules
//   (see choose()) to an endpoint chain.
// - `external-H-…` (NodePort, external and load-balancer IPs): marks for masquerade unless
//   externalTrafficPolicy is Local, then picks among the endpoints that policy allows.
// - `endpoint-H-…__<addr>/<port>`, only for Services with session affinity: records the client in
//   the endpoint's affinity set, and DNATs. Without affinity no endpoint has a chain: kube-proxy's
//   one chain per endpoint made 10 000 Services × 10 endpoints ~110 000 chains, and nft 1.0.6
//   fetches every chain of the table before applying any change.
// - Hairpin (an endpoint reaching itself through its Service) is caught after the DNAT, in nat
//   postrouting, by the set `endpoint-hairpins` of `addr . addr` pairs of every endpoint (nft cannot
//   compare saddr with daddr): a pair appears once whatever the number of Services sharing the pod.
// - A Service port whose IP or node port has no ready endpoint to send to goes in
//   `no-endpoint-services` / `no-endpoint-nodeports`, checked by filter chains that reject it.
// The `H` in names is a hash of the rest, so a chain name is unique whatever the length of names.
import type { IpFamily } from '../../ipam/index.js'
import { serviceKey, type ServiceEndpoint, type ServiceModel, type ServicePortModel } from './model.js'

/** The four verdict maps, by name; keys and values in nft syntax. */
export const SERVICE_MAPS = ['service-ips', 'service-nodeports', 'no-endpoint-services', 'no-endpoint-nodeports'] as const
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
  /** Chain name → rules, for every Service port, external and endpoint chain; endpoint chains first. */
  chains: Map<string, string[]>
  sets: Map<string, AffinitySet>
  /** `addr . addr` of every endpoint DNATed to: its connections to itself are masqueraded (hairpin). Shared between Services. */
  hairpins: Set<string>
  /** Per map: key → verdict. */
  elements: Record<ServiceMapName, Map<string, string>>
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
 * it is not (an IPv6 address spelt with dots) and costs next to nothing: a sync of 10 000 Services
 * names 110 000 chains, and a SHA-256 each was a measurable share of it.
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
    elements: { 'service-ips': new Map(), 'service-nodeports': new Map(), 'no-endpoint-services': new Map(), 'no-endpoint-nodeports': new Map() },
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
 * Several plans as one (each Service compiled on its own: their chains, sets and elements are
 * disjoint, being named and keyed by the Service's own addresses and ports).
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

function compilePort(out: FamilyServices, s: ServiceModel, p: ServicePortModel, fam: IpFamily, clusterIPs: string[], externalIPs: string[], node: ServicesNode, stats: ServicesPlan['stats']): void {
  const a = ipKw(fam)
  const id = servicePortId(s, p)
  const proto = p.protocol.toLowerCase()
  const ready = p.endpoints.filter((e) => e.ready && familyOf(e.address) === fam)
  const local = (e: ServiceEndpoint) => e.nodeName === node.nodeName
  const internal = s.internalTrafficLocal ? ready.filter(local) : ready
  const external = s.externalTrafficLocal ? ready.filter(local) : ready
  stats.endpoints += ready.length
  const affinity = s.sessionAffinityTimeoutSeconds

  const endpointChain = (e: ServiceEndpoint) => {
    const name = `endpoint-${hash(`${fam}/${id}/${endpointText(e)}`)}-${id}__${endpointText(e)}`
    if (!out.chains.has(name)) out.chains.set(name, [`update @${affinitySet(e).name} { ${a} saddr }`, `meta l4proto ${proto} dnat to ${dnatTarget(e)}`])
    return name
  }
  const affinitySet = (e: ServiceEndpoint): AffinitySet => {
    // The timeout is part of the name: a changed timeout is a new set, never an edited one.
    const set = { name: `affinity-${hash(`${fam}/${id}/${endpointText(e)}/${affinity}`)}`, timeout: affinity ?? 0 }
    out.sets.set(set.name, set)
    return set
  }
  const choose = (eps: ServiceEndpoint[]): string[] => {
    for (const e of eps) out.hairpins.add(`${e.address} . ${e.address}`)
    if (affinity === undefined) {
      // numgen random mod N gives each endpoint 1/N; the map is anonymous data (not a verdict map),
      // which the kernel's loop check of jumps does not walk.
      if (eps.length === 1) return [`meta l4proto ${proto} dnat to ${dnatTarget(eps[0]!)}`]
      return [`meta l4proto ${proto} dnat ${a} addr . port to numgen random mod ${eps.length} map { ${eps.map((e, i) => `${i} : ${e.address} . ${e.port}`).join(', ')} }`]
    }
    const chains = eps.map(endpointChain)
    const rules = eps.map((e, i) => `${a} saddr @${affinitySet(e).name} goto ${chains[i]}`)
    // With affinity, one rule per endpoint, each taking 1 of the endpoints left: rule i matches with probability
    // 1/(N-i) among the packets that reach it, so every endpoint gets 1/N. Not one
    // `numgen random mod N vmap { … }`: each such rule is an anonymous verdict map, and the kernel
    // checks every jump or goto added to the table for loops through all of the table's verdict
    // maps — quadratic in Services: 5 000 Services × 10 endpoints took 50 s to load that way and
    // 9.7 s this way, here (bench/services.ts). Only a connection's first packet passes here (NAT).
    chains.forEach((c, i) => rules.push(i === chains.length - 1 ? `goto ${c}` : `numgen random mod ${chains.length - i} 0 goto ${c}`))
    return rules
  }

  const serviceChain = `service-${hash(`${fam}/${id}`)}-${id}`
  if (internal.length && clusterIPs.length) {
    // Clients outside the cluster's pod ranges (the node itself, a host routing to cluster IPs) are
    // masqueraded so replies come back through this node; pods keep their own address.
    const masq = `${a} daddr ${set(clusterIPs)} ${a} saddr != @cluster-ranges jump mark-for-masquerade`
    out.chains.set(serviceChain, [masq, ...choose(internal)])
  }
  for (const ip of clusterIPs) {
    if (internal.length) out.elements['service-ips'].set(ipKey(ip, proto, p.port), `goto ${serviceChain}`)
    else out.elements['no-endpoint-services'].set(ipKey(ip, proto, p.port), REJECT)
  }
  if (internal.length === 0 && clusterIPs.length) stats.noEndpoints++

  const hasExternal = externalIPs.length > 0 || p.nodePort !== undefined
  if (!hasExternal) return
  const externalChain = `external-${hash(`${fam}/${id}`)}-${id}`
  if (external.length) {
    const rules: string[] = []
    // externalTrafficPolicy Cluster: the endpoint may be on another node, whose reply must come back
    // here to be un-NATed. Local keeps the client's address (only this node's endpoints serve).
    if (!s.externalTrafficLocal) rules.push('jump mark-for-masquerade')
    if (!s.externalTrafficLocal && internal === ready && out.chains.has(serviceChain)) rules.push(`goto ${serviceChain}`)
    else rules.push(...choose(external))
    out.chains.set(externalChain, rules)
  }
  const verdict = external.length ? `goto ${externalChain}` : REJECT
  for (const ip of externalIPs) out.elements[external.length ? 'service-ips' : 'no-endpoint-services'].set(ipKey(ip, proto, p.port), verdict)
  if (p.nodePort !== undefined) out.elements[external.length ? 'service-nodeports' : 'no-endpoint-nodeports'].set(nodePortKey(proto, p.nodePort), verdict)
}

const set = (xs: string[]) => (xs.length === 1 ? xs[0]! : `{ ${xs.join(', ')} }`)
