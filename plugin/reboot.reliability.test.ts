// A node reboot as the plugin sees it: every pod's network namespace is gone (the kernel took the
// veths and routes with it) and DEL never arrives, so the reservations would leak for good.
// Either the runtime's GC (its valid list names only the pods it started since) or an operator's
// `flatnetctl ipam gc` (which asks the host instead) reclaims all of it, and nothing of the pods
// that do live.
import t, { type Test } from 'tap'
import { existsSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { links, routes, run, testDir, testNamespaces, testRanges, type RunResult } from '../e2e/helpers/index.js'
import type { Netns } from '../e2e/helpers/netns.js'
import { cniOnNode, killedMidCall, makeNode } from './testing/testHarness.js'
import { dirSnapshot, netSnapshot, settledNetSnapshot } from './testing/reliabilityHarness.js'
import { hostVethName } from './wiring.js'
import { StoreStep } from './crashpoints.js'

const CNI_PATH = '/opt/cni/bin'
const flatnetctl = fileURLToPath(new URL('../dist/bin/flatnetctl', import.meta.url))

interface Node {
  node: Netns
  dataDir: string
  storeDir: string
  range: ReturnType<typeof testRanges>[number]
  conf: Record<string, unknown>
  spaces: ReturnType<typeof testNamespaces>
  add(id: string): Promise<Netns>
  ctl(args: string[]): Promise<RunResult>
}

async function makeTestNode(t: Test, tag: string): Promise<Node> {
  const spaces = testNamespaces(t, tag)
  const { dir } = testDir(t, tag)
  const node = await spaces.create('node')
  await makeNode(node)
  const [range] = testRanges(1)
  const conf = { cniVersion: '1.1.0', name: 'boot', type: 'flatnet', ranges: [range.cidr], dataDir: dir, mtu: 1500 }
  return {
    node,
    dataDir: dir,
    storeDir: join(dir, 'boot'),
    range,
    conf,
    spaces,
    add: async (id) => {
      const pod = await spaces.create(id)
      const add = await cniOnNode(node, 'ADD', {
        env: { CNI_CONTAINERID: id, CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH, CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${id}` },
        config: conf,
      })
      if (add.code !== 0) throw new Error(`ADD ${id}: ${add.stdout}${add.stderr}`)
      return pod
    },
    // On the node, as an operator would run it there; the reduced environment keeps node's start cheap.
    ctl: (args) => run(['ip', 'netns', 'exec', node.name, '/usr/bin/env', '-i', `PATH=${process.env.PATH}`, flatnetctl, ...args]),
  }
}

const reservations = (n: Node) =>
  existsSync(n.storeDir)
    ? readdirSync(n.storeDir)
        .filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
        .sort()
    : []
const tempFiles = (n: Node) => (existsSync(n.storeDir) ? readdirSync(n.storeDir).filter((f) => f.startsWith('.tmp-')) : [])
const hostVeths = async (n: Node) =>
  (await links(n.node))
    .map((l) => l.ifname)
    .filter((x) => /^fn[0-9a-f]{13}$/.test(x))
    .sort()
const podRoutes = async (n: Node) =>
  (await routes(n.node))
    .filter((r) => r.protocol === '201')
    .map((r) => `${r.dst} ${r.dev}`)
    .sort()

/** The kernel dismantles a deleted namespace's devices in the background: wait for it (at most 10 s). */
async function vanished(n: Node): Promise<string[]> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const left = await hostVeths(n)
    if (left.length === 0 || Date.now() > deadline) return left
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Six pods, then the "reboot": their namespaces vanish without a DEL. Two pods are started after it. */
async function rebootScenario(t: Test, n: Node): Promise<{ survivors: string[] }> {
  const old = ['old-1', 'old-2', 'old-3', 'old-4', 'old-5', 'old-6']
  const pods: Netns[] = []
  for (const id of old) pods.push(await n.add(id))
  t.equal(reservations(n).length, 6)
  for (const pod of pods) await n.spaces.remove(pod)
  t.same(await vanished(n), [], 'the kernel took the host veths (and their routes) with the namespaces')
  t.equal(reservations(n).length, 6, 'but the six reservations are still there: nobody sent DEL')
  for (const id of ['new-1', 'new-2']) await n.add(id)
  return { survivors: ['new-1', 'new-2'] }
}

async function expectOnlySurvivors(t: Test, n: Node, survivors: string[]): Promise<void> {
  t.equal(reservations(n).length, survivors.length, `only the ${survivors.length} live pods hold an address`)
  t.same(await hostVeths(n), survivors.map((id) => hostVethName(id, 'eth0')).sort(), 'only their host veths')
  t.equal((await podRoutes(n)).length, survivors.length, 'only their routes')
  t.same(tempFiles(n), [], 'no temp file')
}

t.test("node reboot: GC from the runtime's valid list reclaims every reservation of the vanished pods", async (t) => {
  const n = await makeTestNode(t, 'rbgc')
  const { survivors } = await rebootScenario(t, n)
  const valid = survivors.map((id) => ({ containerID: id, ifname: 'eth0' }))
  const gc = await cniOnNode(n.node, 'GC', { env: { CNI_PATH }, config: { ...n.conf, 'cni.dev/valid-attachments': valid } })
  t.equal(gc.code, 0, gc.stdout)
  await expectOnlySurvivors(t, n, survivors)
})

t.test('node reboot: `flatnetctl ipam list` shows the leak and `flatnetctl ipam gc` reclaims it, asking only the host', async (t) => {
  const n = await makeTestNode(t, 'rbctl')
  const { survivors } = await rebootScenario(t, n)
  // And a host veth whose reservation someone deleted by hand: no reservation claims it.
  await n.add('orphan')
  const list0 = await n.ctl(['ipam', 'list', '--data-dir', n.dataDir, '--network', 'boot', '--json'])
  t.equal(list0.code, 0, list0.stderr)
  const listed = JSON.parse(list0.stdout) as { reservations: Array<{ address: string; containerId: string; hostVethPresent: boolean; podName?: string }> }
  t.equal(listed.reservations.length, 9)
  t.same(
    listed.reservations
      .filter((r) => !r.hostVethPresent)
      .map((r) => r.containerId)
      .sort(),
    ['old-1', 'old-2', 'old-3', 'old-4', 'old-5', 'old-6'],
    'list: the six vanished pods have no host veth',
  )
  const orphanRecord = listed.reservations.find((r) => r.containerId === 'orphan')
  t.ok(orphanRecord?.hostVethPresent, 'list: a live pod has its host veth')
  unlinkSync(join(n.storeDir, orphanRecord?.address ?? 'missing'))

  const table = await n.ctl(['ipam', 'list', '--data-dir', n.dataDir, '--network', 'boot'])
  t.equal(table.code, 0)
  t.match(table.stdout, /^ADDRESS\s+CONTAINER\s+IFNAME\s+POD\s+HOST VETH\s+CREATED$/m, 'a table with a header')
  t.match(table.stdout, new RegExp(`old-1\\s+eth0\\s+default/old-1\\s+${hostVethName('old-1', 'eth0')} \\(gone\\)`), 'a row per reservation, the missing veth marked')
  t.match(table.stdout, /^8 reservation\(s\) in /m)

  // Dry run: says everything, changes nothing.
  const dataBefore = dirSnapshot(n.dataDir, { volatileContent: /last_reserved_ip\./ })
  const nodeBefore = await settledNetSnapshot(n.node)
  const dry = await n.ctl(['ipam', 'gc', '--data-dir', n.dataDir, '--network', 'boot', '--min-age', '0', '--dry-run'])
  t.equal(dry.code, 0, dry.stderr)
  t.equal(dry.stdout.match(/^would release /gm)?.length, 6, dry.stdout)
  t.match(dry.stdout, new RegExp(`^would remove host veth ${hostVethName('orphan', 'eth0')} `, 'm'))
  t.match(dry.stdout, /would reclaim 6 reservation\(s\) and 1 host veth\(s\)/)
  t.same(dirSnapshot(n.dataDir, { volatileContent: /last_reserved_ip\./ }), dataBefore, 'dry run: store untouched')
  t.same(await netSnapshot(n.node), nodeBefore, 'dry run: node untouched')

  // Without --min-age 0 the grace period applies: these reservations are seconds old.
  const young = await n.ctl(['ipam', 'gc', '--data-dir', n.dataDir, '--network', 'boot'])
  t.equal(young.code, 0, young.stderr)
  t.match(young.stdout, /reclaimed 0 reservation\(s\) and 1 host veth\(s\)/, 'a young reservation is not judged yet; the orphan veth is')
  t.equal(young.stdout.match(/^kept .* younger than 60 s/gm)?.length, 6)
  t.equal(reservations(n).length, 8)

  const gc = await n.ctl(['ipam', 'gc', '--data-dir', n.dataDir, '--network', 'boot', '--min-age', '0'])
  t.equal(gc.code, 0, gc.stderr)
  for (const id of ['old-1', 'old-2', 'old-3', 'old-4', 'old-5', 'old-6']) t.match(gc.stdout, new RegExp(`^released \\S+ \\(container ${id}, eth0, pod default/${id}, since `, 'm'), `released ${id}`)
  t.match(gc.stdout, /reclaimed 6 reservation\(s\) and 0 host veth\(s\)/)
  await expectOnlySurvivors(t, n, survivors)

  const again = await n.ctl(['ipam', 'gc', '--data-dir', n.dataDir, '--network', 'boot', '--min-age', '0'])
  t.equal(again.code, 0)
  t.match(again.stdout, /reclaimed 0 reservation\(s\) and 0 host veth\(s\)/, 'a second run finds nothing')
})

t.test('`flatnetctl ipam gc` reads the network from --conf, sweeps dead temp files, and exits non-zero on a corrupt record (keeping it) while reclaiming the rest', async (t) => {
  const n = await makeTestNode(t, 'rbconf')
  const gone = await n.add('gone')
  await n.spaces.remove(gone)
  t.same(await vanished(n), [])
  const pod = await n.spaces.create('crashed')
  // An ADD killed inside its reservation: a temp file of a dead process, no record.
  const crash = await cniOnNode(n.node, 'ADD', {
    env: { CNI_CONTAINERID: 'crashed', CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH },
    config: n.conf,
    hooks: { FLATNET_TEST_CRASH_AT: StoreStep.afterTemp },
  })
  t.ok(killedMidCall(crash), `killed in the middle of the call (exit ${crash.code})`)
  t.equal(tempFiles(n).length, 1)
  writeFileSync(join(n.storeDir, `${n.range.base}200`), 'not a record\n', { mode: 0o600 })

  const conflist = join(n.dataDir, '10-flatnet.conflist')
  writeFileSync(
    conflist,
    JSON.stringify({
      cniVersion: '1.1.0',
      name: 'boot',
      plugins: [
        { type: 'flatnet', ranges: [n.range.cidr], dataDir: n.dataDir },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
  )
  const gc = await n.ctl(['ipam', 'gc', '--conf', conflist, '--min-age', '0'])
  t.equal(gc.code, 1, 'exit 1: a problem was found')
  t.match(gc.stderr, new RegExp(`corrupt reservation record ${join(n.storeDir, `${n.range.base}200`).replace(/\./g, '\\.')}[\\s\\S]*kept`), 'the corrupt record is named and kept')
  t.match(gc.stdout, /^released \S+ \(container gone, eth0/m, 'the rest is reclaimed anyway')
  t.match(gc.stdout, /^removed leftover temp file \.tmp-/m, "the dead process's temp file is swept")
  t.same(reservations(n), [`${n.range.base}200`], 'only the corrupt record is left')
  t.same(tempFiles(n), [])

  const missing = await n.ctl(['ipam', 'gc', '--conf', join(n.dataDir, 'nope.conflist')])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /read network configuration .*nope\.conflist: ENOENT/)
  const noNetwork = await n.ctl(['ipam', 'list', '--conf', join(n.dataDir, 'nope.conflist'), '--network', 'boot'])
  t.equal(noNetwork.code, 1, 'an explicit --conf must exist')
})
