// A plugin SIGKILLed at every step of ADD (and of DEL) leaves nothing that the runtime's next
// call cannot take back: after the DEL — or, separately, a GC whose valid list no longer has the
// pod (empty, or naming only a live bystander) — the node, the pod namespace and the data
// directory are exactly as before the ADD.
// "Exactly" is a full snapshot (links, addresses, routes of every table, rules, forwarding, every
// file under the data dir with mode and content), not a list of things we thought of.
// plugin/killpoints.dual.reliability.test.ts reruns it dual-stack, with a kill between the two
// families' reservations.
import t, { type Test } from 'tap'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { testDir, testNamespaces, testRanges, runOk } from '../e2e/helpers/index.js'
import type { Netns } from '../e2e/helpers/netns.js'
import { cniOnNode, killedMidCall, makeNode } from './testing/testHarness.js'
import { dirSnapshot, netSnapshot, settledNetSnapshot, snapshotDiff, type Snapshot } from './testing/reliabilityHarness.js'
import { hostVethName } from './wiring.js'
import { AddStep, DelStep, StoreStep } from './crashpoints.js'
import { rangesFor, testFamilies } from './testing/families.js'

const CNI_PATH = '/opt/cni/bin'

/**
 * ADD's steps in order: the reservation's own (ipam) inside its first, then the plugin's. With
 * two ranges the reservation has a step between them: one family's address held, not the other's.
 */
const ADD_KILL_POINTS = [StoreStep.afterTemp, StoreStep.afterLink, ...(testFamilies === 'dual' ? [StoreStep.betweenRanges] : []), ...Object.values(AddStep)]
/** The points where FLATNET_TEST_FAIL_AT can throw (the plugin's own; ipam's are crash-only). */
const ADD_FAIL_POINTS = Object.values(AddStep)
/** DEL's steps: the host veth is gone but the address not yet released; the record is moved aside but not unlinked. */
const DEL_KILL_POINTS = [DelStep.afterVeth, StoreStep.afterAside]

interface Node {
  node: Netns
  dataDir: string
  conf: Record<string, unknown>
  pod(): Promise<Netns>
  env(pod: Netns | undefined, id: string): Record<string, string>
}

async function makeTestNode(t: Test, tag: string): Promise<Node> {
  const spaces = testNamespaces(t, tag)
  const { dir } = testDir(t, tag)
  const node = await spaces.create('node')
  await makeNode(node)
  const [range] = testRanges(1)
  const conf = { cniVersion: '1.1.0', name: 'kill', type: 'flatnet', ranges: rangesFor(testFamilies, range.cidr), dataDir: dir, mtu: 1500 }
  let n = 0
  return {
    node,
    dataDir: dir,
    conf,
    pod: async () => {
      const pod = await spaces.create(`p${++n}`)
      // lo up from the start: ADD brings a pod's lo up (harmless, and not its to undo), so the
      // pod's "before" is taken in that state and the comparison stays exact.
      await runOk(['ip', '-n', pod.name, 'link', 'set', 'lo', 'up'])
      return pod
    },
    env: (pod, id) => ({ CNI_CONTAINERID: id, CNI_NETNS: pod?.path ?? '', CNI_IFNAME: 'eth0', CNI_PATH }),
  }
}

interface Whole {
  node: Snapshot
  pod: Snapshot
  data: Snapshot
}

// The rotation hint changes with every reservation by design (next-free rotation); it holds no
// reservation, so only its name and mode are compared.
const snapshotOf = async (n: Node, pod: Netns): Promise<Whole> => ({
  node: await netSnapshot(n.node),
  pod: await netSnapshot(pod),
  data: dirSnapshot(n.dataDir, { volatileContent: /last_reserved_ip\./ }),
})

function leftovers(before: Whole, after: Whole): string[] {
  const out: string[] = []
  for (const part of ['node', 'pod', 'data'] as const) {
    const d = snapshotDiff(before[part], after[part])
    out.push(...d.added.map((x) => `${part}: left ${x}`), ...d.removed.map((x) => `${part}: lost ${x}`))
  }
  return out
}

const storeFiles = (n: Node) => {
  try {
    return readdirSync(join(n.dataDir, 'kill')).filter((f) => !f.startsWith('last_reserved_ip.'))
  } catch {
    return []
  }
}

const tally = { tried: 0, leftovers: 0 }

/**
 * A bystander pod is wired before "before" is taken and listed as valid in GC: the clean-up must
 * take exactly the crashed attachment's debris, not a live neighbour's state.
 */
async function withBystander(n: Node): Promise<{ id: string }> {
  const pod = await n.pod()
  const add = await cniOnNode(n.node, 'ADD', { env: n.env(pod, 'bystander'), config: n.conf })
  if (add.code !== 0) throw new Error(`bystander ADD: ${add.stdout}${add.stderr}`)
  // Its veth is new: let carrier and IPv6 address detection finish, or they would show up as
  // differences in the first comparison that no plugin call caused.
  await settledNetSnapshot(n.node)
  return { id: 'bystander' }
}

/**
 * A first ADD on a node also makes what every later one shares: the store directory, forwarding
 * on. Those are not a crashed attachment's leftovers; a pod added and deleted before "before"
 * makes them without leaving a pod behind.
 */
async function warmUp(n: Node): Promise<void> {
  const pod = await n.pod()
  for (const verb of ['ADD', 'DEL'] as const) {
    const r = await cniOnNode(n.node, verb, { env: n.env(pod, 'warm-up'), config: n.conf })
    if (r.code !== 0) throw new Error(`warm-up ${verb}: ${r.stdout}${r.stderr}`)
  }
}

t.test('SIGKILL inside ADD, then DEL: node, pod and data dir exactly as before', async (t) => {
  const n = await makeTestNode(t, 'kdel')
  await withBystander(n)
  for (const point of ADD_KILL_POINTS) {
    const pod = await n.pod()
    const id = `ctr-${point}`
    const before = await snapshotOf(n, pod)
    const add = await cniOnNode(n.node, 'ADD', { env: n.env(pod, id), config: n.conf, hooks: { FLATNET_TEST_CRASH_AT: point } })
    t.ok(killedMidCall(add), `${point}: killed in the middle of the call (exit ${add.code}, stdout ${add.stdout.trim()})`)
    t.ok(storeFiles(n).length > 1, `${point}: the crash left debris in the store (${storeFiles(n).join(' ')})`)
    const del = await cniOnNode(n.node, 'DEL', { env: n.env(pod, id), config: n.conf })
    t.equal(del.code, 0, `${point}: DEL succeeds ${del.stdout}`)
    const left = leftovers(before, await snapshotOf(n, pod))
    tally.tried++
    tally.leftovers += left.length
    t.same(left, [], `${point}: nothing left after DEL`)
    t.same(
      (await netSnapshot(pod)).filter((l) => l.startsWith('link ') && !l.includes('"ifname":"lo"')),
      [],
      `${point}: the pod has no interface besides lo`,
    )
  }
})

for (const variant of ['an empty valid list', 'only a live bystander in the valid list'] as const) {
  t.test(`SIGKILL inside ADD, then GC with ${variant}: exactly as before`, async (t) => {
    const n = await makeTestNode(t, 'kgc')
    // With a bystander, GC must also leave a live neighbour's state alone (it is in "before").
    const valid = variant === 'an empty valid list' ? (await warmUp(n), []) : [{ containerID: (await withBystander(n)).id, ifname: 'eth0' }]
    for (const point of ADD_KILL_POINTS) {
      const pod = await n.pod()
      const id = `ctr-${point}`
      const before = await snapshotOf(n, pod)
      const add = await cniOnNode(n.node, 'ADD', { env: n.env(pod, id), config: n.conf, hooks: { FLATNET_TEST_CRASH_AT: point } })
      t.ok(killedMidCall(add), `${point}: killed in the middle of the call (exit ${add.code})`)
      // The runtime never got a result, so its valid list does not name the attachment.
      const gc = await cniOnNode(n.node, 'GC', { env: { CNI_PATH }, config: { ...n.conf, 'cni.dev/valid-attachments': valid } })
      t.equal(gc.code, 0, `${point}: GC succeeds ${gc.stdout}`)
      const left = leftovers(before, await snapshotOf(n, pod))
      tally.tried++
      tally.leftovers += left.length
      t.same(left, [], `${point}: nothing left after GC`)
    }
  })
}

t.test('a failure injected at every step of ADD rolls back by itself: exactly as before, no DEL needed', async (t) => {
  const n = await makeTestNode(t, 'kfail')
  await withBystander(n)
  for (const point of ADD_FAIL_POINTS) {
    const pod = await n.pod()
    const before = await snapshotOf(n, pod)
    const add = await cniOnNode(n.node, 'ADD', { env: n.env(pod, `ctr-${point}`), config: n.conf, hooks: { FLATNET_TEST_FAIL_AT: point } })
    t.equal(add.code, 1, point)
    t.match(add.json, { code: 5, msg: new RegExp(`induced failure at ${point}`) }, point)
    t.same(leftovers(before, await snapshotOf(n, pod)), [], `${point}: nothing left after the failed ADD`)
  }
})

t.test('SIGKILL inside DEL, then DEL again: exactly as before the ADD', async (t) => {
  const n = await makeTestNode(t, 'kdd')
  await withBystander(n)
  for (const point of DEL_KILL_POINTS) {
    const pod = await n.pod()
    const id = `ctr-${point}`
    const before = await snapshotOf(n, pod)
    t.equal((await cniOnNode(n.node, 'ADD', { env: n.env(pod, id), config: n.conf })).code, 0)
    const del = await cniOnNode(n.node, 'DEL', { env: n.env(pod, id), config: n.conf, hooks: { FLATNET_TEST_CRASH_AT: point } })
    t.ok(killedMidCall(del), `${point}: DEL killed in the middle (exit ${del.code})`)
    t.notOk(
      (await netSnapshot(n.node)).some((l) => l.includes(hostVethName(id, 'eth0')) && l.startsWith('link ')),
      `${point}: the host veth was already removed`,
    )
    t.ok(storeFiles(n).length > 1, `${point}: the store still has the record or its moved-aside name`)
    const again = await cniOnNode(n.node, 'DEL', { env: n.env(pod, id), config: n.conf })
    t.equal(again.code, 0, `${point}: the retried DEL succeeds`)
    const left = leftovers(before, await snapshotOf(n, pod))
    tally.tried++
    tally.leftovers += left.length
    t.same(left, [], `${point}: nothing left after the retried DEL`)
  }
})

t.test('figures', async (t) => {
  // The line the README quotes.
  t.comment(
    `kill points (${testFamilies}): ${ADD_KILL_POINTS.length} in ADD (each followed by DEL, by GC with an empty valid list, and by GC listing a live bystander) + ${DEL_KILL_POINTS.length} in DEL = ${tally.tried} kills; leftovers found: ${tally.leftovers}`,
  )
  t.equal(tally.tried, ADD_KILL_POINTS.length * 3 + DEL_KILL_POINTS.length, 'every kill was made')
  t.equal(tally.leftovers, 0, 'leftovers: 0')
})
