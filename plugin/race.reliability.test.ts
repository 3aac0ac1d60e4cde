// ADD and DEL of one container started together — the spec forbids it, runtimes do it after a
// timeout — must never leave a wired pod without its reservation (its address would be handed
// to the next pod). Whichever order the calls end up in, afterwards the pod is either wired and
// holds its reservation, or neither.
import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { link, testDir, testNamespaces, testRanges } from '../e2e/helpers/index.js'
import type { Netns } from '../e2e/helpers/netns.js'
import { cniOnNode, makeNode } from './testing/testHarness.js'
import { runSeed, seededRandom } from './testing/reliabilityHarness.js'
import { hostVethName } from './wiring.js'
import { AddStep, DelStep } from './crashpoints.js'

const PODS = 8
const ROUNDS = Number(process.env.FLATNET_RACE_ROUNDS ?? 25)

t.test(`${PODS * ROUNDS} concurrent ADD+DEL pairs of one container: no wired pod without its reservation`, async (t) => {
  const seed = runSeed()
  t.comment(`race seed ${seed} (replay with FLATNET_TEST_SEED=${seed})`)
  const random = seededRandom(seed)
  const spaces = testNamespaces(t, 'race')
  const { dir } = testDir(t, 'race')
  const node = await spaces.create('node')
  await makeNode(node)
  const [range] = testRanges(1)
  const conf = { cniVersion: '1.1.0', name: 'race', type: 'flatnet', ranges: [range.cidr], dataDir: dir, mtu: 1500 }
  const storeDir = join(dir, 'race')
  const pods: Netns[] = await Promise.all(Array.from({ length: PODS }, (_, i) => spaces.create(`p${i}`)))
  const env = (pod: Netns, id: string) => ({ CNI_CONTAINERID: id, CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' })
  const reservedBy = (id: string) =>
    (existsSync(storeDir) ? readdirSync(storeDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []).filter((f) => {
      try {
        return JSON.parse(readFileSync(join(storeDir, f), 'utf8')).containerId === id
      } catch {
        return false
      }
    })

  const violations: string[] = []
  let wiredAfter = 0
  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all(
      pods.map(async (pod, i) => {
        const id = `ctr-${i}-${round}`
        // DEL lands anywhere from before ADD starts to well into its wiring. Both pause between
        // their two steps (the test build's pause points), so the interleavings that matter — DEL
        // removing the veth before ADD made it and releasing after ADD reserved — are not rare.
        // A negative delay starts DEL first.
        const delay = Math.floor(random() * 400) - 200
        const [add] = await Promise.all([
          sleep(Math.max(0, -delay)).then(() => cniOnNode(node, 'ADD', { env: env(pod, id), config: conf, hooks: { FLATNET_TEST_PAUSE_AT: `${AddStep.afterReserve}:150` } })),
          sleep(Math.max(0, delay)).then(() => cniOnNode(node, 'DEL', { env: env(pod, id), config: conf, hooks: { FLATNET_TEST_PAUSE_AT: `${DelStep.afterVeth}:150` } })),
        ])
        const wired = (await link('eth0', pod)) !== undefined || (await link(hostVethName(id, 'eth0'), node)) !== undefined
        const held = reservedBy(id)
        if (wired) wiredAfter++
        if (wired && held.length === 0) violations.push(`${id} (DEL after ${delay} ms, ADD code ${add.code}): pod wired, no reservation`)
        if (!wired && held.length > 0) violations.push(`${id} (DEL after ${delay} ms, ADD code ${add.code}): reservation ${held.join(',')} kept, pod not wired`)
        await cniOnNode(node, 'DEL', { env: env(pod, id), config: conf })
      }),
    )
  }
  t.comment(`${wiredAfter} of ${PODS * ROUNDS} pairs ended with DEL first (pod wired)`)
  t.same(violations, [], 'every pair ends consistent')
})
