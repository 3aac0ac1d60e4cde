// A daemon crash is not an outage: flatnetd is killed with SIGKILL, a peer leaves while it is down,
// and it is started again. Its pods keep talking the whole time (the routes live in the kernel,
// not in the daemon), and on restart the level-triggered reconcile removes the stale route.
import t from 'tap'
import { labNodeDel, labNodeStart, labNodeStop, labStatus, labUp, peerRoutes, ProbeAgent, PROBE_PORT } from '../../lab/index.js'
import { sleep } from '../../lab/exec.js'
import { labForTest, labSkipReason } from '../../lab/testing/testLabs.js'

t.test('SIGKILLed daemon, peer removed meanwhile, restart: stale route gone, pods never lost connectivity', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'restart')
  await labUp({ name, nodes: 3, podsPerNode: 1, datastore: 'file' })
  const status = await labStatus({ name })
  const node1 = status.nodes.find((n) => n.name === 'node1')!
  const node2 = status.nodes.find((n) => n.name === 'node2')!
  const node3 = status.nodes.find((n) => n.name === 'node3')!
  const pod1 = status.pods.find((p) => p.node === 'node1')!
  const pod2 = status.pods.find((p) => p.node === 'node2')!

  // Traffic between node1's pod and node2's pod, both ways, for as long as the test runs.
  const a1 = await ProbeAgent.start(pod1.namespace, PROBE_PORT)
  t.teardown(() => a1.stop())
  const a2 = await ProbeAgent.start(pod2.namespace, PROBE_PORT)
  t.teardown(() => a2.stop())
  const failures: string[] = []
  let probes = 0
  let probing = true
  const traffic = (async () => {
    while (probing) {
      const [there, back] = await Promise.all([a1.probe(pod2.address, PROBE_PORT, 1000), a2.probe(pod1.address, PROBE_PORT, 1000)])
      probes += 2
      if (!there.ok || there.reply.peer !== pod1.address) failures.push(`${pod1.name} → ${pod2.name}: ${there.ok ? `seen as ${there.reply.peer}` : there.error}`)
      if (!back.ok || back.reply.peer !== pod2.address) failures.push(`${pod2.name} → ${pod1.name}: ${back.ok ? `seen as ${back.reply.peer}` : back.error}`)
      await sleep(20)
    }
  })()

  t.equal(await labNodeStop({ name, node: 'node1', kill: true }), 'killed', 'flatnetd of node1 killed with SIGKILL')
  const whileDown = probes
  await labNodeDel({ name, node: 'node3' })
  await sleep(1500) // node1's daemon would long have reacted, were it alive
  t.ok(
    (await peerRoutes(node1.namespace)).some((r) => r.dst === node3.subnet),
    `node1 still has the stale route to ${node3.subnet}: nobody was there to remove it`,
  )
  t.notOk(
    (await peerRoutes(node2.namespace)).some((r) => r.dst === node3.subnet),
    'node2, whose daemon runs, dropped it',
  )
  t.ok(probes - whileDown >= 10, `pods kept probing while node1's daemon was down (${probes - whileDown} probes)`)

  await labNodeStart({ name, node: 'node1' })
  t.same(await peerRoutes(node1.namespace), [{ dst: node2.subnet, gateway: node2.address }], 'after the restart node1 routes only to node2: the stale route is gone')
  const after = (await labStatus({ name })).nodes.find((n) => n.name === 'node1')!
  t.equal(after.subnet, node1.subnet, 'node1 kept its subnet across the crash')
  const sinceRestart = probes
  await sleep(300)
  probing = false
  await traffic
  t.ok(probes > sinceRestart, 'traffic went on after the restart')
  t.same(failures, [], `no probe between ${pod1.name} and ${pod2.name} failed during kill, removal and restart (${probes} probes)`)
})
