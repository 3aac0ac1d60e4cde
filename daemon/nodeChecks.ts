// Checks of this node's configuration against the host it runs on: is the node address one of
// this host's addresses, and do the cluster range and the node's subnet stay clear of the node
// address, of every network this host is directly connected to, and of the service range?
//
// Why: a cluster range that contains the node network was accepted — a node then claimed the node
// network as its pod subnet, reported ready, and its first pod got the node network's gateway
// address. A --node-ip of another node was accepted — and every peer routed this node's pods to
// that other node. Both are operator mistakes only this host can see, so the daemon checks them.
//
// Split as the rest of the daemon: readHostNetwork reads the kernel once (tested on a real
// namespace); the rest are pure functions over plain data (tested without root). Each returns
// problems as sentences naming both sides of the clash; an empty list (or undefined) means fine.
import { cidrContains, cidrsOverlap, formatAddress, parseAddress, parseCidr, type Cidr, type IpFamily } from '../ipam/index.js'
import { listAddresses, listLinks, type RequestLimit, type Rtnl } from '../net/rtnl.js'

/** One address of this host, with the interface that holds it. */
export interface HostAddress {
  address: string
  prefixLength: number
  ifname: string
}

/** What the checks need to know about this host: its addresses (flatnet's own host veths left out). */
export interface HostNetwork {
  addresses: HostAddress[]
}

/** The configuration the checks judge. */
export interface NodeCheckInput {
  /** Cluster pod ranges (--cluster-cidr), CIDR text. */
  clusterCidrs: readonly string[]
  /** Service ranges (--service-cidr), CIDR text. */
  serviceCidrs: readonly string[]
  /** This node's address (--node-ip, or the one detected). */
  nodeIP: string
  /** Dual-stack: every address of this node, one per family (nodeIP among them); absent: [nodeIP]. */
  nodeIPs?: readonly string[]
  /**
   * This node's own subnet(s), when known: a full-length host address (/32, /128) inside one of
   * them is a pod gateway, not a network of this host (see isPodGateway).
   */
  nodeSubnets?: readonly string[]
}

// The plugin names the host end of every pod veth "fn" + 13 hex digits of a hash, and sets its
// alias to "flatnet:<network>:…" (plugin/wiring.ts hostVethName, hostVethAlias). Every one of them
// carries the gateway /32 of this node's subnet: that is the pod wiring, not a connected network.
// An ADD killed between creating the veth and setting its alias leaves one without an alias.
const FLATNET_HOST_VETH = /^fn[0-9a-f]{13}$/

function isFlatnetHostVeth(link: { name: string; kind?: string; alias?: string }): boolean {
  return FLATNET_HOST_VETH.test(link.name) && (link.kind === undefined || link.kind === 'veth') && (link.alias === undefined || link.alias.startsWith('flatnet:'))
}

// flatnet's own VXLAN devices (daemon/vxlan.ts VXLAN_DEVICE) carry the network address of this
// node's subnet (/32, /128): the tunnel's wiring, like a host veth's gateway, not a connected network.
// A restarted flatnetd checks the host before it knows its subnet again, and must not refuse it.
const FLATNET_VXLAN_DEVICE = /^flatnet\.vxlan6?$/

function isFlatnetWiring(link: { name: string; kind?: string; alias?: string }): boolean {
  return isFlatnetHostVeth(link) || (FLATNET_VXLAN_DEVICE.test(link.name) && (link.kind === undefined || link.kind === 'vxlan'))
}

/**
 * This host's addresses (every family, every interface, loopback included), leaving out those
 * on flatnet's own host veths and VXLAN devices. Reads the kernel (one link dump, one address dump).
 */
export async function readHostNetwork(rtnl: Rtnl, opts: RequestLimit = {}): Promise<HostNetwork> {
  // One dump at a time: the kernel answers a second dump on the same socket with EBUSY.
  const links = await listLinks(rtnl)
  const addresses = await listAddresses(rtnl, undefined, opts)
  const byIndex = new Map(links.map((l) => [l.index, l]))
  const out: HostAddress[] = []
  for (const a of addresses) {
    const link = byIndex.get(a.index)
    if (link && isFlatnetWiring(link)) continue
    out.push({ address: a.address, prefixLength: a.prefixLength, ifname: link?.name ?? `#${a.index}` })
  }
  return { addresses: out }
}

/** The network an address is on (its prefix), e.g. 172.30.0.0/24 for 172.30.0.2/24. */
function networkOf(a: HostAddress): Cidr | undefined {
  let parsed
  try {
    parsed = parseAddress(a.address)
  } catch {
    return undefined
  }
  const bits = parsed.family === 4 ? 32 : 128
  if (!Number.isInteger(a.prefixLength) || a.prefixLength < 0 || a.prefixLength > bits) return undefined
  const hostBits = (1n << BigInt(bits - a.prefixLength)) - 1n
  const network = parsed.value & ~hostBits
  return parseCidr(`${formatAddress(parsed.family, network)}/${a.prefixLength}`)
}

/** A full-length address (/32, /128) inside one of `subnets`: a pod gateway of this node, not a network. */
function isPodGateway(net: Cidr, subnets: readonly Cidr[]): boolean {
  const bits = net.family === 4 ? 32 : 128
  return net.prefixLength === bits && subnets.some((s) => cidrContains(s, net.family, net.network))
}

function tryCidr(text: string): Cidr | undefined {
  try {
    return parseCidr(text)
  } catch {
    return undefined
  }
}

function sameAddress(a: string, b: string): boolean {
  try {
    const x = parseAddress(a)
    const y = parseAddress(b)
    return x.family === y.family && x.value === y.value
  } catch {
    return false
  }
}

function isLoopback(address: string): boolean {
  const a = parseAddress(address)
  return a.family === 4 ? a.value >> 24n === 127n : a.value === 1n
}

/**
 * Why `nodeIP` cannot be this node's address, or undefined when it can: it must be one of this
 * host's own addresses (peers send this node's pod traffic to it), and not a loopback address
 * (no peer can reach one).
 */
export function nodeAddressProblem(nodeIP: string, host: HostNetwork): string | undefined {
  let family: IpFamily
  try {
    family = parseAddress(nodeIP).family
  } catch (e) {
    return `node address ${JSON.stringify(nodeIP)} is not an IP address: ${(e as Error).message}`
  }
  if (isLoopback(nodeIP)) return `node address ${nodeIP} is a loopback address: no peer can route this node's pods through it`
  if (host.addresses.some((a) => sameAddress(a.address, nodeIP))) return undefined
  const own = host.addresses.filter((a) => parseAddress(a.address).family === family && !isLoopback(a.address))
  const shown = own
    .slice(0, 8)
    .map((a) => `${a.ifname} ${a.address}/${a.prefixLength}`)
    .join(', ')
  return `node address ${nodeIP} is not an address of this host (its IPv${family} addresses: ${shown || 'none'}): peers would route this node's pods to whichever host has it`
}

function addressesOf(input: NodeCheckInput): string[] {
  return [...new Set([input.nodeIP, ...(input.nodeIPs ?? [])])]
}

/** Overlaps of `range` (described as `what`) with the node address, the service ranges and this host's networks. */
function rangeProblems(what: string, range: Cidr, input: NodeCheckInput, host: HostNetwork, gatewaySubnets: readonly Cidr[]): string[] {
  const problems: string[] = []
  const nodeIPs = addressesOf(input)
  for (const nodeIP of nodeIPs) {
    try {
      const node = parseAddress(nodeIP)
      if (cidrContains(range, node.family, node.value)) problems.push(`${what} ${range.text} contains the node address ${nodeIP}: pods would be given addresses of the node network`)
    } catch {
      // An unparsable node address is nodeAddressProblem's to report.
    }
  }
  for (const text of input.serviceCidrs) {
    const service = tryCidr(text)
    if (service && cidrsOverlap(range, service)) problems.push(`${what} ${range.text} overlaps the service range ${service.text}: a pod address and a service address could be the same`)
  }
  const seen = new Set<string>()
  for (const a of host.addresses) {
    const net = networkOf(a)
    if (!net || !cidrsOverlap(range, net) || isPodGateway(net, gatewaySubnets)) continue
    const key = `${a.ifname} ${net.text}`
    if (seen.has(key)) continue
    seen.add(key)
    const nodeNet = nodeIPs.some((ip) => sameAddress(a.address, ip)) ? 'the node network' : 'the network'
    problems.push(
      `${what} ${range.text} overlaps ${nodeNet} ${net.text} of interface ${a.ifname} (this host's address ${a.address}/${a.prefixLength}): pods would take addresses this host reaches directly`,
    )
  }
  return problems
}

/**
 * Why the cluster ranges do not fit this host: a range that contains the node address, overlaps
 * a service range, or overlaps a network this host is directly connected to (an address prefix
 * on any interface but flatnet's own host veths; pod gateways inside input.nodeSubnets are not
 * networks). Empty when they fit.
 */
export function clusterRangeProblems(input: NodeCheckInput, host: HostNetwork): string[] {
  const gateways = (input.nodeSubnets ?? []).map(tryCidr).filter((c): c is Cidr => c !== undefined)
  const problems: string[] = []
  for (const text of input.clusterCidrs) {
    const range = tryCidr(text)
    if (!range) {
      problems.push(`cluster range ${JSON.stringify(text)} is not a CIDR`)
      continue
    }
    problems.push(...rangeProblems('cluster range', range, input, host, gateways))
  }
  return problems
}

/**
 * Why `subnet` (claimed from the datastore, or assigned as Node.spec.podCIDRs) cannot be this
 * node's pod subnet: as clusterRangeProblems, for the one subnet; a full-length host address
 * inside the subnet itself (the pod gateway on a host veth) is not a clash.
 */
export function subnetProblems(subnet: string, input: Omit<NodeCheckInput, 'clusterCidrs'>, host: HostNetwork): string[] {
  const range = tryCidr(subnet)
  if (!range) return [`node subnet ${JSON.stringify(subnet)} is not a CIDR`]
  return rangeProblems('node subnet', range, { ...input, clusterCidrs: [] }, host, [range])
}

/**
 * Every problem of this node's configuration on this host, most fundamental first: the node
 * address, then the cluster ranges, then (when held) the node's subnets. Empty when it fits.
 */
export function nodeConfigProblems(input: NodeCheckInput, host: HostNetwork): string[] {
  const problems: string[] = []
  for (const nodeIP of addressesOf(input)) {
    const address = nodeAddressProblem(nodeIP, host)
    if (address) problems.push(address)
  }
  const cluster = clusterRangeProblems(input, host)
  problems.push(...cluster)
  // A subnet inside a refused cluster range repeats the same clash: name it once.
  if (cluster.length === 0) for (const s of input.nodeSubnets ?? []) problems.push(...subnetProblems(s, input, host))
  return problems
}

/**
 * Another node of the datastore's list holding this node's address, or undefined. Every
 * datastore refuses such a claim, but two claims racing in separate transactions can both land;
 * then both daemons see it here.
 */
export function duplicateAddressProblem(self: { name: string; nodeIP: string }, nodes: readonly { name: string; nodeIP: string; subnet?: string }[]): string | undefined {
  const others = nodes.filter((n) => n.name !== self.name && sameAddress(n.nodeIP, self.nodeIP))
  if (others.length === 0) return undefined
  const named = others.map((n) => `${n.name}${n.subnet ? ` (subnet ${n.subnet})` : ''}`).join(', ')
  return `node address ${self.nodeIP} is also the address of node ${named}: peers cannot tell the two nodes apart`
}
