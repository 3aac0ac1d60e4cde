// A lab pod as a Pod object and back: what `lab apply` accepts, what it stores.
import t from 'tap'
import type { IPod } from 'kubernetes-models/v1'
import { immutableChange, leastLoadedNode, podObject, podRequest } from './podObjects.js'
import type { LabNode, LabPod } from './state.js'

const node = (name: string, address: string): LabNode => ({ name, id: 1, netns: `fnlab-t-${name}`, address, addresses: [address], bridgePort: 'n1', dir: '/tmp', podsCreated: 0 })
const labPod: LabPod = {
  name: 'a',
  node: 'node1',
  netns: 'fnlab-t-x.a',
  containerId: 'c'.repeat(64),
  ifname: 'eth0',
  address: '10.244.0.2',
  addresses: ['10.244.0.2', 'fd00:10:244::2'],
  result: { ips: [{ address: '10.244.0.2/32' }, { address: 'fd00:10:244::2/128' }] },
  k8sNamespace: 'x',
  labels: { pod: 'a' },
  ports: [
    { name: 'http', port: 80, protocol: 'TCP' },
    { port: 53, protocol: 'UDP' },
  ],
  createdAt: '2026-12-04T00:00:00.000Z',
}

t.test('the stored Pod says namespace, labels, node, ports and every pod IP in the plugin order', async (t) => {
  const obj = podObject(labPod, node('node1', '172.30.0.11'))
  t.same(obj.metadata, { name: 'a', namespace: 'x', labels: { pod: 'a' } })
  t.equal(obj.spec?.nodeName, 'node1')
  t.same(obj.spec?.containers[0]?.ports, [
    { name: 'http', containerPort: 80, protocol: 'TCP' },
    { containerPort: 53, protocol: 'UDP' },
  ])
  t.same(obj.status, {
    phase: 'Running',
    hostIP: '172.30.0.11',
    hostIPs: [{ ip: '172.30.0.11' }],
    podIP: '10.244.0.2',
    podIPs: [{ ip: '10.244.0.2' }, { ip: 'fd00:10:244::2' }],
    startTime: '2026-12-04T00:00:00.000Z',
  })
})

t.test('a Pod manifest becomes a pod request; what the lab cannot run is refused naming the field', async (t) => {
  const pod: IPod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'a', namespace: 'x', labels: { pod: 'a' } },
    spec: { nodeName: 'node2', containers: [{ name: 'c', ports: [{ containerPort: 80 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }] }] },
  }
  t.same(podRequest(pod), {
    namespace: 'x',
    name: 'a',
    labels: { pod: 'a' },
    ports: [
      { port: 80, protocol: 'TCP' },
      { name: 'dns', port: 53, protocol: 'UDP' },
    ],
    nodeName: 'node2',
  })
  t.equal(podRequest({ ...pod, metadata: { name: 'b' } }).namespace, 'default')
  t.throws(() => podRequest({ ...pod, spec: { ...pod.spec!, hostNetwork: true } }), /spec.hostNetwork/)
  t.throws(() => podRequest({ ...pod, spec: { containers: [{ name: 'c', ports: [{ containerPort: 80, hostPort: 8080 }] }] } }), /ports\[0\]\.hostPort/)
  t.throws(() => podRequest({ ...pod, spec: { containers: [{ name: 'c', ports: [{ containerPort: 80 }, { containerPort: 80 }] }] } }), /port 80\/TCP given twice/)
})

t.test('re-apply may change labels only; a new pod goes to the node with the fewest pods', async (t) => {
  const same = { namespace: 'x', name: 'a', labels: { pod: 'z' }, ports: [...labPod.ports!].reverse() }
  t.equal(immutableChange(labPod, same), undefined, 'labels change, ports in another order are the same ports')
  t.match(immutableChange(labPod, { ...same, nodeName: 'node2' }), /spec.nodeName is immutable/)
  t.match(immutableChange(labPod, { ...same, ports: [] }), /ports is immutable/)
  const nodes = [node('node1', '172.30.0.11'), node('node2', '172.30.0.12')]
  t.equal(leastLoadedNode(nodes, [labPod])?.name, 'node2')
  t.equal(leastLoadedNode(nodes, [])?.name, 'node1')
  t.equal(leastLoadedNode([], []), undefined)
})
