// The node network: a bridge in a namespace of its own (net.bridge.bridge-nf-call-iptables is 1 by
// default, so bridged frames go through the FORWARD chain of the bridge's namespace: in a namespace
// of its own they meet no host iptables rule), an "outside" namespace on it that is every node's
// default gateway (flatnetd finds its node IP through the default route, and masquerade has
// somewhere to go), and one veth per node whose node end is the node's `eth0`.
import { runOk } from './exec.js'
import { LAB_NETWORK, type LabLayout } from './layout.js'
import { addNetns } from './namespaces.js'

/** Runs iproute2 commands in one namespace with a single process (`ip -n NS -batch -`). */
export async function ipBatch(netns: string, commands: readonly string[], what: string): Promise<void> {
  await runOk(['ip', '-n', netns, '-batch', '-'], { input: commands.join('\n') + '\n', what })
}

export async function createNodeNetwork(lab: LabLayout): Promise<void> {
  const { bridge, prefixLength, infraAddress, outsideAddress } = LAB_NETWORK
  await addNetns(lab.netNetns)
  await addNetns(lab.outsideNetns)
  await ipBatch(
    lab.netNetns,
    [
      `link add ${bridge} type bridge`,
      `link set ${bridge} up`,
      `address add ${infraAddress}/${prefixLength} dev ${bridge}`,
      `link add outside type veth peer name eth0 netns ${lab.outsideNetns}`,
      `link set outside master ${bridge}`,
      'link set outside up',
    ],
    `create the node network in ${lab.netNetns}`,
  )
  await ipBatch(lab.outsideNetns, [`address add ${outsideAddress}/${prefixLength} dev eth0`, 'link set eth0 up'], `configure the outside namespace ${lab.outsideNetns}`)
}

/** Plugs a node namespace into the node network: eth0 with its address, default route to the outside. */
export async function attachNode(lab: LabLayout, node: { netns: string; bridgePort: string; address: string }): Promise<void> {
  const { bridge, prefixLength, outsideAddress } = LAB_NETWORK
  await addNetns(node.netns)
  await ipBatch(
    lab.netNetns,
    [`link add ${node.bridgePort} type veth peer name eth0 netns ${node.netns}`, `link set ${node.bridgePort} master ${bridge}`, `link set ${node.bridgePort} up`],
    `plug node namespace ${node.netns} into the node network`,
  )
  await ipBatch(
    node.netns,
    [`address add ${node.address}/${prefixLength} dev eth0`, 'link set eth0 up', `route add default via ${outsideAddress} dev eth0`],
    `configure eth0 of node namespace ${node.netns}`,
  )
}
