// The kubernetes datastore with subnets assigned by the cluster (Node.spec.podCIDRs, as
// kube-controller-manager --allocate-node-cidrs sets them on kind), against a FAKE API server.
import t, { type Test } from 'tap'
import { datastoreErrorOf, openFor, request, watchNodes } from './testing/contractSuite.js'
import { fakeNode } from './testing/fakeApiServerNodes.js'
import { startFakeCluster } from './testing/fakeApiServerHarness.js'

async function kindCluster(t: Test) {
  const cluster = await startFakeCluster(t)
  const { fake } = cluster
  fake.addNode(fakeNode('kind-control-plane', { podCIDRs: ['10.244.0.0/24'], internalIPs: ['172.18.0.2'] }))
  fake.addNode(fakeNode('kind-worker', { podCIDRs: ['10.244.1.0/24'], internalIPs: ['172.18.0.3'] }))
  // Dual stack, IPv6 listed first.
  fake.addNode(fakeNode('kind-worker2', { podCIDRs: ['fd00:10:244:2::/64', '10.244.2.0/24'], internalIPs: ['fc00:f853:ccd:e793::4', '172.18.0.4'] }))
  fake.addNode(fakeNode('cloud-node', { podCIDRs: ['10.244.3.0/24'], externalIPs: ['203.0.113.7'] }))
  fake.addNode(fakeNode('no-podcidr-yet', { internalIPs: ['172.18.0.5'] }))
  fake.addNode(fakeNode('no-address-yet', { podCIDRs: ['10.244.4.0/24'] }))
  return cluster
}

t.test("this node's subnet is its spec.podCIDRs; claiming and listing write nothing to the cluster", async (t) => {
  const { fake, config } = await kindCluster(t)
  const store = await openFor(t, config({ clusterCidr: '10.244.0.0/16' }))
  const before = fake.resourceVersion
  const node = fake.node('kind-worker')!
  const held = await store.claim(request('kind-worker', { nodeIP: '172.18.0.3' }))
  t.same(held, { name: 'kind-worker', nodeIP: '172.18.0.3', subnet: '10.244.1.0/24', owner: `kubernetes-node:${node.metadata.uid}`, updatedAt: node.metadata.creationTimestamp })
  t.equal((await store.claim(request('kind-worker2'))).subnet, '10.244.2.0/24', 'dual stack: the podCIDR of the cluster range family')
  await store.list()
  t.equal(fake.resourceVersion, before, 'no object was written')
  t.same(fake.node('kind-worker'), node, 'the Node is exactly as it was')
  t.same(
    fake.requests.filter((r) => r.method !== 'GET'),
    [],
    'only GET requests were made',
  )
})

t.test("a VXLAN-capable node publishes its backend and VTEP MAC as Node annotations (the subnet stays the cluster's); peers read them", async (t) => {
  const { fake, config } = await kindCluster(t)
  const store = await openFor(t, config({ clusterCidr: '10.244.0.0/16' }))
  const held = await store.claim(request('kind-worker', { nodeIP: '172.18.0.3', backend: 'auto', vtepMac: '02:aa:bb:cc:dd:03' }))
  t.same([held.subnet, held.backend, held.vtepMac], ['10.244.1.0/24', 'auto', '02:aa:bb:cc:dd:03'])
  const annotations = fake.node('kind-worker')!.metadata.annotations ?? {}
  t.same([annotations['flatnet.io/backend'], annotations['flatnet.io/vtep-mac']], ['auto', '02:aa:bb:cc:dd:03'], 'written on the Node')
  t.same(fake.node('kind-worker')!.spec?.podCIDRs, ['10.244.1.0/24'], 'spec untouched')
  const peer = await openFor(t, config({ clusterCidr: '10.244.0.0/16' }))
  const seen = (await peer.list()).find((n) => n.name === 'kind-worker')
  t.same([seen?.backend, seen?.vtepMac], ['auto', '02:aa:bb:cc:dd:03'], 'a peer lists them')
  const writes = fake.requests.filter((r) => r.method !== 'GET').length
  await store.claim(request('kind-worker', { nodeIP: '172.18.0.3', backend: 'auto', vtepMac: '02:aa:bb:cc:dd:03' }))
  t.equal(fake.requests.filter((r) => r.method !== 'GET').length, writes, 'claimed again with the same values: nothing written')
  await store.claim(request('kind-worker', { nodeIP: '172.18.0.3', backend: 'host-gw' }))
  const after = fake.node('kind-worker')!.metadata.annotations ?? {}
  t.same([after['flatnet.io/backend'], after['flatnet.io/vtep-mac']], ['host-gw', undefined], 'a changed backend is republished; a MAC no longer published is removed')
})

t.test('peers: the other Nodes with a podCIDR, through their InternalIP, else ExternalIP; Nodes without either are skipped', async (t) => {
  const { config } = await kindCluster(t)
  const store = await openFor(t, config({ clusterCidr: '10.244.0.0/16' }))
  t.same(
    (await store.list()).map((n) => [n.name, n.subnet, n.nodeIP]),
    [
      ['cloud-node', '10.244.3.0/24', '203.0.113.7'],
      ['kind-control-plane', '10.244.0.0/24', '172.18.0.2'],
      ['kind-worker', '10.244.1.0/24', '172.18.0.3'],
      ['kind-worker2', '10.244.2.0/24', '172.18.0.4'],
    ],
  )
})

t.test('a Node the cluster has not given a podCIDR yet: unavailable, saying why; it gets one → the claim succeeds', async (t) => {
  const { fake, config } = await kindCluster(t)
  const store = await openFor(t, config())
  const err = await datastoreErrorOf(store.claim(request('no-podcidr-yet')))
  t.equal(err?.kind, 'unavailable')
  t.match(err?.message, /no-podcidr-yet has no spec.podCIDRs of IPv4 yet.*--allocate-node-cidrs/)
  fake.updateNode('no-podcidr-yet', (n) => {
    n.spec = { ...n.spec, podCIDR: '10.244.5.0/24', podCIDRs: ['10.244.5.0/24'] }
  })
  t.equal((await store.claim(request('no-podcidr-yet'))).subnet, '10.244.5.0/24')
})

t.test('claims that cannot work are invalid: unknown Node, podCIDR outside the cluster range, no address to route to', async (t) => {
  const { fake, config } = await kindCluster(t)
  const store = await openFor(t, config())
  const unknown = await datastoreErrorOf(store.claim(request('not-a-node')))
  t.equal(unknown?.kind, 'invalid')
  t.match(unknown?.message, `Node not-a-node does not exist on ${fake.url}`)
  const outside = await datastoreErrorOf(store.claim(request('kind-worker', { clusterCidr: '10.96.0.0/12' })))
  t.equal(outside?.kind, 'invalid')
  t.match(outside?.message, /10\.244\.1\.0\/24, outside flatnet's cluster range 10\.96\.0\.0\/12/)
  t.equal((await datastoreErrorOf(store.claim(request('no-address-yet'))))?.kind, 'invalid')
})

t.test('remove refuses a cluster-assigned subnet and leaves the Node alone; renew checks the Node still has one', async (t) => {
  const { fake, config } = await kindCluster(t)
  const store = await openFor(t, config())
  const before = fake.resourceVersion
  const err = await datastoreErrorOf(store.remove('kind-worker'))
  t.equal(err?.kind, 'invalid')
  t.match(err?.message, /assigned by kube-controller-manager.*kubectl delete node kind-worker/)
  t.equal(await store.remove('no-podcidr-yet'), false, 'nothing to remove')
  t.equal(fake.resourceVersion, before, 'nothing was written')
  await store.renew('kind-worker', 'any-owner')
  t.equal((await datastoreErrorOf(store.renew('not-a-node', 'any-owner')))?.kind, 'lost')
})

t.test('watch: Nodes getting a podCIDR join, deleted Nodes leave', async (t) => {
  const { fake, config } = await kindCluster(t)
  const store = await openFor(t, config({ clusterCidr: '10.244.0.0/16' }))
  const seen = watchNodes(t, store)
  const names = (nodes: { name: string }[]) => nodes.map((n) => n.name).join()
  t.ok(await seen.until((nodes) => names(nodes) === 'cloud-node,kind-control-plane,kind-worker,kind-worker2'), 'the current peers first')
  fake.updateNode('no-podcidr-yet', (n) => {
    n.spec = { ...n.spec, podCIDR: '10.244.5.0/24', podCIDRs: ['10.244.5.0/24'] }
  })
  t.ok(await seen.until((nodes) => nodes.some((n) => n.name === 'no-podcidr-yet' && n.subnet === '10.244.5.0/24')), 'a Node given a podCIDR joins')
  fake.deleteNode('kind-worker')
  t.ok(await seen.until((nodes) => !nodes.some((n) => n.name === 'kind-worker')), 'a deleted Node leaves')
  fake.updateNode('no-address-yet', (n) => {
    n.status = { ...n.status, addresses: [{ type: 'InternalIP', address: '172.18.0.6' }] }
  })
  t.ok(await seen.until((nodes) => nodes.some((n) => n.name === 'no-address-yet' && n.nodeIP === '172.18.0.6')), 'a Node that reports its address joins')
  t.same(seen.errors, [])
})

t.test("markNetworkAvailable sets the Node's NetworkUnavailable condition to False through nodes/status, once", async (t) => {
  const { fake, config } = await kindCluster(t)
  const at = '2025-01-01T00:00:00Z'
  fake.addNode(
    fakeNode('gce-node', {
      podCIDRs: ['10.244.6.0/24'],
      internalIPs: ['10.128.0.6'],
      conditions: [{ type: 'NetworkUnavailable', status: 'True', reason: 'NoRouteCreated', message: 'Node created without a route', lastHeartbeatTime: at, lastTransitionTime: at }],
    }),
  )
  const store = await openFor(t, config())
  t.equal(await store.markNetworkAvailable!('gce-node'), true, 'changed')
  const conditions = fake.node('gce-node')!.status!.conditions!
  t.match(
    conditions.find((c) => c.type === 'NetworkUnavailable'),
    { status: 'False', reason: 'FlatnetRoutesCreated' },
  )
  t.same(
    conditions.map((c) => [c.type, c.status]),
    [
      ['MemoryPressure', 'False'],
      ['DiskPressure', 'False'],
      ['PIDPressure', 'False'],
      ['Ready', 'True'],
      ['NetworkUnavailable', 'False'],
    ],
    "kubelet's conditions are untouched",
  )
  t.match(
    fake.requests.find((r) => r.method === 'PATCH'),
    { path: '/api/v1/nodes/gce-node/status', status: 200 },
    'written through the status subresource',
  )
  const version = fake.node('gce-node')!.metadata.resourceVersion
  t.equal(await store.markNetworkAvailable!('gce-node'), false, 'already available: nothing to do')
  t.equal(fake.node('gce-node')!.metadata.resourceVersion, version, 'and nothing written')
  t.equal(await store.markNetworkAvailable!('kind-worker'), true, 'a Node without the condition (kind) gets it')
  t.match(
    fake.node('kind-worker')!.status!.conditions!.find((c) => c.type === 'NetworkUnavailable'),
    { status: 'False', reason: 'FlatnetRoutesCreated' },
  )
  t.equal((await datastoreErrorOf(store.markNetworkAvailable!('not-a-node')))?.kind, 'invalid')
})

t.test('dual-stack: a node claims the podCIDR of each cluster range family, in cluster-range order; peers list both families', async (t) => {
  const { fake, config } = await kindCluster(t)
  const store = await openFor(t, config({ clusterCidrs: ['10.244.0.0/16', 'fd00:10:244::/56'] }))
  const dual = { moreRanges: [{ clusterCidr: 'fd00:10:244::/56', prefixLength: 64 }] }
  const held = await store.claim(request('kind-worker2', { nodeIP: '172.18.0.4', nodeIPs: ['172.18.0.4', 'fc00:f853:ccd:e793::4'], ...dual }))
  t.same(
    [held.subnet, held.nodeIP, held.subnets, held.nodeIPs],
    ['10.244.2.0/24', '172.18.0.4', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['172.18.0.4', 'fc00:f853:ccd:e793::4']],
    'IPv4 first, as --cluster-cidr orders them, though the Node lists IPv6 first',
  )
  const single = await datastoreErrorOf(store.claim(request('kind-worker', { nodeIP: '172.18.0.3', ...dual })))
  t.equal(single?.kind, 'unavailable', 'a Node without an IPv6 podCIDR cannot hold the IPv6 family yet')
  t.match(single?.message, /kind-worker has no spec.podCIDRs of IPv6 yet/, 'naming the family')
  const listed = await store.list()
  t.same(listed.find((n) => n.name === 'kind-worker2')?.subnets, ['10.244.2.0/24', 'fd00:10:244:2::/64'], 'the dual-stack peer with both')
  t.same(listed.find((n) => n.name === 'kind-worker')?.subnets, undefined, 'an IPv4-only peer as before')
  const outside = await datastoreErrorOf(store.claim(request('kind-worker2', { nodeIP: '172.18.0.4', moreRanges: [{ clusterCidr: 'fd00:99::/56', prefixLength: 64 }] })))
  t.equal(outside?.kind, 'invalid', 'an IPv6 podCIDR outside the IPv6 cluster range is refused')
  t.match(outside?.message, /podCIDR fd00:10:244:2::\/64, outside flatnet's cluster range fd00:99::\/56/)
  t.equal(fake.node('kind-worker2')?.metadata.annotations?.['flatnet.io/pod-cidr'], undefined, 'nothing written to the Node')
})
