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
import type { IpFamily } from '../ipam/cidr.js'
import { runOk } from './exec.js'
import { LAB_NETWORK, labNetworkOf, type LabLayout } from './layout.js'
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

/** Plugs a node namespace into the node network: eth0 with its addresses, a default route per family to the outside. */
export async function attachNode(lab: LabLayout, node: { netns: string; bridgePort: string; addresses: readonly string[] }, families: readonly IpFamily[]): Promise<void> {
  const { bridge } = LAB_NETWORK
  await addNetns(node.netns)
  await prepareIpv6(node.netns, families)
  await ipBatch(
    lab.netNetns,
    [`link add ${node.bridgePort} type veth peer name eth0 netns ${node.netns}`, `link set ${node.bridgePort} master ${bridge}`, `link set ${node.bridgePort} up`],
    `plug node namespace ${node.netns} into the node network`,
  )
  await ipBatch(
    node.netns,
    [...addressCommands('eth0', families, (f) => node.addresses[families.indexOf(f)]!), 'link set eth0 up', ...families.map((f) => `route add default via ${labNetworkOf(f).outsideAddress} dev eth0`)],
    `configure eth0 of node namespace ${node.netns}`,
  )
}
