// The node network: a bridge in a namespace of its own (net.bridge.bridge-nf-call-iptables is 1 by
// default, so bridged frames go through the FORWARD chain of the bridge's namespace: in a namespace
// of its own they meet no host iptables rule), an "outside" namespace on it that is every node's
// default gateway (flatnetd finds its node IP through the default route, and masquerade has
// somewhere to go), and one veth per node whose node end is the node's `eth0`. Each family of the
// lab gets its addresses and its default route on it.
//
// IPv6 needs three things set explicitly, because a new namespace starts with the kernel's IPv6
// defaults rather than the host's:
// - duplicate address detection: every address is added `nodad`, and `accept_dad=0` is the
//   default of the lab's own namespaces (a tentative address stays unusable for 1–2 s, and a route
//   through a tentative gateway is refused with EINVAL);
// - router advertisements: `accept_ra=0`, the lab's routes are static;
// - the bridge's MLD snooping: off (`mcast_snooping 0`), it can drop the neighbour solicitations
//   nodes send to each other's solicited-node multicast groups.
// Forwarding is left alone: turning it on in a node is flatnetd's job, and the lab proves it does.
//
// A routed lab (createRoutedNetwork) has one bridge per segment in the net namespace and a router
// namespace with a leg on each and an uplink to the outside; see layout.ts for its addresses.
import type { IpFamily } from '../ipam/cidr.js'
import { runOk } from './exec.js'
import { LAB_NETWORK, ROUTED_NETWORK, labNetworkOf, segmentAddress, segmentBridge, segmentCidr, type LabLayout } from './layout.js'
import { addNetns } from './namespaces.js'

/** Runs iproute2 commands in one namespace with a single process (`ip -n NS -batch -`). */
export async function ipBatch(netns: string, commands: readonly string[], what: string): Promise<void> {
  await runOk(['ip', '-n', netns, '-batch', '-'], { input: commands.join('\n') + '\n', what })
}

/** IPv6 defaults of a lab namespace, set before its interfaces exist (`default` applies to new ones). */
const IPV6_LAB_SYSCTLS = ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_ra=0', 'net.ipv6.conf.default.accept_ra=0']

async function prepareIpv6(netns: string, families: readonly IpFamily[]): Promise<void> {
  if (!families.includes(6)) return
  await runOk(['ip', 'netns', 'exec', netns, 'sysctl', '-qw', ...IPV6_LAB_SYSCTLS], { what: `set IPv6 defaults (no DAD, no RA) in ${netns}` })
}

/** `address add` of each family for one interface; IPv6 ones `nodad` (see above). */
function addressCommands(dev: string, families: readonly IpFamily[], addressOf: (family: IpFamily) => string): string[] {
  return families.map((f) => `address add ${addressOf(f)}/${labNetworkOf(f).prefixLength} dev ${dev}${f === 6 ? ' nodad' : ''}`)
}

export async function createNodeNetwork(lab: LabLayout, families: readonly IpFamily[]): Promise<void> {
  const { bridge } = LAB_NETWORK
  await addNetns(lab.netNetns)
  await addNetns(lab.outsideNetns)
  await prepareIpv6(lab.netNetns, families)
  await prepareIpv6(lab.outsideNetns, families)
  await ipBatch(
    lab.netNetns,
    [
      `link add ${bridge} type bridge mcast_snooping 0`,
      `link set ${bridge} up`,
      ...addressCommands(bridge, families, (f) => labNetworkOf(f).infraAddress),
      `link add outside type veth peer name eth0 netns ${lab.outsideNetns}`,
      `link set outside master ${bridge}`,
      'link set outside up',
    ],
    `create the node network in ${lab.netNetns}`,
  )
  await ipBatch(lab.outsideNetns, [...addressCommands('eth0', families, (f) => labNetworkOf(f).outsideAddress), 'link set eth0 up'], `configure the outside namespace ${lab.outsideNetns}`)
}

/** One segment of a routed lab, as the state records it. */
export interface Segment {
  segment: number
  bridge: string
  /** Per family, in the lab's family order. */
  cidrs: string[]
  /** The router's address on it, per family: the default gateway of its nodes. */
  gateways: string[]
}

export function routedSegments(count: number, families: readonly IpFamily[]): Segment[] {
  return Array.from({ length: count }, (_, segment) => ({
    segment,
    bridge: segmentBridge(segment),
    cidrs: families.map((f) => segmentCidr(segment, f)),
    gateways: families.map((f) => segmentAddress(segment, ROUTED_NETWORK.routerHost, f)),
  }))
}

const prefixLength = (family: IpFamily) => (family === 4 ? 24 : 64)

/**
 * The routed node network: a bridge per segment in the net namespace (segment 0's carries the
 * lab's infra address, where etcd listens, exactly as in a flat lab), a router namespace with one
 * veth leg per segment and an uplink to the outside. The router forwards between them and knows
 * only its connected networks: node addresses. No pod range is routed anywhere, so a pod on
 * another segment is reachable only through an overlay between the nodes.
 */
export async function createRoutedNetwork(lab: LabLayout, families: readonly IpFamily[], segments: readonly Segment[]): Promise<void> {
  const { aggregate, uplinkSegment, uplinkOutsideHost, uplinkRouterHost } = ROUTED_NETWORK
  for (const ns of [lab.netNetns, lab.routerNetns, lab.outsideNetns]) {
    await addNetns(ns)
    await prepareIpv6(ns, families)
  }
  await runOk(['ip', 'netns', 'exec', lab.routerNetns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', ...(families.includes(6) ? ['net.ipv6.conf.all.forwarding=1'] : [])], {
    what: `turn on forwarding in the router ${lab.routerNetns}`,
  })
  const routerOf = (f: IpFamily) => segmentAddress(0, ROUTED_NETWORK.routerHost, f)
  await ipBatch(
    lab.netNetns,
    [
      ...segments.flatMap((s) => [`link add ${s.bridge} type bridge mcast_snooping 0`, `link set ${s.bridge} up`]),
      ...addressCommands(segmentBridge(0), families, (f) => labNetworkOf(f).infraAddress),
      // etcd answers nodes of every segment: through the router, like any host on segment 0
      ...families.map((f) => `route add ${aggregate[f]} via ${routerOf(f)} dev ${segmentBridge(0)}`),
    ],
    `create the segment bridges in ${lab.netNetns}`,
  )
  await ipBatch(
    lab.routerNetns,
    [
      ...segments.flatMap((s) => [
        `link add seg${s.segment} type veth peer name r${s.segment} netns ${lab.netNetns}`,
        ...families.map((f, i) => `address add ${s.gateways[i]}/${prefixLength(f)} dev seg${s.segment}${f === 6 ? ' nodad' : ''}`),
        `link set seg${s.segment} up`,
      ]),
      `link add uplink type veth peer name eth0 netns ${lab.outsideNetns}`,
      ...families.map((f) => `address add ${segmentAddress(uplinkSegment, uplinkRouterHost, f)}/${prefixLength(f)} dev uplink${f === 6 ? ' nodad' : ''}`),
      'link set uplink up',
    ],
    `create the router ${lab.routerNetns}`,
  )
  await ipBatch(
    lab.netNetns,
    segments.flatMap((s) => [`link set r${s.segment} master ${s.bridge}`, `link set r${s.segment} up`]),
    `plug the router into the segments in ${lab.netNetns}`,
  )
  await ipBatch(
    lab.outsideNetns,
    [
      ...families.map((f) => `address add ${segmentAddress(uplinkSegment, uplinkOutsideHost, f)}/${prefixLength(f)} dev eth0${f === 6 ? ' nodad' : ''}`),
      'link set eth0 up',
      // replies to nodes (masqueraded pod traffic included) go back through the router
      ...families.map((f) => `route add ${aggregate[f]} via ${segmentAddress(uplinkSegment, uplinkRouterHost, f)} dev eth0`),
    ],
    `configure the outside namespace ${lab.outsideNetns}`,
  )
}

/** The outside's addresses in a routed lab, per family. */
export function routedOutsideAddresses(families: readonly IpFamily[]): string[] {
  return families.map((f) => segmentAddress(ROUTED_NETWORK.uplinkSegment, ROUTED_NETWORK.uplinkOutsideHost, f))
}

/**
 * Plugs a node namespace into the node network: eth0 with its addresses on its segment's bridge
 * (`br0` in a flat lab), a default route per family to its gateway (the outside in a flat lab,
 * the router in a routed one).
 */
export async function attachNode(
  lab: LabLayout,
  node: { netns: string; bridgePort: string; addresses: readonly string[] },
  families: readonly IpFamily[],
  segment: { bridge: string; gateways: readonly string[] } = { bridge: LAB_NETWORK.bridge, gateways: families.map((f) => labNetworkOf(f).outsideAddress) },
): Promise<void> {
  const { bridge } = segment
  await addNetns(node.netns)
  await prepareIpv6(node.netns, families)
  await ipBatch(
    lab.netNetns,
    [`link add ${node.bridgePort} type veth peer name eth0 netns ${node.netns}`, `link set ${node.bridgePort} master ${bridge}`, `link set ${node.bridgePort} up`],
    `plug node namespace ${node.netns} into the node network`,
  )
  await ipBatch(
    node.netns,
    [...addressCommands('eth0', families, (f) => node.addresses[families.indexOf(f)]!), 'link set eth0 up', ...families.map((f, i) => `route add default via ${segment.gateways[i]} dev eth0`)],
    `configure eth0 of node namespace ${node.netns}`,
  )
}
