// The plugin end to end on real namespaces: every verb, as a runtime calls it, judged by the
// kernel's state and the store's files — never by what the plugin says it did.
import t, { type Test } from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { testDir, testNamespaces, testRanges, inNetns, run, link, routes, ipv4Of, links } from '../e2e/helpers/index.js'
import type { Netns } from '../e2e/helpers/netns.js'
import { cniOnNode, makeNode } from './testing/testHarness.js'
import { hostVethName } from './wiring.js'
import { AddStep } from './crashpoints.js'

const PATH_ENV = '/opt/cni/bin'

interface Setup {
  node: Netns
  conf: Record<string, unknown>
  storeDir: string
  range: ReturnType<typeof testRanges>[number]
  newPod(): Promise<Netns>
  env(pod: Netns | undefined, id: string, extra?: Record<string, string>): Record<string, string>
}

async function setup(t: Test, tag: string, version = '1.1.0'): Promise<Setup> {
  const spaces = testNamespaces(t, tag)
  const { dir } = testDir(t, tag)
  const node = await spaces.create('node')
  await makeNode(node)
  const [range] = testRanges(1)
  const conf = { cniVersion: version, name: 'net1', type: 'flatnet', ranges: [range.cidr], dataDir: dir, mtu: 1450 }
  let n = 0
  return {
    node,
    conf,
    range,
    storeDir: join(dir, 'net1'),
    newPod: () => spaces.create(`pod${++n}`),
    env: (pod, id, extra = {}) => ({ CNI_CONTAINERID: id, CNI_NETNS: pod?.path ?? '', CNI_IFNAME: 'eth0', CNI_PATH: PATH_ENV, ...extra }),
  }
}

function reservations(dir: string): string[] {
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
        .sort()
    : []
}

async function ping(from: Netns, to: string): Promise<boolean> {
  return (await inNetns(from, ['busybox', 'ping', '-c', '1', '-W', '2', to])).code === 0
}

t.test('ADD wires the pod ptp-style; the pod reaches the gateway and the node reaches the pod', async (t) => {
  const s = await setup(t, 'padd')
  const pod = await s.newPod()
  const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-a', { CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=ctr-a;K8S_POD_UID=u1' }), config: s.conf })
  t.equal(add.code, 0, add.stdout + add.stderr)
  const result = add.json as {
    cniVersion: string
    interfaces: Array<{ name: string; mac: string; sandbox?: string; mtu?: number }>
    ips: Array<{ address: string; gateway: string; interface: number }>
    routes: unknown[]
  }
  const podIp = `${s.range.base}2`
  const hostVeth = hostVethName('ctr-a', 'eth0')
  t.equal(result.cniVersion, '1.1.0')
  t.same(result.ips, [{ address: `${podIp}/32`, gateway: s.range.gateway, interface: 1 }])
  t.same(result.routes, [{ dst: '0.0.0.0/0', gw: s.range.gateway }])
  t.equal(result.interfaces[0].name, hostVeth)
  t.equal(result.interfaces[1].name, 'eth0')
  t.equal(result.interfaces[1].sandbox, pod.path)

  // pod side, as the kernel has it
  const eth0 = await link('eth0', pod)
  t.ok(eth0?.flags.includes('UP'), 'eth0 up')
  t.equal(eth0?.mtu, 1450)
  t.equal(eth0?.address, result.interfaces[1].mac, 'result MAC is the real one')
  t.ok((await link('lo', pod))?.flags.includes('UP'), 'lo up')
  t.same(await ipv4Of('eth0', pod), [`${podIp}/32`])
  const podRoutes = await routes(pod)
  t.ok(
    podRoutes.some((r) => r.dst === '0.0.0.0/0' && r.gateway === s.range.gateway && r.dev === 'eth0'),
    'default via gateway',
  )
  t.ok(
    podRoutes.some((r) => r.dst === `${s.range.gateway}/32` && r.scope === 'link' && r.dev === 'eth0'),
    'gateway scope link',
  )

  // host side
  const hv = await link(hostVeth, s.node)
  t.ok(hv?.flags.includes('UP'), 'host veth up')
  t.equal(hv?.mtu, 1450)
  t.same(await ipv4Of(hostVeth, s.node), [`${s.range.gateway}/32`])
  t.ok(
    (await routes(s.node)).some((r) => r.dst === `${podIp}/32` && r.dev === hostVeth && r.scope === 'link'),
    'host route to the pod',
  )
  t.equal((await run(['ip', 'netns', 'exec', s.node.name, 'cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim(), '1', 'forwarding enabled on the node')

  // the store
  t.same(reservations(s.storeDir), [podIp])
  const record = JSON.parse(readFileSync(join(s.storeDir, podIp), 'utf8'))
  t.match(record, { address: podIp, containerId: 'ctr-a', ifname: 'eth0', podNamespace: 'default', podName: 'web-0', hostVeth })

  // traffic, both ways
  t.ok(await ping(pod, s.range.gateway), 'pod → gateway')
  t.ok(await ping(s.node, podIp), 'node → pod')
})

t.test('CHECK passes on what ADD made and names what went missing', async (t) => {
  const s = await setup(t, 'pchk')
  const pod = await s.newPod()
  const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-c'), config: s.conf })
  t.equal(add.code, 0)
  const check = await cniOnNode(s.node, 'CHECK', { env: s.env(pod, 'ctr-c'), config: { ...s.conf, prevResult: add.json } })
  t.equal(check.code, 0, check.stdout)
  t.equal(check.stdout, '')
  await inNetns(pod, ['ip', 'route', 'del', 'default'])
  const bad = await cniOnNode(s.node, 'CHECK', { env: s.env(pod, 'ctr-c'), config: { ...s.conf, prevResult: add.json } })
  t.equal(bad.code, 1)
  t.match(bad.json, { code: 103, msg: /default route via .* is missing/ })
  const noPrev = await cniOnNode(s.node, 'CHECK', { env: s.env(pod, 'ctr-c'), config: s.conf })
  t.match(noPrev.json, { code: 7, msg: /prevResult/ })
})

t.test('DEL is idempotent and works with an empty, a deleted or a missing namespace', async (t) => {
  const s = await setup(t, 'pdel')
  const podA = await s.newPod()
  const podB = await s.newPod()
  const podC = await s.newPod()
  for (const [pod, id] of [
    [podA, 'ctr-1'],
    [podB, 'ctr-2'],
    [podC, 'ctr-3'],
  ] as const) {
    t.equal((await cniOnNode(s.node, 'ADD', { env: s.env(pod, id), config: s.conf })).code, 0)
  }
  t.equal(reservations(s.storeDir).length, 3)

  // twice, normally
  for (let i = 0; i < 2; i++) {
    const del = await cniOnNode(s.node, 'DEL', { env: s.env(podA, 'ctr-1'), config: s.conf })
    t.equal(del.code, 0, del.stdout)
    t.equal(del.stdout, '', 'DEL prints nothing on success')
  }
  t.notOk(await link(hostVethName('ctr-1', 'eth0'), s.node), 'host veth gone')
  t.notOk(await link('eth0', podA), 'pod interface gone')

  // containerd after the task exited: CNI_NETNS empty
  t.equal((await cniOnNode(s.node, 'DEL', { env: s.env(undefined, 'ctr-2'), config: s.conf })).code, 0)
  t.notOk(await link(hostVethName('ctr-2', 'eth0'), s.node))

  // the namespace was deleted before DEL (a reboot, a crashed runtime)
  await run(['ip', 'netns', 'del', podC.name])
  t.equal((await cniOnNode(s.node, 'DEL', { env: s.env(podC, 'ctr-3'), config: s.conf })).code, 0)
  t.notOk(await link(hostVethName('ctr-3', 'eth0'), s.node))

  t.same(reservations(s.storeDir), [], 'every address released')
  t.same(
    (await routes(s.node)).filter((r) => r.protocol === '201'),
    [],
    'no pod route left on the node',
  )
})

t.test('ADD onto an existing interface fails clearly and changes nothing', async (t) => {
  const s = await setup(t, 'pexist')
  const pod = await s.newPod()
  await inNetns(pod, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other0'])
  const before = (await links(s.node)).length
  const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-x'), config: s.conf })
  t.equal(add.code, 1)
  t.match(add.json, { code: 102, msg: `interface eth0 already exists in ${pod.path}` })
  t.same(reservations(s.storeDir), [])
  t.equal((await links(s.node)).length, before, 'no link created on the node')
})

for (const point of [AddStep.afterReserve, AddStep.afterVeth, AddStep.afterPodSide, AddStep.afterHostSide]) {
  t.test(`a failed ADD (${point}) rolls back: no veth, no route, no reservation`, async (t) => {
    const s = await setup(t, 'proll')
    const pod = await s.newPod()
    const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-r'), config: s.conf, hooks: { FLATNET_TEST_FAIL_AT: point } })
    t.equal(add.code, 1)
    t.match(add.json, { code: 5, msg: new RegExp(`induced failure at ${point}`) })
    t.notOk(await link(hostVethName('ctr-r', 'eth0'), s.node), 'no host veth')
    t.notOk(await link('eth0', pod), 'no pod interface')
    t.same(
      (await routes(s.node)).filter((r) => r.protocol === '201'),
      [],
      'no host route',
    )
    t.same(reservations(s.storeDir), [], 'no reservation')
    // and the same attachment can then be added for real
    t.equal((await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-r'), config: s.conf })).code, 0)
  })
}

t.test('a requested address (IP= in CNI_ARGS) is honoured or refused by name', async (t) => {
  const s = await setup(t, 'preq')
  const [p1, p2] = [await s.newPod(), await s.newPod()]
  const want = `${s.range.base}77`
  const a = await cniOnNode(s.node, 'ADD', { env: s.env(p1, 'ctr-1', { CNI_ARGS: `IP=${want}` }), config: s.conf })
  t.match(a.json, { ips: [{ address: `${want}/32` }] })
  const b = await cniOnNode(s.node, 'ADD', { env: s.env(p2, 'ctr-2', { CNI_ARGS: `IP=${want}` }), config: s.conf })
  t.equal(b.code, 1)
  t.match(b.json, { code: 101, msg: new RegExp(want.replace(/\./g, '\\.')) })
  t.notOk(await link('eth0', p2))
  const c = await cniOnNode(s.node, 'ADD', { env: s.env(p2, 'ctr-2'), config: { ...s.conf, runtimeConfig: { ips: [`${s.range.base}78/24`] } } })
  t.match(c.json, { ips: [{ address: `${s.range.base}78/32` }] })
})

t.test('CNI_NETNS that is not a network namespace is refused before anything is made', async (t) => {
  const s = await setup(t, 'pnotns')
  for (const netns of ['/etc/passwd', '/proc/self/ns/mnt', '/nonexistent/ns']) {
    const add = await cniOnNode(s.node, 'ADD', { env: { CNI_CONTAINERID: 'ctr-n', CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: PATH_ENV }, config: s.conf })
    t.equal(add.code, 1, netns)
    t.match(add.json, { code: netns.startsWith('/nonexistent') ? 3 : 4, msg: /CNI_NETNS/ }, netns)
  }
  t.same(reservations(s.storeDir), [])
  t.notOk(await link(hostVethName('ctr-n', 'eth0'), s.node))
})

t.test('each spec version gets its own result shape; verbs refuse versions too old for them', async (t) => {
  const s = await setup(t, 'pver')
  let id = 0
  for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    const pod = await s.newPod()
    const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, `ctr-v${++id}`), config: { ...s.conf, cniVersion: v } })
    t.equal(add.code, 0, `${v}: ${add.stdout}`)
    const r = add.json as { cniVersion: string; ips: Array<Record<string, unknown>>; interfaces: Array<Record<string, unknown>> }
    t.equal(r.cniVersion, v)
    if (v.startsWith('0.')) t.equal(r.ips[0].version, '4', `${v} ips carry version`)
    else t.notOk('version' in r.ips[0], `${v} ips carry no version`)
    t.equal('mtu' in r.interfaces[1], v === '1.1.0', `${v} interface mtu`)
  }
  const pod = await s.newPod()
  const check = await cniOnNode(s.node, 'CHECK', { env: s.env(pod, 'ctr-v1'), config: { ...s.conf, cniVersion: '0.3.1', prevResult: {} } })
  t.match(check.json, { code: 1, msg: /CHECK needs cniVersion 0\.4\.0/ })
  const status = await cniOnNode(s.node, 'STATUS', { env: { CNI_PATH: PATH_ENV }, config: { ...s.conf, cniVersion: '1.0.0' } })
  t.match(status.json, { code: 1, msg: /STATUS needs cniVersion 1\.1\.0/ })
  const gc = await cniOnNode(s.node, 'GC', { env: { CNI_PATH: PATH_ENV }, config: { ...s.conf, cniVersion: '1.0.0', 'cni.dev/valid-attachments': [] } })
  t.match(gc.json, { code: 1, msg: /GC needs cniVersion 1\.1\.0/ })
  const bad = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-x'), config: { ...s.conf, cniVersion: '0.2.0' } })
  t.match(bad.json, { code: 1, msg: /0\.2\.0/ })
  const version = await cniOnNode(s.node, 'VERSION', { config: { cniVersion: '0.4.0' } })
  t.same(version.json, { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] })
})

t.test('malformed input: one JSON error on stdout with the right code, nothing created', async (t) => {
  const s = await setup(t, 'pbad')
  const pod = await s.newPod()
  const cases: Array<[string, object | string, Record<string, string>, number]> = [
    ['broken JSON', '{"cniVersion":', s.env(pod, 'c1'), 6],
    ['empty stdin', '', s.env(pod, 'c1'), 6],
    ['bad CIDR', { ...s.conf, ranges: ['10.1.2.0/40'] }, s.env(pod, 'c1'), 7],
    ['missing ranges', { cniVersion: '1.1.0', name: 'net1', type: 'flatnet' }, s.env(pod, 'c1'), 7],
    ['missing CNI_IFNAME', s.conf, { CNI_CONTAINERID: 'c1', CNI_NETNS: pod.path, CNI_PATH: PATH_ENV }, 4],
    ['path traversal in container ID', s.conf, s.env(pod, '../../x'), 4],
    ['unknown CNI_ARGS key', s.conf, s.env(pod, 'c1', { CNI_ARGS: 'FOO=1' }), 4],
  ]
  for (const [what, config, env, code] of cases) {
    const r = await cniOnNode(s.node, 'ADD', { env, config })
    t.equal(r.code, 1, what)
    t.match(r.json, { code, msg: String }, what)
    t.equal(r.stdout.trim().split('\n').length, 1, `${what}: exactly one line on stdout`)
  }
  t.notOk(await link('eth0', pod))
  t.same(reservations(s.storeDir), [])
})

t.test('CNI_ARGS with IgnoreUnknown lets Kubernetes-style extra keys through', async (t) => {
  const s = await setup(t, 'pign')
  const pod = await s.newPod()
  const r = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-i', { CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p;SOMETHING_NEW=x' }), config: s.conf })
  t.equal(r.code, 0, r.stdout)
})
