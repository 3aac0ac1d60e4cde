// The node checks: pure rules over plain host data, then readHostNetwork on a real namespace that
// plays a lab node (its node network 172.30.0.0/24 on lan0, a pod's host veth carrying the gateway).
import t from 'tap'
import { runOk, testNamespaces } from '../e2e/helpers/index.js'
import { openNetns, warmThreadPool } from '../net/netns.js'
import { closeRtnl, openRtnl } from '../net/rtnl.js'
import { clusterRangeProblems, duplicateAddressProblem, nodeAddressProblem, nodeConfigProblems, readHostNetwork, subnetProblems, type HostNetwork } from './nodeChecks.js'

/** A lab node: lo, the node network on lan0, and a pod gateway /32 on a host veth of another CNI. */
const labNode: HostNetwork = {
  addresses: [
    { address: '127.0.0.1', prefixLength: 8, ifname: 'lo' },
    { address: '::1', prefixLength: 128, ifname: 'lo' },
    { address: '172.30.0.2', prefixLength: 24, ifname: 'lan0' },
    { address: 'fe80::1', prefixLength: 64, ifname: 'lan0' },
    { address: '10.244.1.1', prefixLength: 32, ifname: 'vethpod' },
  ],
}
const base = { clusterCidrs: ['10.244.0.0/16'], serviceCidrs: ['10.96.0.0/16'], nodeIP: '172.30.0.2' }

t.test('the node address must be an address of this host, and not a loopback one', async (t) => {
  t.equal(nodeAddressProblem('172.30.0.2', labNode), undefined)
  t.match(nodeAddressProblem('172.30.0.3', labNode), /^node address 172\.30\.0\.3 is not an address of this host \(its IPv4 addresses: lan0 172\.30\.0\.2\/24, vethpod 10\.244\.1\.1\/32\)/)
  t.match(nodeAddressProblem('127.0.0.1', labNode), /node address 127\.0\.0\.1 is a loopback address/)
  t.match(nodeAddressProblem('fd00::2', labNode), /not an address of this host \(its IPv6 addresses: lan0 fe80::1\/64\)/)
  t.equal(nodeAddressProblem('fe80:0::1', labNode), undefined, 'compared as addresses, not as text')
  t.match(nodeAddressProblem('nonsense', labNode), /is not an IP address/)
})

t.test('a cluster range that fits the host has no problem', async (t) => {
  t.same(clusterRangeProblems({ ...base, nodeSubnets: ['10.244.1.0/24'] }, labNode), [])
  t.same(nodeConfigProblems({ ...base, nodeSubnets: ['10.244.1.0/24'] }, labNode), [])
})

t.test('a cluster range over the node network is refused, naming both (issue 8 item 2)', async (t) => {
  const problems = clusterRangeProblems({ ...base, clusterCidrs: ['172.30.0.0/16'] }, labNode)
  t.same(problems, [
    'cluster range 172.30.0.0/16 contains the node address 172.30.0.2: pods would be given addresses of the node network',
    "cluster range 172.30.0.0/16 overlaps the node network 172.30.0.0/24 of interface lan0 (this host's address 172.30.0.2/24): pods would take addresses this host reaches directly",
  ])
  // A range inside a wider connected network clashes too, though it does not contain the node address.
  t.match(clusterRangeProblems({ ...base, clusterCidrs: ['172.30.0.128/25'] }, labNode), [/overlaps the node network 172\.30\.0\.0\/24 of interface lan0/])
  t.match(clusterRangeProblems({ ...base, clusterCidrs: ['127.0.0.0/16'] }, labNode), [/overlaps the network 127\.0\.0\.0\/8 of interface lo/])
})

t.test('a cluster range over the service range is refused, naming both', async (t) => {
  t.same(clusterRangeProblems({ ...base, clusterCidrs: ['10.0.0.0/8'] }, labNode).slice(0, 1), [
    'cluster range 10.0.0.0/8 overlaps the service range 10.96.0.0/16: a pod address and a service address could be the same',
  ])
})

t.test('a pod gateway /32 inside the node subnet is not a connected network; outside it, it is', async (t) => {
  t.same(clusterRangeProblems({ ...base, nodeSubnets: ['10.244.1.0/24'] }, labNode), [])
  t.same(subnetProblems('10.244.1.0/24', base, labNode), [])
  // Without knowing the node's subnet, that /32 is an address of this host inside the cluster range.
  t.match(clusterRangeProblems(base, labNode), [/overlaps the network 10\.244\.1\.1\/32 of interface vethpod/])
  t.match(subnetProblems('10.244.2.0/23', base, labNode), [])
  t.match(subnetProblems('10.244.0.0/23', base, labNode), [], '/32 inside the subnet is its gateway')
  t.match(nodeConfigProblems({ ...base, nodeSubnets: ['10.244.2.0/24'] }, labNode), [/cluster range 10\.244\.0\.0\/16 overlaps the network 10\.244\.1\.1\/32 of interface vethpod/])
})

t.test('a claimed or assigned subnet over the node network, node address or service range is refused', async (t) => {
  t.same(subnetProblems('172.30.0.0/24', base, labNode), [
    'node subnet 172.30.0.0/24 contains the node address 172.30.0.2: pods would be given addresses of the node network',
    "node subnet 172.30.0.0/24 overlaps the node network 172.30.0.0/24 of interface lan0 (this host's address 172.30.0.2/24): pods would take addresses this host reaches directly",
  ])
  t.match(subnetProblems('10.96.3.0/24', base, labNode), [/node subnet 10\.96\.3\.0\/24 overlaps the service range 10\.96\.0\.0\/16/])
  t.match(subnetProblems('nonsense', base, labNode), [/is not a CIDR/])
})

t.test('nodeConfigProblems: the node address first, then the ranges', async (t) => {
  const problems = nodeConfigProblems({ ...base, nodeIP: '172.30.0.9', clusterCidrs: ['172.30.0.0/16'], nodeSubnets: ['172.30.0.0/24'] }, labNode)
  t.match(problems[0], /^node address 172\.30\.0\.9 is not an address of this host/)
  t.match(problems.slice(1), [/^cluster range 172\.30\.0\.0\/16 contains the node address 172\.30\.0\.9/, /^cluster range 172\.30\.0\.0\/16 overlaps the network 172\.30\.0\.0\/24 of interface lan0/])
  t.equal(problems.length, 3, 'the subnet inside the refused range is not named again')
})

t.test("a node list where another node has this node's address is a problem naming that node", async (t) => {
  const nodes = [
    { name: 'me', nodeIP: '172.30.0.2', subnet: '10.244.1.0/24' },
    { name: 'other', nodeIP: '172.30.0.3', subnet: '10.244.2.0/24' },
  ]
  t.equal(duplicateAddressProblem({ name: 'me', nodeIP: '172.30.0.2' }, nodes), undefined)
  t.equal(
    duplicateAddressProblem({ name: 'me', nodeIP: '172.30.0.2' }, [...nodes, { name: 'twin', nodeIP: '172.30.0.2', subnet: '10.244.3.0/24' }]),
    'node address 172.30.0.2 is also the address of node twin (subnet 10.244.3.0/24): peers cannot tell the two nodes apart',
  )
})

t.test("readHostNetwork reads every address of the host but those on flatnet's own host veths and VXLAN device", async (t) => {
  await warmThreadPool()
  const nss = testNamespaces(t, 'nchk')
  const ns = await nss.create()
  const ip = (...args: string[]) => runOk(['ip', '-n', ns.name, ...args])
  await ip('link', 'set', 'lo', 'up')
  await ip('link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan1')
  await ip('addr', 'add', '172.30.0.2/24', 'dev', 'lan0')
  // A flatnet host veth (name and alias as the plugin makes them) carrying the pod gateway,
  await ip('link', 'add', 'fn0123456789abc', 'type', 'veth', 'peer', 'name', 'pod0')
  await ip('link', 'set', 'fn0123456789abc', 'alias', 'flatnet:flatnet:eth0:c1')
  await ip('addr', 'add', '10.244.1.1/32', 'dev', 'fn0123456789abc')
  // one the plugin left without its alias (an ADD killed in between),
  await ip('link', 'add', 'fn0123456789abd', 'type', 'veth', 'peer', 'name', 'pod1')
  await ip('addr', 'add', '10.244.1.1/32', 'dev', 'fn0123456789abd')
  // flatnet's VXLAN device with the network address of another node subnet (a restarted daemon
  // checks the host before it knows its subnet again),
  await ip('link', 'add', 'flatnet.vxlan', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'nolearning')
  await ip('addr', 'add', '10.244.7.0/32', 'dev', 'flatnet.vxlan')
  // and a look-alike that is not flatnet's: its alias says so.
  await ip('link', 'add', 'fn0123456789abe', 'type', 'veth', 'peer', 'name', 'pod2')
  await ip('link', 'set', 'fn0123456789abe', 'alias', 'someone else')
  await ip('addr', 'add', '10.244.9.0/24', 'dev', 'fn0123456789abe')
  const handle = openNetns(ns.path)
  const rtnl = openRtnl(handle)
  t.teardown(() => {
    closeRtnl(rtnl)
    handle.close()
  })
  const host = await readHostNetwork(rtnl)
  const v4 = host.addresses
    .filter((a) => !a.address.includes(':'))
    .map((a) => `${a.ifname} ${a.address}/${a.prefixLength}`)
    .sort()
  t.same(v4, ['fn0123456789abe 10.244.9.0/24', 'lan0 172.30.0.2/24', 'lo 127.0.0.1/8'])
  t.same(nodeConfigProblems({ ...base, nodeSubnets: ['10.244.1.0/24'] }, host), [
    "cluster range 10.244.0.0/16 overlaps the network 10.244.9.0/24 of interface fn0123456789abe (this host's address 10.244.9.0/24): pods would take addresses this host reaches directly",
  ])
  await ip('addr', 'del', '10.244.9.0/24', 'dev', 'fn0123456789abe')
  t.same(nodeConfigProblems({ ...base, nodeSubnets: ['10.244.1.0/24'] }, await readHostNetwork(rtnl)), [])
  t.match(nodeConfigProblems({ ...base, clusterCidrs: ['172.30.0.0/16'] }, await readHostNetwork(rtnl)), [
    /^cluster range 172\.30\.0\.0\/16 contains the node address 172\.30\.0\.2/,
    /overlaps the node network 172\.30\.0\.0\/24 of interface lan0/,
  ])
})
