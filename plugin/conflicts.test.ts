// ADD refuses what is not its to take — someone's host route, a host address as gateway, a pod
// whose routing another interface owns, a live attachment's veth — with a code and a message
// naming the object, and changes nothing, not even what is in its way.
import t, { type Test } from 'tap'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { inNetns, link, links, routes, run, testDir, testNamespaces, testRanges, type Netns } from '../e2e/helpers/index.js'
import { cniOnNode, makeNode } from './testing/testHarness.js'
import { hostVethName } from './wiring.js'

async function setup(t: Test, tag: string) {
  const spaces = testNamespaces(t, tag)
  const { dir } = testDir(t, tag)
  const node = await spaces.create('node')
  await makeNode(node)
  const [range] = testRanges(1)
  const conf = { cniVersion: '1.1.0', name: 'net1', type: 'flatnet', ranges: [range.cidr], dataDir: dir, mtu: 1450 }
  let n = 0
  return {
    node,
    conf,
    range,
    newPod: () => spaces.create(`pod${++n}`),
    env: (pod: Netns, id: string, ifname = 'eth0') => ({ CNI_CONTAINERID: id, CNI_NETNS: pod.path, CNI_IFNAME: ifname, CNI_PATH: '/opt/cni/bin' }),
    reservations: () => (existsSync(join(dir, 'net1')) ? readdirSync(join(dir, 'net1')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []),
    hostVeths: async () => (await links(node)).filter((l) => /^fn[0-9a-f]{13}$/.test(l.ifname)).map((l) => l.ifname),
  }
}

t.test('a host route to the pod address that flatnet does not own fails ADD naming it, and survives ADD and DEL', async (t) => {
  const s = await setup(t, 'cfrt')
  const pod = await s.newPod()
  const podIp = `${s.range.base}2`
  await run(['ip', '-n', s.node.name, 'route', 'add', `${podIp}/32`, 'dev', 'lo', 'proto', 'static'])
  const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-r'), config: s.conf })
  t.equal(add.code, 1)
  t.match(add.json, { code: 101, msg: new RegExp(`pod address ${podIp.replaceAll('.', '\\.')} already has a host route \\(${podIp.replaceAll('.', '\\.')}/32 dev lo proto 4\\)`) })
  t.same(s.reservations(), [], 'no reservation kept')
  t.same(await s.hostVeths(), [], 'no host veth made')
  t.notOk(await link('eth0', pod), 'no pod interface made')
  t.equal((await cniOnNode(s.node, 'DEL', { env: s.env(pod, 'ctr-r'), config: s.conf })).code, 0)
  const kept = (await routes(s.node)).filter((r) => r.dst === podIp || r.dst === `${podIp}/32`)
  t.same(
    kept.map((r) => `${r.dev} ${r.protocol}`),
    ['lo static'],
    'the foreign route is still there, unchanged',
  )
})

t.test('a gateway that is already an address of the host is refused naming the address and its interface', async (t) => {
  const s = await setup(t, 'cfgw')
  // Pods already there: their host veths hold the gateway too, and that is no conflict.
  for (const id of ['ctr-g1', 'ctr-g2']) t.equal((await cniOnNode(s.node, 'ADD', { env: s.env(await s.newPod(), id), config: s.conf })).code, 0, `${id} added`)
  const veths = await s.hostVeths()
  t.equal(veths.length, 2)
  const pod = await s.newPod()
  // as if the range overlapped the node network and .1 were the node's router or its own address
  await run(['ip', '-n', s.node.name, 'address', 'add', `${s.range.gateway}/24`, 'dev', 'lo'])
  const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-g'), config: s.conf })
  t.equal(add.code, 1)
  t.match(add.json, { code: 7, msg: new RegExp(`gateway ${s.range.gateway.replaceAll('.', '\\.')} .* already an address of the host \\(.*/24 on lo\\)`) })
  t.same(s.reservations().length, 2, 'only the two earlier pods hold addresses')
  t.same(await s.hostVeths(), veths, 'no host veth made')
})

t.test('a pod that already has a default route is refused up front naming the interface holding it', async (t) => {
  const s = await setup(t, 'cfdr')
  const pod = await s.newPod()
  await inNetns(pod, ['ip', 'link', 'set', 'lo', 'up'])
  await inNetns(pod, ['ip', 'route', 'add', 'default', 'dev', 'lo'])
  const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-d'), config: s.conf })
  t.equal(add.code, 1)
  t.match(add.json, { code: 105, msg: /^attach eth0: the pod already has a default route \(0\.0\.0\.0\/0 dev lo proto \d+\)/ })
  t.same(s.reservations(), [])
  t.same(await s.hostVeths(), [])
  t.notOk(await link('eth0', pod))
})

t.test('a second flatnet interface in one pod is refused naming the first; the first keeps working', async (t) => {
  const s = await setup(t, 'cf2i')
  const pod = await s.newPod()
  t.equal((await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-2'), config: s.conf })).code, 0)
  const second = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-2', 'eth1'), config: s.conf })
  t.equal(second.code, 1)
  t.match(second.json, { code: 105, msg: /^attach eth1: the pod already has a default route \(0\.0\.0\.0\/0 via .* dev eth0/ })
  t.notOk(await link('eth1', pod), 'no eth1')
  t.same(await s.hostVeths(), [hostVethName('ctr-2', 'eth0')], 'only the first attachment’s host veth')
  t.same(s.reservations(), [`${s.range.base}2`], 'only the first reservation')
  t.equal((await inNetns(pod, ['busybox', 'ping', '-c', '1', '-W', '2', s.range.gateway])).code, 0, 'the first interface still routes')
})

t.test('ADD of a live attachment’s container ID and interface into another namespace is refused; the live pod keeps its veth', async (t) => {
  const s = await setup(t, 'cflv')
  const podA = await s.newPod()
  const podB = await s.newPod()
  t.equal((await cniOnNode(s.node, 'ADD', { env: s.env(podA, 'ctr-l'), config: s.conf })).code, 0)
  const hostVeth = hostVethName('ctr-l', 'eth0')
  const before = await link(hostVeth, s.node)
  const again = await cniOnNode(s.node, 'ADD', { env: s.env(podB, 'ctr-l'), config: s.conf })
  t.equal(again.code, 1)
  t.match(again.json, {
    code: 102,
    msg: new RegExp(`attach ctr-l/eth0 to ${podB.path}: host veth ${hostVeth} already exists \\(flatnet:net1:eth0:ctr-l\\) with its pod end in another network namespace`),
  })
  t.equal((await link(hostVeth, s.node))?.ifindex, before?.ifindex, 'the live host veth is the same device')
  t.ok(await link('eth0', podA), 'pod A keeps eth0')
  t.notOk(await link('eth0', podB), 'pod B got nothing')
  t.equal((await inNetns(podA, ['busybox', 'ping', '-c', '1', '-W', '2', s.range.gateway])).code, 0, 'pod A still routes')
})

t.test('CHECK verifies the host veth’s strict reverse-path filter', async (t) => {
  const s = await setup(t, 'cfrp')
  const pod = await s.newPod()
  const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-p'), config: s.conf })
  t.equal(add.code, 0)
  const check = () => cniOnNode(s.node, 'CHECK', { env: s.env(pod, 'ctr-p'), config: { ...s.conf, prevResult: add.json } })
  t.equal((await check()).code, 0)
  const hostVeth = hostVethName('ctr-p', 'eth0')
  await run(['ip', 'netns', 'exec', s.node.name, 'sysctl', '-qw', `net.ipv4.conf.${hostVeth}.rp_filter=0`])
  const bad = await check()
  t.equal(bad.code, 1)
  t.match(bad.json, { code: 103, msg: new RegExp(`reverse-path filter on host veth ${hostVeth} is 0, not 1`) })
})

t.test('two network names sharing a range cannot hand out one address twice; networks with ranges of their own can', async (t) => {
  const s = await setup(t, 'cfnw')
  const [podA, podB, podC] = [await s.newPod(), await s.newPod(), await s.newPod()]
  t.equal((await cniOnNode(s.node, 'ADD', { env: s.env(podA, 'ctr-a'), config: s.conf })).code, 0)
  const net2 = { ...s.conf, name: 'net2' }
  const second = await cniOnNode(s.node, 'ADD', { env: s.env(podB, 'ctr-b'), config: net2 })
  t.equal(second.code, 1)
  t.match(second.json, { code: 7, msg: new RegExp(`for network net2: network net1 uses the same addresses on this host \\(it holds ${s.range.base.replaceAll('.', '\\.')}2,`) })
  t.notOk(await link('eth0', podB), 'pod B got nothing')
  const net2Dir = join(s.conf.dataDir, 'net2')
  t.same(existsSync(net2Dir) ? readdirSync(net2Dir).filter((f) => /^\d/.test(f)) : [], [], 'net2 keeps no reservation')
  t.same(s.reservations(), [`${s.range.base}2`], 'net1 keeps its own')
  const [other] = testRanges(1).filter((r) => r.cidr !== s.range.cidr)
  if (other) {
    const net3 = { ...s.conf, name: 'net3', ranges: [other.cidr] }
    t.equal((await cniOnNode(s.node, 'ADD', { env: s.env(podC, 'ctr-c'), config: net3 })).code, 0, 'a network with its own range is unaffected')
  }
})
