// Where a lab's pieces live and what they are called. Everything a lab creates in the kernel is a
// network namespace named `fnlab-<lab>-<role>`, and everything on disk sits under
// `/run/flatnet-lab/<lab>/`: `lab down` finds all of it from the lab name alone, even when the
// state file is gone. /run is a tmpfs, so the files vanish on reboot together with the namespaces.
import { join } from 'node:path'
import type { IpFamily } from '../ipam/cidr.js'

export const NETNS_PREFIX = 'fnlab-'
export const DEFAULT_LAB_NAME = 'default'
export const DEFAULT_LAB_ROOT = '/run/flatnet-lab'

/** The node network: any private range works (nothing leaves the lab), but not the cluster range. */
export const LAB_NETWORK = {
  cidr: '172.30.0.0/24',
  prefixLength: 24,
  /** "The outside": the nodes' default gateway, an address outside the cluster range. */
  outsideAddress: '172.30.0.1',
  /** The bridge's own address, where the lab's etcd listens. */
  infraAddress: '172.30.0.2',
  /** Node addresses are taken from here upwards. */
  firstNodeHost: 11,
  /** Below the LoadBalancer pool (LOAD_BALANCER_POOL): no node takes an address of it. */
  lastNodeHost: 239,
  bridge: 'br0',
} as const

/**
 * The node network's IPv6 side, in IPv6 and dual-stack labs: a ULA prefix (fd00::/8, never routed
 * beyond its site) whose host part mirrors the IPv4 one (172.30.0.11 ↔ fd00:172:30::11), so a
 * node reads the same in both families.
 */
export const LAB_NETWORK6 = {
  cidr: 'fd00:172:30::/64',
  prefixLength: 64,
  outsideAddress: 'fd00:172:30::1',
  infraAddress: 'fd00:172:30::2',
} as const

/**
 * The lab's LoadBalancer addresses, as cloud-provider-kind takes them from kind's own network: the
 * top of the node network (hosts 240-254, no node uses them), mirrored in IPv6. The outside
 * namespace routes the pool to the nodes, whose service proxy DNATs these addresses.
 */
export const LOAD_BALANCER_POOL = {
  firstHost: 240,
  lastHost: 254,
  cidrs: { 4: '172.30.0.240/28', 6: 'fd00:172:30::240/123' },
} as const

/** Which families a lab runs, as kind's `networking.ipFamily` names them. */
export const IP_FAMILIES = ['ipv4', 'ipv6', 'dual'] as const
export type LabIpFamily = (typeof IP_FAMILIES)[number]
export const DEFAULT_IP_FAMILY: LabIpFamily = 'ipv4'

/** The address families of a lab, primary first (dual-stack is IPv4-primary, as kind's default). */
export function familiesOf(ipFamily: LabIpFamily): IpFamily[] {
  return ipFamily === 'ipv4' ? [4] : ipFamily === 'ipv6' ? [6] : [4, 6]
}

export const DEFAULT_CLUSTER_CIDR = '10.244.0.0/16'
/** kind's pod subnets: 10.244.0.0/16 and fd00:10:244::/56 (a /64 per node, 256 nodes). */
export const DEFAULT_CLUSTER_CIDR6 = 'fd00:10:244::/56'

/** The cluster ranges of a lab of these families, in family order. */
export function defaultClusterCidrs(ipFamily: LabIpFamily): string[] {
  return familiesOf(ipFamily).map((f) => (f === 4 ? DEFAULT_CLUSTER_CIDR : DEFAULT_CLUSTER_CIDR6))
}
/** The Service ranges (flatnetd's --service-cidr, `apply --service-cidr`): kind's 10.96.0.0/16, and an IPv6 /112 beside it. */
export const DEFAULT_SERVICE_CIDR = '10.96.0.0/16'
export const DEFAULT_SERVICE_CIDR6 = 'fd00:10:96::/112'

/** The Service ranges of a lab of these families, in family order. */
export function serviceCidrsOf(ipFamily: LabIpFamily): string[] {
  return familiesOf(ipFamily).map((f) => (f === 4 ? DEFAULT_SERVICE_CIDR : DEFAULT_SERVICE_CIDR6))
}

/** Where the lab's probe services listen, in pods, nodes and the outside namespace. */
export const PROBE_PORT = 7300
export const ETCD_CLIENT_PORT = 2379

/**
 * Lab names carry no '-': the namespace prefix `fnlab-<lab>-` must not be a prefix of another
 * lab's (lab `a` would otherwise sweep lab `a-b`'s namespaces).
 */
const labNameSyntax = /^[a-z0-9]{1,24}$/

export function checkLabName(name: string): void {
  if (!labNameSyntax.test(name)) {
    throw new Error(`lab name ${JSON.stringify(name)}: use 1-24 lower-case letters and digits (no '-', it separates the parts of namespace names)`)
  }
}

export interface LabLayout {
  name: string
  /** `fnlab-<lab>-`: every namespace of this lab starts with it. */
  prefix: string
  dir: string
  stateFile: string
  lockFile: string
  /** The shared file datastore of all nodes. */
  datastoreFile: string
  etcdDir: string
  /** Holds the bridge (the node network) and the lab's etcd. */
  netNetns: string
  /** Plays the world outside the cluster: the nodes' default gateway (flat), or behind the router (routed). */
  outsideNetns: string
  /** A routed lab's router between its segments (no such namespace in a flat lab). */
  routerNetns: string
}

export function labLayout(name: string, root = DEFAULT_LAB_ROOT): LabLayout {
  checkLabName(name)
  const dir = join(root, name)
  const prefix = `${NETNS_PREFIX}${name}-`
  return {
    name,
    prefix,
    dir,
    stateFile: join(dir, 'lab.json'),
    lockFile: join(dir, 'lab.lock'),
    datastoreFile: join(dir, 'nodes.json'),
    etcdDir: join(dir, 'etcd'),
    netNetns: `${prefix}net`,
    outsideNetns: `${prefix}outside`,
    routerNetns: `${prefix}router`,
  }
}

export interface NodeLayout {
  dir: string
  cniConfDir: string
  cniBinDir: string
  ipamDir: string
  stateDir: string
  /** The node's flatnetd serves CNI calls here (the fast path). */
  cniSocket: string
  conflist: string
  log: string
  pidFile: string
}

export function nodeLayout(lab: LabLayout, nodeName: string): NodeLayout {
  const dir = join(lab.dir, 'nodes', nodeName)
  const cniConfDir = join(dir, 'cni', 'net.d')
  return {
    dir,
    cniConfDir,
    cniBinDir: join(dir, 'cni', 'bin'),
    ipamDir: join(dir, 'ipam'),
    stateDir: join(dir, 'state'),
    conflist: join(cniConfDir, '10-flatnet.conflist'),
    cniSocket: join(dir, 'state', 'cni.sock'),
    log: join(dir, 'flatnetd.log'),
    pidFile: join(dir, 'flatnetd.pid'),
  }
}

export function nodeName(id: number): string {
  return `node${id}`
}

export function nodeNetns(lab: LabLayout, node: string): string {
  return `${lab.prefix}${node}`
}

/** The bridge port of a node, in the net namespace (interface names are at most 15 bytes). */
export function bridgePortName(nodeId: number): string {
  return `n${nodeId}`
}

/** pod1a, pod1b, …, pod1z, pod1aa: short, so the check's matrix stays readable. */
export function podName(nodeId: number, ordinal: number): string {
  let suffix = ''
  let n = ordinal
  do {
    suffix = String.fromCharCode(97 + (n % 26)) + suffix
    n = Math.floor(n / 26) - 1
  } while (n >= 0)
  return `pod${nodeId}${suffix}`
}

export function podNetns(lab: LabLayout, pod: string): string {
  return `${lab.prefix}${pod}`
}

/** The address of host number `host` in the lab network (172.30.0.<host>, or fd00:172:30::<host>). */
export function labAddress(host: number, family: IpFamily = 4): string {
  if (!Number.isInteger(host) || host < 1 || host > 254) throw new Error(`lab network has no host number ${host}`)
  return family === 4 ? LAB_NETWORK.cidr.replace(/0\/24$/, String(host)) : `${LAB_NETWORK6.cidr.replace(/::\/64$/, '')}::${host}`
}

/** The node network of one family: its CIDR, prefix length, the outside's and the bridge's address. */
export function labNetworkOf(family: IpFamily): { cidr: string; prefixLength: number; outsideAddress: string; infraAddress: string } {
  return family === 4 ? LAB_NETWORK : LAB_NETWORK6
}

/**
 * How the nodes are wired. `flat`: one L2 segment, every node on-link with every other (kind, one
 * rack). `routed`: the nodes spread over two or more L2 segments joined by a router namespace
 * that routes only node addresses, so a peer on another segment is reachable only through an
 * overlay (the case flatnet's VXLAN backend exists for).
 */
export const TOPOLOGIES = ['flat', 'routed'] as const
export type LabTopology = (typeof TOPOLOGIES)[number]
export const DEFAULT_TOPOLOGY: LabTopology = 'flat'

/** flatnetd's --backend values (the daemon's default is auto). */
export const BACKENDS = ['host-gw', 'vxlan', 'auto'] as const
export type LabBackend = (typeof BACKENDS)[number]
export const DEFAULT_BACKEND: LabBackend = 'auto'

/**
 * Segments of a routed lab: 2 by default (with round-robin placement, 3 nodes already give a
 * mixed lab: node1 and node3 share a segment, node2 is alone on the other). At most 9: the
 * segment number is one digit of the address in both families (172.30.<s>.h, fd00:172:30:<s>::h).
 */
export const DEFAULT_SEGMENTS = 2
export const MAX_SEGMENTS = 9

/**
 * A routed lab's addressing. Segment s is 172.30.s.0/24 (fd00:172:30:s::/64), a bridge `br<s>`
 * in the net namespace, the router at host 1 on it (every node's default gateway). The outside
 * hangs off the router on its own link, "segment" 255: it is reached only through the router, as
 * the internet is from a cluster. The whole node address space (172.30.0.0/16, fd00:172:30::/48)
 * is what the router, the outside and the net namespace route; pod ranges are routed by nobody.
 */
export const ROUTED_NETWORK = {
  aggregate: { 4: '172.30.0.0/16', 6: 'fd00:172:30::/48' },
  uplinkSegment: 255,
  routerHost: 1,
  /** On the uplink: the outside is host 1, the router host 2. */
  uplinkOutsideHost: 1,
  uplinkRouterHost: 2,
} as const

/** Host `host` of segment `segment` (segment 0 is the flat lab's network: labAddress(host)). */
export function segmentAddress(segment: number, host: number, family: IpFamily = 4): string {
  if (!Number.isInteger(host) || host < 1 || host > 254) throw new Error(`lab network has no host number ${host}`)
  if (!Number.isInteger(segment) || segment < 0 || segment > 255) throw new Error(`lab network has no segment ${segment}`)
  return family === 4 ? `172.30.${segment}.${host}` : segment === 0 ? `fd00:172:30::${host}` : `fd00:172:30:${segment}::${host}`
}

/** The CIDR of one segment in one family. */
export function segmentCidr(segment: number, family: IpFamily): string {
  return family === 4 ? `172.30.${segment}.0/24` : segment === 0 ? 'fd00:172:30::/64' : `fd00:172:30:${segment}::/64`
}

/** The bridge of segment s in the net namespace; segment 0's is the flat lab's `br0`. */
export function segmentBridge(segment: number): string {
  return `br${segment}`
}

/** Round-robin: node id 1 on segment 0, id 2 on segment 1, … (ids are never reused, so neither is a placement). */
export function segmentOfNode(id: number, segments: number): number {
  return (id - 1) % segments
}

/** The host number of a node address (its last group, read as the decimal it mirrors). */
export function hostOfAddress(address: string): number {
  return Number.parseInt(address.split(/[.:]/).pop()!, 10)
}
