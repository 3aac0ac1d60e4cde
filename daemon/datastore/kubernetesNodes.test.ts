import t from 'tap'
import { fakeNode } from './testing/fakeApiServerNodes.js'
import { claimLease, claimLeaseName, claimedSubnetOf, microTime, nodeAddressOf, readNode, type NodeJson } from './kubernetesNodes.js'

const withMeta = (node: NodeJson, annotations: Record<string, string> = {}): NodeJson => ({
  ...node,
  metadata: { ...node.metadata, uid: 'uid-1', resourceVersion: '7', creationTimestamp: '2025-01-02T03:04:05Z', annotations: { ...node.metadata.annotations, ...annotations } },
})

t.test('podCIDRs source: the subnet is spec.podCIDRs, the address the InternalIP of its family', async (t) => {
  const node = withMeta(fakeNode('kind-worker', { podCIDRs: ['10.244.1.0/24'], internalIPs: ['172.18.0.3'] }))
  t.same(readNode(node, 'podCIDRs', [4]), {
    kind: 'record',
    record: { name: 'kind-worker', nodeIP: '172.18.0.3', subnet: '10.244.1.0/24', owner: 'kubernetes-node:uid-1', updatedAt: '2025-01-02T03:04:05Z' },
  })
})

t.test('dual stack: the family of the cluster range picks the podCIDR and the address', async (t) => {
  const node = withMeta(fakeNode('ds', { podCIDRs: ['fd00:10:244:2::/64', '10.244.2.0/24'], internalIPs: ['fc00::4', '172.18.0.4'] }))
  const v4 = readNode(node, 'podCIDRs', [4])
  const v6 = readNode(node, 'podCIDRs', [6])
  t.match(v4, { kind: 'record', record: { subnet: '10.244.2.0/24', nodeIP: '172.18.0.4' } })
  t.match(v6, { kind: 'record', record: { subnet: 'fd00:10:244:2::/64', nodeIP: 'fc00::4' } })
  t.match(readNode(node, 'podCIDRs'), { kind: 'record', record: { subnet: 'fd00:10:244:2::/64' } }, 'no family given: the first podCIDR')
  t.same(
    readNode(node, 'podCIDRs', [4, 6]),
    {
      kind: 'record',
      record: {
        name: 'ds',
        nodeIP: '172.18.0.4',
        subnet: '10.244.2.0/24',
        subnets: ['10.244.2.0/24', 'fd00:10:244:2::/64'],
        nodeIPs: ['172.18.0.4', 'fc00::4'],
        owner: 'kubernetes-node:uid-1',
        updatedAt: '2025-01-02T03:04:05Z',
      },
    },
    'both families: a subnet and an InternalIP of each, in cluster-range order',
  )
  const v4Address = withMeta(fakeNode('half', { podCIDRs: ['10.244.5.0/24', 'fd00:10:244:5::/64'], internalIPs: ['172.18.0.5'] }))
  t.match(readNode(v4Address, 'podCIDRs', [4, 6]), { kind: 'record', record: { subnets: ['10.244.5.0/24', 'fd00:10:244:5::/64'], nodeIPs: ['172.18.0.5'] } }, 'no IPv6 address: listed, without one')
  const v4Only = withMeta(fakeNode('old', { podCIDRs: ['10.244.6.0/24'], internalIPs: ['172.18.0.6'] }))
  t.same(
    readNode(v4Only, 'podCIDRs', [4, 6]),
    { kind: 'record', record: { name: 'old', nodeIP: '172.18.0.6', subnet: '10.244.6.0/24', owner: 'kubernetes-node:uid-1', updatedAt: '2025-01-02T03:04:05Z' } },
    'a Node with the primary family only: its one subnet',
  )
  t.match(
    readNode(withMeta(fakeNode('v6', { podCIDRs: ['fd00:10:244:7::/64'], internalIPs: ['fc00::7'] })), 'podCIDRs', [4, 6]),
    { kind: 'skipped', why: /no spec.podCIDRs of IPv4/ },
    'the primary family is required',
  )
})

t.test('flatnet source, dual-stack: flatnet.io/pod-cidrs and flatnet.io/node-ips carry every family', async (t) => {
  const annotations = {
    'flatnet.io/pod-cidr': '10.244.3.0/24',
    'flatnet.io/pod-cidrs': '10.244.3.0/24,fd00:10:244:3::/64',
    'flatnet.io/owner': 'd',
    'flatnet.io/node-ip': '192.168.1.7',
    'flatnet.io/node-ips': '192.168.1.7,fd00::7',
    'flatnet.io/updated-at': 'u',
  }
  t.match(readNode(withMeta(fakeNode('n'), annotations), 'flatnet'), { kind: 'record', record: { subnets: ['10.244.3.0/24', 'fd00:10:244:3::/64'], nodeIPs: ['192.168.1.7', 'fd00::7'] } })
  t.match(readNode(withMeta(fakeNode('n'), { ...annotations, 'flatnet.io/pod-cidrs': 'fd00:10:244:3::/64,10.244.3.0/24' }), 'flatnet'), {
    kind: 'corrupt',
    why: /must start with flatnet.io\/pod-cidr/,
  })
  t.match(readNode(withMeta(fakeNode('n'), { ...annotations, 'flatnet.io/pod-cidrs': '10.244.3.0/24,10.244.4.0/24' }), 'flatnet'), { kind: 'corrupt', why: /one subnet per family/ })
})

t.test('the address falls back to the ExternalIP of the family; a node without either is skipped', async (t) => {
  t.equal(nodeAddressOf(fakeNode('e', { externalIPs: ['203.0.113.7'] }), 4), '203.0.113.7')
  t.equal(nodeAddressOf(fakeNode('both', { internalIPs: ['10.0.0.5'], externalIPs: ['203.0.113.7'] }), 4), '10.0.0.5', 'InternalIP first')
  t.equal(nodeAddressOf(fakeNode('v6', { internalIPs: ['fc00::9'] }), 4), undefined, 'no IPv4 at all')
  t.match(readNode(withMeta(fakeNode('none', { podCIDRs: ['10.244.4.0/24'] })), 'podCIDRs', [4]), { kind: 'skipped', why: /no InternalIP or ExternalIP of IPv4/ })
})

t.test('a node without podCIDRs is skipped (the old single spec.podCIDR counts)', async (t) => {
  t.match(readNode(withMeta(fakeNode('bare', { internalIPs: ['172.18.0.9'] })), 'podCIDRs', [4]), { kind: 'skipped', why: /no spec.podCIDRs of IPv4/ })
  const old = withMeta(fakeNode('old', { internalIPs: ['172.18.0.9'] }))
  old.spec = { podCIDR: '10.244.9.0/24' }
  t.match(readNode(old, 'podCIDRs', [4]), { kind: 'record', record: { subnet: '10.244.9.0/24' } })
})

t.test('flatnet source: the annotations are the record; status addresses win over the recorded node IP', async (t) => {
  const annotations = { 'flatnet.io/pod-cidr': '10.244.3.0/24', 'flatnet.io/owner': 'daemon-7', 'flatnet.io/node-ip': '192.168.1.7', 'flatnet.io/updated-at': '2025-02-03T04:05:06.000Z' }
  t.same(readNode(withMeta(fakeNode('n'), annotations), 'flatnet'), {
    kind: 'record',
    record: { name: 'n', nodeIP: '192.168.1.7', subnet: '10.244.3.0/24', owner: 'daemon-7', updatedAt: '2025-02-03T04:05:06.000Z' },
  })
  t.match(readNode(withMeta(fakeNode('n', { internalIPs: ['172.18.0.3'] }), annotations), 'flatnet'), { kind: 'record', record: { nodeIP: '172.18.0.3' } })
  t.match(readNode(withMeta(fakeNode('n', { podCIDRs: ['10.244.0.0/24'] })), 'flatnet'), { kind: 'skipped' }, 'spec.podCIDRs do not count in flatnet mode')
})

t.test('flatnet source: unreadable annotations are corrupt, naming the node and the annotation', async (t) => {
  const base = { 'flatnet.io/owner': 'o', 'flatnet.io/node-ip': '192.168.1.7' }
  t.match(readNode(withMeta(fakeNode('n'), { ...base, 'flatnet.io/pod-cidr': '10.244.3.1/24' }), 'flatnet'), { kind: 'corrupt', why: /Node n: annotation flatnet.io\/pod-cidr="10.244.3.1\/24"/ })
  t.match(readNode(withMeta(fakeNode('n'), { 'flatnet.io/pod-cidr': '10.244.3.0/24' }), 'flatnet'), { kind: 'corrupt', why: /flatnet.io\/owner is missing/ })
  t.match(readNode(withMeta(fakeNode('n'), { ...base, 'flatnet.io/pod-cidr': '10.244.3.0/24', 'flatnet.io/node-ip': 'x' }), 'flatnet'), { kind: 'corrupt', why: /flatnet.io\/node-ip="x"/ })
})

t.test('claim Leases are named after their subnet and owned by the Node', async (t) => {
  t.equal(claimLeaseName('10.244.3.0/24'), 'flatnet-subnet-10-244-3-0-24')
  t.equal(claimLeaseName('fd00:10:244:3::/64'), 'flatnet-subnet-fd00-10-244-3---64')
  const node = withMeta(fakeNode('kind-worker'))
  const lease = claimLease('10.244.3.0/24', node, 'kube-system', new Date('2025-01-01T00:00:00.123Z'))
  t.same(lease.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Node', name: 'kind-worker', uid: 'uid-1' }])
  t.equal(lease.spec?.holderIdentity, 'kind-worker')
  t.equal(lease.spec?.acquireTime, '2025-01-01T00:00:00.123000Z', 'MicroTime has six fractional digits')
  t.equal(claimedSubnetOf(lease)?.text, '10.244.3.0/24')
  t.equal(claimedSubnetOf({ ...lease, metadata: { ...lease.metadata, name: 'flatnet-subnet-10-244-4-0-24' } }), undefined, 'a Lease whose name and annotation disagree is no claim')
  t.equal(microTime(new Date('2025-06-07T08:09:10.000Z')), '2025-06-07T08:09:10.000000Z')
})
