// The kubernetes backend of cluster objects against the in-test FAKE API server: list + watch per
// kind, resuming from bookmarks, re-listing after 410 Gone, and Pods cut down to what flatnet reads.
import t, { type Test } from 'tap'
import { startFakeCluster } from '../datastore/testing/fakeApiServerHarness.js'
import type { FakeRequestRecord } from '../datastore/testing/fakeApiServer.js'
import { openObjectStore } from './index.js'
import { isWritable } from './store.js'
import { namespace, pod, policy, record } from './testing/contractSuite.js'

const names = (objects: Array<{ metadata?: { namespace?: string; name?: string } }>) => objects.map((o) => (o.metadata?.namespace ? `${o.metadata.namespace}/` : '') + o.metadata?.name).join(',')
const podWatches = (r: FakeRequestRecord) => r.path === '/api/v1/pods' && r.query.watch === 'true'
const podLists = (r: FakeRequestRecord) => r.path === '/api/v1/pods' && r.query.watch === undefined

async function cluster(t: Test) {
  const c = await startFakeCluster(t)
  const store = await openObjectStore(c.config())
  t.teardown(() => store.close())
  return { ...c, store }
}

t.test('lists and watches Namespaces, Pods and NetworkPolicies cluster-wide; read only', async (t) => {
  const { fake, store } = await cluster(t)
  t.notOk(isWritable(store), 'kubectl writes; flatnet only reads')
  fake.putObject('namespaces', namespace('x') as never)
  fake.putObject('pods', pod('x', 'a', { app: 'web' }) as never)
  const pods = record(t, store, 'Pod')
  const namespaces = record(t, store, 'Namespace')
  const policies = record(t, store, 'NetworkPolicy')
  t.ok(await pods.until((l) => names(l) === 'x/a'))
  t.ok(await namespaces.until((l) => names(l) === 'x'))
  t.ok(await policies.until((l) => l.length === 0), 'an empty list is delivered: the kind is fully listed')
  fake.putObject('pods', pod('default', 'b') as never)
  fake.putObject('networkpolicies', policy('x', 'deny', { podSelector: {}, policyTypes: ['Ingress'] }) as never)
  t.ok(await pods.until((l) => names(l) === 'default/b,x/a'), 'a new pod arrives by watch')
  t.ok(await policies.until((l) => names(l) === 'x/deny' && l[0]!.kind === 'NetworkPolicy'))
  fake.deleteObject('namespaces', undefined, 'x')
  t.ok(await pods.until((l) => names(l) === 'default/b'), 'deletions arrive by watch')
  t.equal(names(await store.list('Pod', 'default')), 'default/b', 'list of one namespace')
  t.same([...pods.errors, ...namespaces.errors, ...policies.errors], [])
})

t.test('a Pod update that changes nothing flatnet reads is not delivered; a label or IP change is', async (t) => {
  const { fake, store } = await cluster(t)
  const p = { ...pod('default', 'a'), status: { phase: 'Running', podIP: '10.244.0.2', conditions: [{ type: 'Ready', status: 'True' }] } }
  fake.putObject('pods', p as never)
  const pods = record(t, store, 'Pod')
  t.ok(await pods.until((l) => l[0]?.status?.podIP === '10.244.0.2'))
  t.same(Object.keys(pods.lists.at(-1)![0]!.status!).sort(), ['phase', 'podIP'], 'conditions are not kept')
  const delivered = pods.lists.length
  fake.putObject('pods', { ...p, status: { ...p.status, conditions: [{ type: 'Ready', status: 'False' }] } } as never)
  fake.putObject('pods', { ...p, metadata: { ...p.metadata, labels: { app: 'x' } } } as never)
  t.ok(await pods.until((l) => l[0]?.metadata?.labels?.app === 'x'))
  t.equal(pods.lists.length, delivered + 1, 'only the label change was delivered')
})

t.test('the watch resumes from a bookmark; after 410 Gone it lists again and catches what it missed', async (t) => {
  const { fake, store } = await cluster(t)
  fake.putObject('pods', pod('default', 'a') as never)
  const pods = record(t, store, 'Pod')
  t.ok(await pods.until((l) => names(l) === 'default/a'))
  for (const deadline = Date.now() + 10_000; fake.openWatches < 1 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20))
  fake.putObject('namespaces', namespace('unrelated') as never) // moves the resourceVersion; not a pod event
  fake.sendBookmarks()
  await new Promise((r) => setTimeout(r, 200))
  let mark = fake.requests.length
  fake.closeWatches()
  for (const deadline = Date.now() + 10_000; !fake.requests.slice(mark).some(podWatches) && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20))
  t.equal(fake.requests.slice(mark).find(podWatches)?.query.resourceVersion, fake.resourceVersion, 'resumed from the bookmark')
  t.equal(fake.requests.filter(podLists).length, 1, 'no second list')

  // History compacted while the stream is down: the old version is Gone.
  mark = fake.requests.length
  fake.refuseWatches = true
  fake.closeWatches()
  fake.putObject('pods', pod('default', 'b') as never)
  fake.deleteObject('pods', 'default', 'a')
  fake.compactHistory()
  fake.refuseWatches = false
  t.ok(await pods.until((l) => names(l) === 'default/b'), 'the re-list shows the pod added and the pod deleted meanwhile')
  t.equal(fake.requests.filter(podLists).length, 2, 'listed again after 410')
})

t.test('Services and EndpointSlices are listed and watched, cut down to what the service proxy reads', async (t) => {
  const { fake, store } = await cluster(t)
  const service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: 'web',
      namespace: 'default',
      labels: { app: 'web' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"a":"big copy"}' },
      managedFields: [{ manager: 'kubectl' }],
    },
    spec: { type: 'NodePort', selector: { app: 'web' }, clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080, protocol: 'TCP' }] },
  }
  const slice = (ready: boolean, hints = 'a') => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' }, annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': hints } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: [
      {
        addresses: ['10.244.1.5'],
        conditions: { ready },
        nodeName: 'n1',
        zone: 'z',
        hints: { forZones: [{ name: hints }] },
        targetRef: { kind: 'Pod', namespace: 'default', name: 'web-1', uid: 'u' },
      },
    ],
  })
  fake.putObject('services', service as never)
  fake.putObject('endpointslices', slice(true) as never)
  const services = record(t, store, 'Service')
  const slices = record(t, store, 'EndpointSlice')
  t.ok(await services.until((l) => names(l) === 'default/web'))
  t.ok(await slices.until((l) => names(l) === 'default/web-abc'))
  const got = services.lists.at(-1)![0]!
  t.equal(got.kind, 'Service')
  t.same(Object.keys(got.metadata!).sort(), ['creationTimestamp', 'labels', 'name', 'namespace', 'uid'], 'no annotations, no managedFields')
  t.same(got.spec, service.spec)
  t.same(slices.lists.at(-1)![0]!.endpoints, [{ addresses: ['10.244.1.5'], conditions: { ready: true }, nodeName: 'n1', targetRef: { kind: 'Pod', namespace: 'default', name: 'web-1' } }])
  const delivered = slices.lists.length
  fake.putObject('endpointslices', slice(true, 'b') as never) // only what the proxy does not read changes
  fake.putObject('endpointslices', slice(false, 'b') as never)
  t.ok(await slices.until((l) => l[0]?.endpoints[0]?.conditions?.ready === false))
  t.equal(slices.lists.length, delivered + 1, 'only the readiness change was delivered')
  fake.deleteObject('services', 'default', 'web')
  t.ok(await services.until((l) => l.length === 0))
  t.same([...services.errors, ...slices.errors], [])
})
