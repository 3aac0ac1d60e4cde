// The plugin under load and at its limits, in separate processes as a runtime runs them:
// concurrent ADDs never share an address, the 254th pod of a /24 is refused by name, STATUS
// says so, and GC takes back exactly what the runtime no longer lists.
import t, { type Test } from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { testDir, testNamespaces, testRanges, run, links, routes } from '../e2e/helpers/index.js'
import type { Netns } from '../e2e/helpers/netns.js'
import { cniOnNode, makeNode } from './testing/testHarness.js'
import { hostVethName } from './wiring.js'

const env = (pod: Netns, id: string) => ({ CNI_CONTAINERID: id, CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' })

function reservations(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []
}

async function inBatches<T>(items: T[], size: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn))
}

async function hostVeths(node: Netns): Promise<string[]> {
  return (await links(node)).map((l) => l.ifname).filter((n) => /^fn[0-9a-f]{13}$/.test(n))
}

t.test('100 concurrent ADDs get 100 distinct addresses; the /24 is exhausted at exactly 253; GC reclaims all', async (t: Test) => {
  const spaces = testNamespaces(t, 'pscale')
  const { dir } = testDir(t, 'pscale')
  const node = await spaces.create('node')
  await makeNode(node)
  const [range] = testRanges(1)
  const conf = { cniVersion: '1.1.0', name: 'scale', type: 'flatnet', ranges: [range.cidr], dataDir: dir, mtu: 1500 }
  const storeDir = join(dir, 'scale')

  const pods: Netns[] = []
  await inBatches(
    Array.from({ length: 254 }, (_, i) => i),
    32,
    async (i) => {
      pods[i] = await spaces.create(`p${i}`)
    },
  )

  // 100 plugin processes started at once
  const first = await Promise.all(pods.slice(0, 100).map((pod, i) => cniOnNode(node, 'ADD', { env: env(pod, `c${i}`), config: conf })))
  const failed = first.filter((r) => r.code !== 0)
  t.equal(failed.length, 0, failed.map((r) => r.stdout).join('\n'))
  const got = first.map((r) => (r.json as { ips: Array<{ address: string }> }).ips[0].address)
  t.equal(new Set(got).size, 100, '100 distinct addresses in the results')
  t.equal(reservations(storeDir).length, 100, '100 reservation files')
  const owners = new Set(reservations(storeDir).map((a) => JSON.parse(readFileSync(join(storeDir, a), 'utf8')).containerId))
  t.equal(owners.size, 100, 'each file held by a different container')
  t.equal((await hostVeths(node)).length, 100, '100 host veths')

  // fill the rest of the range: .2–.254 is 253 pods
  const rest = await Promise.all(pods.slice(100, 253).map((pod, i) => cniOnNode(node, 'ADD', { env: env(pod, `c${100 + i}`), config: conf })))
  t.equal(rest.filter((r) => r.code !== 0).length, 0)
  t.equal(reservations(storeDir).length, 253)
  const all = reservations(storeDir)
    .map((a) => Number(a.split('.')[3]))
    .sort((a, b) => a - b)
  t.equal(all[0], 2, 'lowest pod address is .2')
  t.equal(all[252], 254, 'highest is .254')

  const over = await cniOnNode(node, 'ADD', { env: env(pods[253], 'c253'), config: conf })
  t.equal(over.code, 1)
  t.match(over.json, { code: 100, msg: `no free address in ${range.cidr}: 253 of 253 in use` })
  t.equal((await run(['ip', '-n', pods[253].name, 'link', 'show', 'eth0'])).code, 1, 'refused pod got no interface')

  const status = await cniOnNode(node, 'STATUS', { env: { CNI_PATH: '/opt/cni/bin' }, config: conf })
  t.equal(status.code, 1)
  t.match(status.json, { code: 50, msg: /253 of 253/ })

  // GC with an empty valid list: the runtime says none of these exist any more (a node reboot)
  const gc = await cniOnNode(node, 'GC', { env: { CNI_PATH: '/opt/cni/bin' }, config: { ...conf, 'cni.dev/valid-attachments': [] } })
  t.equal(gc.code, 0, gc.stdout)
  t.same(reservations(storeDir), [], 'no reservation left')
  t.same(await hostVeths(node), [], 'no host veth left')
  t.same(
    (await routes(node)).filter((r) => r.protocol === '201'),
    [],
    'no pod route left',
  )
  t.equal((await cniOnNode(node, 'STATUS', { env: { CNI_PATH: '/opt/cni/bin' }, config: conf })).code, 0, 'STATUS ok again')
})

t.test('GC removes exactly the attachments the runtime does not list, and nothing of another network', async (t: Test) => {
  const spaces = testNamespaces(t, 'pgc')
  const { dir } = testDir(t, 'pgc')
  const node = await spaces.create('node')
  await makeNode(node)
  const [r1, r2] = testRanges(2)
  const net1 = { cniVersion: '1.1.0', name: 'net1', type: 'flatnet', ranges: [r1.cidr], dataDir: dir }
  const net2 = { cniVersion: '1.1.0', name: 'net2', type: 'flatnet', ranges: [r2.cidr], dataDir: dir }
  const pods = [await spaces.create('a'), await spaces.create('b'), await spaces.create('c'), await spaces.create('d')]
  for (const [i, pod] of pods.entries()) t.equal((await cniOnNode(node, 'ADD', { env: env(pod, `k${i}`), config: net1 })).code, 0)
  const other = await spaces.create('other')
  t.equal((await cniOnNode(node, 'ADD', { env: { ...env(other, 'o1'), CNI_IFNAME: 'net2' }, config: net2 })).code, 0)

  const valid = [
    { containerID: 'k0', ifname: 'eth0' },
    { containerID: 'k2', ifname: 'eth0' },
  ]
  const gc = await cniOnNode(node, 'GC', { env: { CNI_PATH: '/opt/cni/bin' }, config: { ...net1, 'cni.dev/valid-attachments': valid } })
  t.equal(gc.code, 0, gc.stdout)

  const kept = reservations(join(dir, 'net1'))
    .map((a) => JSON.parse(readFileSync(join(dir, 'net1', a), 'utf8')).containerId)
    .sort()
  t.same(kept, ['k0', 'k2'], 'reservations of k0 and k2 kept, k1 and k3 released')
  const veths = await hostVeths(node)
  t.same(veths.sort(), [hostVethName('k0', 'eth0'), hostVethName('k2', 'eth0'), hostVethName('o1', 'net2')].sort(), 'host veths of listed attachments and of net2 kept')
  t.equal(reservations(join(dir, 'net2')).length, 1, 'net2 untouched')
  // the older key is accepted too
  const gcOld = await cniOnNode(node, 'GC', { env: { CNI_PATH: '/opt/cni/bin' }, config: { ...net1, 'cni.dev/attachments': [{ containerID: 'k0', ifname: 'eth0' }] } })
  t.equal(gcOld.code, 0)
  t.same(
    reservations(join(dir, 'net1')).map((a) => JSON.parse(readFileSync(join(dir, 'net1', a), 'utf8')).containerId),
    ['k0'],
  )
})

t.test('STATUS reports a read-only data directory with code 50 and ADD fails with a clear I/O error', async (t: Test) => {
  const spaces = testNamespaces(t, 'pro')
  const { dir } = testDir(t, 'pro')
  const node = await spaces.create('node')
  await makeNode(node)
  const pod = await spaces.create('pod')
  const [range] = testRanges(1)
  const conf = { cniVersion: '1.1.0', name: 'ro', type: 'flatnet', ranges: [range.cidr], dataDir: dir }
  // a working store on its own filesystem, which then turns read-only (a failing disk)
  await run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'fnt-ro', dir])
  t.teardown(() => run(['umount', dir]))
  t.equal((await cniOnNode(node, 'ADD', { env: env(pod, 'c0'), config: conf })).code, 0)
  t.equal((await cniOnNode(node, 'DEL', { env: env(pod, 'c0'), config: conf })).code, 0)
  t.equal((await cniOnNode(node, 'STATUS', { env: { CNI_PATH: '/opt/cni/bin' }, config: conf })).code, 0)
  await run(['mount', '-o', 'remount,ro', dir])
  const status = await cniOnNode(node, 'STATUS', { env: { CNI_PATH: '/opt/cni/bin' }, config: conf })
  t.equal(status.code, 1)
  t.match(status.json, { code: 50, msg: /not writable/ })
  const add = await cniOnNode(node, 'ADD', { env: env(pod, 'c1'), config: conf })
  t.equal(add.code, 1)
  t.match(add.json, { code: 5, msg: /EROFS/ })
  t.equal((await run(['ip', '-n', pod.name, 'link', 'show', 'eth0'])).code, 1, 'no interface')
})
