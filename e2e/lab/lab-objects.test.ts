// `flatnetctl lab apply|get|delete` and `lab pod add --namespace/--label/--port`, end to end
// through dist/bin/flatnetctl: a Pod manifest becomes a real lab pod (a namespace wired by the
// plugin, a responder answering on its ports) whose object carries its IP; re-apply changes its
// labels, and policies follow them at once; delete removes the pod, its namespace and its object.
import t from 'tap'
import { existsSync } from 'node:fs'
import { readLabState, layoutOf, podRef, PodProber, controlSocketPath } from '../../lab/index.js'
import { interfaceAddresses } from '../../lab/kernelView.js'
import { flatnetctl, labForTest, labNamespaces, labSkipReason, pollUntil } from '../../lab/testing/testLabs.js'

const manifest = (labels: string) => `apiVersion: v1
kind: Namespace
metadata: {name: web}
---
apiVersion: v1
kind: Pod
metadata: {name: front, namespace: web, labels: {${labels}}}
spec:
  nodeName: node2
  containers:
  - name: c
    image: any
    ports: [{name: http, containerPort: 80}, {containerPort: 53, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-front, namespace: web}
spec:
  podSelector: {matchLabels: {app: front}}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]
`

t.test('lab apply of a Pod makes a real lab pod; labels are live; lab delete removes it', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'objects')
  const lab = layoutOf({ name })
  const up = await flatnetctl(['lab', 'up', '--name', name, '--nodes', '2', '--pods-per-node', '0'])
  t.equal(up.code, 0, `lab up: ${up.stderr}`)
  if (up.code !== 0) return

  const client = await flatnetctl(['lab', 'pod', 'add', 'node1', '--name', name, '--namespace', 'web', '--pod-name', 'client', '--label', 'role=client', '--port', '80'])
  t.equal(client.code, 0, `lab pod add: ${client.stderr}`)
  const other = await flatnetctl(['lab', 'pod', 'add', 'node1', '--name', name, '-n', 'web', '--pod-name', 'other'])
  t.equal(other.code, 0, `lab pod add: ${other.stderr}`)

  const applyFile = async (labels: string) => flatnetctl(['lab', 'apply', '--name', name, '-f', '-'], 80_000, manifest(labels))
  const applied = await applyFile('app: front')
  t.equal(applied.code, 0, `lab apply: ${applied.stderr}`)
  t.match(applied.stdout, /namespace\/web (created|unchanged)\npod\/front created\nnetworkpolicy.networking.k8s.io\/only-front created/)

  let state = await readLabState(lab)
  const front = state.pods.find((p) => podRef(p) === 'web/front')!
  t.ok(front, 'the lab has pod web/front')
  t.equal(front.node, 'node2', 'on its spec.nodeName')
  t.same(await interfaceAddresses(front.netns, 'eth0'), [`${front.address}/32`], 'the plugin wired it: eth0 carries its address')
  const got = await flatnetctl(['lab', 'get', 'pod', 'front', '-n', 'web', '--name', name, '-o', 'json'])
  const obj = JSON.parse(got.stdout) as { status?: { podIP?: string; phase?: string }; spec?: { nodeName?: string } }
  t.equal(obj.status?.podIP, front.address, 'the stored Pod has status.podIP')
  t.equal(obj.spec?.nodeName, 'node2')

  const fromClient = await PodProber.open('web/client', controlSocketPath(lab, state.pods.find((p) => podRef(p) === 'web/client')!.containerId))
  const fromOther = await PodProber.open('web/other', controlSocketPath(lab, state.pods.find((p) => podRef(p) === 'web/other')!.containerId))
  t.teardown(() => {
    fromClient.close()
    fromOther.close()
  })
  const reaches = async (prober: PodProber, protocol: 'TCP' | 'UDP', port: number) => (await prober.probe({ host: front.address, port, protocol })).ok
  const tcp = await fromClient.probe({ host: front.address, port: 80, protocol: 'TCP' })
  t.same(
    tcp.ok && tcp.reply,
    { pod: 'web/front', peer: state.pods.find((p) => podRef(p) === 'web/client')!.address, port: 80, protocol: 'TCP' },
    'the responder answers with its name and the client address',
  )
  t.ok(await pollUntil(() => reaches(fromClient, 'UDP', 53), 10_000), 'role=client reaches front on 53/UDP')
  t.ok(await pollUntil(async () => !(await reaches(fromOther, 'TCP', 80)), 10_000), 'a pod without role=client is refused')

  // The policy selects app=front: relabelled, front is no longer isolated.
  const relabelled = await applyFile('app: back')
  t.equal(relabelled.code, 0, `lab apply (new labels): ${relabelled.stderr}`)
  t.match(relabelled.stdout, /pod\/front configured/)
  t.ok(await pollUntil(() => reaches(fromOther, 'TCP', 80), 10_000), 'after the label change every pod reaches front')
  state = await readLabState(lab)
  t.same(state.pods.find((p) => podRef(p) === 'web/front')?.labels, { app: 'back' }, 'the same pod, new labels')
  t.equal(state.pods.find((p) => podRef(p) === 'web/front')?.address, front.address, 'not re-created')

  const moved = await flatnetctl(['lab', 'apply', '--name', name, '-f', '-'], 80_000, manifest('app: back').replace('nodeName: node2', 'nodeName: node1'))
  t.not(moved.code, 0, 'moving a pod to another node is refused')
  t.match(moved.stderr, /spec.nodeName is immutable/)

  const deleted = await flatnetctl(['lab', 'delete', '--name', name, '-f', '-'], 80_000, manifest('app: back'))
  t.equal(deleted.code, 0, `lab delete: ${deleted.stderr}`)
  state = await readLabState(lab)
  t.same(state.pods.map(podRef), [], 'the Namespace took every pod in it: front, client, other')
  t.same(
    (await labNamespaces(name)).filter((ns) => ns.includes('web.')),
    [],
    'their network namespaces are gone',
  )
  t.notOk(existsSync(controlSocketPath(lab, front.containerId)), 'and their responders')
  const none = await flatnetctl(['lab', 'get', 'pods', '-A', '--name', name])
  // Only the lab's own add-ons pod (kube-system/coredns) is left.
  t.notMatch(none.stdout, /^web\s/m, 'no pod of web is left')
})
