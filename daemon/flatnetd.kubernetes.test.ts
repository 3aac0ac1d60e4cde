// flatnetd on the kubernetes datastore, as a process in a node namespace, against the FAKE API
// server (daemon/datastore/fakeApiServer.ts; no kube-apiserver can run on these machines) reached
// through a relay into the namespace. What a kind node would see: the subnet from this Node's
// spec.podCIDRs, a route per peer Node through its InternalIP, the Node's NetworkUnavailable
// condition set to False once routes are in place, and a deleted Node's route removed.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { testNamespaces } from '../e2e/helpers/index.js'
import { fakeNode } from './datastore/testing/fakeApiServerNodes.js'
import { startFakeCluster } from './datastore/testing/fakeApiServerHarness.js'
import { eventually, flatnetdMissingReason, nodeNamespace, routeLines, startFlatnetd, tempDir } from './testing/harness.js'
import { relayIntoNetns } from './testing/nsRelay.js'

const skip = flatnetdMissingReason()
const at = '2025-01-01T00:00:00Z'

t.test('a kind node: podCIDRs subnet, routes to peer Nodes, NetworkUnavailable=False, deleted Node → route gone', { skip }, async (t) => {
  const { fake, kubeconfig } = await startFakeCluster(t)
  fake.addNode(
    fakeNode('me', {
      podCIDRs: ['10.244.5.0/24'],
      internalIPs: ['192.168.79.1'],
      conditions: [{ type: 'NetworkUnavailable', status: 'True', reason: 'NoRouteCreated', message: 'Node created without a route', lastHeartbeatTime: at, lastTransitionTime: at }],
    }),
  )
  fake.addNode(fakeNode('peer', { podCIDRs: ['10.244.6.0/24'], internalIPs: ['192.168.79.2'] }))
  fake.addNode(fakeNode('joining', { internalIPs: ['192.168.79.3'] })) // no podCIDR yet: skipped

  const dir = tempDir(t, 'dkube')
  const nss = testNamespaces(t, 'dkube')
  const ns = await nodeNamespace(nss, '192.168.79.1/24')
  const port = Number(new URL(fake.url).port)
  await relayIntoNetns(t, ns, port, port)

  const d = startFlatnetd(t, ns, [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.79.1',
    '--datastore',
    'kubernetes',
    '--kubeconfig',
    kubeconfig,
    '--cluster-cidr',
    '10.244.0.0/16',
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    join(dir, 'net.d'),
    '--ipam-data-dir',
    join(dir, 'ipam'),
    '--cni-path',
    '/usr/lib/cni',
    '--reconcile-interval',
    '0.5',
  ])
  const ready = await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
  )
  t.match(JSON.parse(ready.body), { ready: true, node: 'me', subnet: '10.244.5.0/24' }, "this Node's spec.podCIDRs")
  const list = JSON.parse(readFileSync(join(dir, 'net.d', '10-flatnet.conflist'), 'utf8'))
  t.same(list.plugins[0].ranges, ['10.244.5.0/24'])
  t.same(await routeLines(ns), ['10.244.6.0/24 via 192.168.79.2 proto 200'], 'one route, to the peer with a podCIDR')

  const condition = await eventually(
    'NetworkUnavailable=False',
    () => fake.node('me')!.status!.conditions!.find((c) => c.type === 'NetworkUnavailable'),
    (c) => c?.status === 'False',
  )
  t.equal(condition?.reason, 'FlatnetRoutesCreated')
  t.notOk(
    fake.node('peer')!.status!.conditions?.some((c) => c.type === 'NetworkUnavailable' && c.status === 'False'),
    "only this node's own condition is written",
  )

  // the joining node gets its podCIDR from kube-controller-manager: a route appears
  fake.updateNode('joining', (n) => {
    n.spec = { ...n.spec, podCIDR: '10.244.7.0/24', podCIDRs: ['10.244.7.0/24'] }
  })
  await eventually(
    'route to the joined node',
    () => routeLines(ns),
    (r) => r.includes('10.244.7.0/24 via 192.168.79.3 proto 200'),
  )
  // kubectl delete node peer: its route goes
  fake.deleteNode('peer')
  const after = await eventually(
    'peer route removed',
    () => routeLines(ns),
    (r) => !r.some((l) => l.startsWith('10.244.6.0/24')),
  )
  t.same(after, ['10.244.7.0/24 via 192.168.79.3 proto 200'])
  t.equal(await d.stop('SIGTERM'), 0)
})
