// Masquerade, seen from the receiving end: traffic from a pod to an address outside the cluster
// range (the lab's "outside" namespace) arrives from the pod's node address; traffic between pods
// arrives from the pod's own address, on any node.
import t from 'tap'
import { labStatus, labUp, ProbeAgent, PROBE_PORT } from '../../lab/index.js'
import { labForTest, labSkipReason } from '../../lab/testing/testLabs.js'

t.test('pod → outside arrives from the node address, pod → pod from the pod address', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'masq')
  await labUp({ name, nodes: 2, podsPerNode: 1, datastore: 'file' })
  const status = await labStatus({ name })
  const [pod1, pod2] = status.pods
  const nodeAddress = (node: string) => status.nodes.find((n) => n.name === node)!.address
  const agents = await Promise.all([pod1!.namespace, pod2!.namespace, status.network.outsideNetns].map((ns) => ProbeAgent.start(ns, PROBE_PORT)))
  t.teardown(() => Promise.all(agents.map((a) => a.stop())))
  const [a1, a2, outside] = agents as [ProbeAgent, ProbeAgent, ProbeAgent]

  for (const [agent, pod] of [
    [a1, pod1!],
    [a2, pod2!],
  ] as const) {
    const out = await agent.probe(status.network.outsideAddress, PROBE_PORT)
    t.ok(out.ok, `${pod.name} reaches the outside ${status.network.outsideAddress}`)
    if (out.ok) {
      t.equal(out.reply.peer, nodeAddress(pod.node), `the outside sees ${pod.name} as its node ${pod.node} (${nodeAddress(pod.node)})`)
      t.equal(out.local, pod.address, `inside the pod the connection still leaves from ${pod.address}`)
    }
  }

  const across = await a1.probe(pod2!.address, PROBE_PORT)
  t.ok(across.ok, `${pod1!.name} reaches ${pod2!.name} on the other node`)
  if (across.ok) t.equal(across.reply.peer, pod1!.address, `${pod2!.name} sees ${pod1!.name} as its pod address, not NATed`)
  const back = await a2.probe(pod1!.address, PROBE_PORT)
  if (back.ok) t.equal(back.reply.peer, pod2!.address, `${pod1!.name} sees ${pod2!.name} as its pod address`)
  else t.fail(`${pod2!.name} → ${pod1!.name}: ${back.error}`)

  // The outside has no route into the cluster range: replies reach pods only through the NAT.
  const direct = await outside.probe(pod1!.address, PROBE_PORT, 1000)
  t.notOk(direct.ok, `the outside cannot open a connection to ${pod1!.address} (it has no route to pods)`)
})
