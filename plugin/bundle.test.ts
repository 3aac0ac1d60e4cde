// The built plugin as shipped (dist/bin/flatnet and its dist/lib): what a runtime sees when the
// installation itself is damaged, and what an operator's stray test variables can do to it.
import t from 'tap'
import { copyFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { flatnetBinary, flatnetMissingReason, flatnetTestBinary, link, runCni, testDir, testNamespaces, testRanges, type Netns } from '../e2e/helpers/index.js'
import { AddStep } from './crashpoints.js'
import { makeNode } from './testing/testHarness.js'

const dist = join(flatnetBinary, '..', '..')

t.test('a missing native module is one CNI error on stdout, not a stack trace', { skip: flatnetMissingReason() }, async (t) => {
  // an install whose dist/lib lost netlink.node (a partial copy, a wrong architecture's package);
  // the Node plugin itself (flatnet-node, what the native entry runs when flatnetd does not answer)
  const { dir } = testDir(t, 'bnat')
  mkdirSync(join(dir, 'bin'))
  mkdirSync(join(dir, 'lib'))
  copyFileSync(join(flatnetBinary, '..', 'flatnet-node'), join(dir, 'bin', 'flatnet'))
  copyFileSync(join(dist, 'package.json'), join(dir, 'package.json'))
  copyFileSync(join(dist, 'lib', 'netns.node'), join(dir, 'lib', 'netns.node'))
  const config = { cniVersion: '1.0.0', name: 'net1', type: 'flatnet', ranges: ['10.250.0.0/24'], dataDir: join(dir, 'data') }
  for (const verb of ['ADD', 'DEL', 'VERSION'] as const) {
    const call = await runCni(join(dir, 'bin', 'flatnet'), verb, {
      env: { CNI_CONTAINERID: 'ctr-nat', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' },
      config,
    })
    t.equal(call.code, 1, `${verb} fails`)
    t.equal(call.stdout.split('\n').filter(Boolean).length, 1, `${verb}: exactly one line on stdout`)
    t.match(call.json, { cniVersion: '1.0.0', code: 5, msg: /^load the flatnet plugin: .*netlink\.node/ }, `${verb}: the error names the missing module`)
    t.notMatch(call.stdout, /\n {4}at /, `${verb}: no stack trace on stdout`)
  }
})

t.test('the production plugin ignores FLATNET_TEST_CRASH_AT and FLATNET_TEST_FAIL_AT; the test build obeys them', { skip: flatnetMissingReason() }, async (t) => {
  const spaces = testNamespaces(t, 'bcrash')
  const { dir } = testDir(t, 'bcrash')
  const node = await spaces.create('node')
  await makeNode(node)
  const [range] = testRanges(1)
  const config = { cniVersion: '1.1.0', name: 'net1', type: 'flatnet', ranges: [range.cidr], dataDir: dir }
  const env = (pod: Netns, id: string) => ({ CNI_CONTAINERID: id, CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' })
  // an operator's shell with a leftover from a test session: the runtime passes it through
  const hooks = { FLATNET_TEST_CRASH_AT: AddStep.afterVeth, FLATNET_TEST_FAIL_AT: AddStep.afterVeth }

  const pod = await spaces.create('pod')
  const add = await runCni(flatnetBinary, 'ADD', { env: env(pod, 'ctr-prod'), config, hostNetns: node.name, hooks })
  t.equal(add.code, 0, `dist/bin/flatnet wires the pod regardless: ${add.stdout}`)
  t.ok(await link('eth0', pod), 'the pod has eth0')
  t.equal((await runCni(flatnetBinary, 'DEL', { env: env(pod, 'ctr-prod'), config, hostNetns: node.name, hooks })).code, 0)

  const crashed = await runCni(flatnetTestBinary, 'ADD', { env: env(pod, 'ctr-test'), config, hostNetns: node.name, hooks: { FLATNET_TEST_CRASH_AT: AddStep.afterVeth } })
  t.not(crashed.code, 0, 'the test build is killed at the point')
  t.equal(crashed.stdout, '', 'killed before printing anything')
  t.equal((await runCni(flatnetBinary, 'DEL', { env: env(pod, 'ctr-test'), config, hostNetns: node.name })).code, 0)
})
