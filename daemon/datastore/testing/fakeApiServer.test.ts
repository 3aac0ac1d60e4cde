// The FAKE API server's own semantics, checked with plain HTTP: the kubernetes datastore's tests
// are only as good as the fake is faithful to the parts of Kubernetes they rely on.
import t, { type Test } from 'tap'
import { FakeApiServer } from './fakeApiServer.js'
import { fakeNode } from './fakeApiServerNodes.js'
import { claimLease, type NodeJson } from '../kubernetesNodes.js'

const token = 'test-token'

async function start(t: Test): Promise<{ fake: FakeApiServer; call: (method: string, path: string, body?: unknown, contentType?: string) => Promise<{ status: number; body: any }> }> {
  const fake = await FakeApiServer.start({ token })
  t.teardown(() => fake.close())
  const call = async (method: string, path: string, body?: unknown, contentType = 'application/json') => {
    const res = await fetch(fake.url + path, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': contentType },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    return { status: res.status, body: await res.json() }
  }
  return { fake, call }
}

/** Reads a watch stream until `count` events arrived or it ended. */
async function watchEvents(url: string, count: number): Promise<Array<{ type: string; object: any }>> {
  const controller = new AbortController()
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal: controller.signal })
  const events: Array<{ type: string; object: any }> = []
  let text = ''
  const decoder = new TextDecoder()
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    text += decoder.decode(chunk, { stream: true })
    let i: number
    while ((i = text.indexOf('\n')) >= 0) {
      events.push(JSON.parse(text.slice(0, i)))
      text = text.slice(i + 1)
    }
    if (events.length >= count) break
  }
  controller.abort()
  return events
}

t.test('requests without the bearer token are 401 Unauthorized', async (t) => {
  const { fake } = await start(t)
  const res = await fetch(`${fake.url}/api/v1/nodes`)
  t.equal(res.status, 401)
  t.match(await res.json(), { kind: 'Status', reason: 'Unauthorized', code: 401 })
})

t.test('list: items without kind, the store resourceVersion; get of a missing Node is 404 NotFound', async (t) => {
  const { fake, call } = await start(t)
  fake.addNode(fakeNode('b'))
  fake.addNode(fakeNode('a'))
  const list = await call('GET', '/api/v1/nodes')
  t.equal(list.body.kind, 'NodeList')
  t.same(
    list.body.items.map((n: NodeJson) => n.metadata.name),
    ['a', 'b'],
  )
  t.equal(list.body.items[0].kind, undefined)
  t.equal(list.body.metadata.resourceVersion, fake.resourceVersion)
  t.match(await call('GET', '/api/v1/nodes/c'), { status: 404, body: { reason: 'NotFound', message: 'nodes "c" not found' } })
})

t.test('watch from a resourceVersion replays what came after it; older than the history → ERROR 410 Expired', async (t) => {
  const { fake } = await start(t)
  fake.addNode(fakeNode('a'))
  const from = fake.resourceVersion
  fake.addNode(fakeNode('b'))
  fake.updateNode('a', (n) => {
    n.metadata.labels!.x = 'y'
  })
  const events = await watchEvents(`${fake.url}/api/v1/nodes?watch=true&resourceVersion=${from}`, 2)
  t.same(
    events.map((e) => [e.type, e.object.metadata.name]),
    [
      ['ADDED', 'b'],
      ['MODIFIED', 'a'],
    ],
  )
  fake.compactHistory()
  const expired = await watchEvents(`${fake.url}/api/v1/nodes?watch=true&resourceVersion=${from}`, 1)
  t.match(expired, [{ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } }])
  const current = await watchEvents(`${fake.url}/api/v1/nodes?watch=true&resourceVersion=${fake.resourceVersion}&timeoutSeconds=1`, 1)
  t.same(current, [], 'from the current version after compaction: no error, the stream ends at timeoutSeconds')
})

t.test('bookmarks go only to watches that allowed them, with the current resourceVersion', async (t) => {
  const { fake } = await start(t)
  fake.addNode(fakeNode('a'))
  const rv = fake.resourceVersion
  const allowed = watchEvents(`${fake.url}/api/v1/nodes?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`, 2)
  const plain = watchEvents(`${fake.url}/api/v1/nodes?watch=true&resourceVersion=${rv}`, 1)
  while (fake.openWatches < 2) await new Promise((r) => setTimeout(r, 10))
  fake.sendBookmarks()
  fake.addNode(fakeNode('b'))
  t.same(
    (await allowed).map((e) => e.type),
    ['BOOKMARK', 'ADDED'],
  )
  t.same(
    (await plain).map((e) => e.type),
    ['ADDED'],
  )
})

t.test('patch: a stale resourceVersion is 409 Conflict; a current one writes; a no-op writes nothing; status is ignored on the main resource', async (t) => {
  const { fake, call } = await start(t)
  const node = fake.addNode(fakeNode('a'))
  const merge = 'application/merge-patch+json'
  const stale = await call('PATCH', '/api/v1/nodes/a', { metadata: { resourceVersion: '1', annotations: { k: 'v' } } }, merge)
  t.match(stale, { status: 409, body: { reason: 'Conflict' } })
  const ok = await call('PATCH', '/api/v1/nodes/a', { metadata: { resourceVersion: node.metadata.resourceVersion, annotations: { k: 'v' } }, status: { conditions: [] } }, merge)
  t.equal(ok.status, 200)
  t.equal(ok.body.metadata.annotations.k, 'v')
  t.equal(ok.body.status.conditions.length, 4, 'status unchanged through the main resource')
  t.not(ok.body.metadata.resourceVersion, node.metadata.resourceVersion)
  const again = await call('PATCH', '/api/v1/nodes/a', { metadata: { annotations: { k: 'v' } } }, merge)
  t.equal(again.body.metadata.resourceVersion, ok.body.metadata.resourceVersion, 'no change, no new version')
  t.match(
    await call('PATCH', '/api/v1/nodes/a', { metadata: {} }, 'application/json-patch+json'),
    { status: 415, body: { reason: 'UnsupportedMediaType' } },
    'JSON patch is not implemented by the fake, and says so',
  )
})

t.test('status patch (strategic merge) merges conditions by type; spec.podCIDRs can be set once', async (t) => {
  const { fake, call } = await start(t)
  fake.addNode(fakeNode('a'))
  const cond = { type: 'NetworkUnavailable', status: 'False', reason: 'R' }
  const res = await call('PATCH', '/api/v1/nodes/a/status', { status: { conditions: [cond] }, metadata: { labels: { ignored: 'yes' } } }, 'application/strategic-merge-patch+json')
  t.equal(res.status, 200)
  t.same(
    res.body.status.conditions.map((c: { type: string }) => c.type),
    ['MemoryPressure', 'DiskPressure', 'PIDPressure', 'Ready', 'NetworkUnavailable'],
  )
  t.equal(res.body.metadata.labels.ignored, undefined, 'the status subresource ignores metadata')
  const merge = 'application/merge-patch+json'
  t.equal((await call('PATCH', '/api/v1/nodes/a', { spec: { podCIDR: '10.244.0.0/24', podCIDRs: ['10.244.0.0/24'] } }, merge)).status, 200, 'unset → set')
  t.match(await call('PATCH', '/api/v1/nodes/a', { spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] } }, merge), { status: 422, body: { reason: 'Invalid' } }, 'set → other')
})

t.test('lease create is create-if-absent; MicroTime is checked; namespaces must exist; delete honours preconditions', async (t) => {
  const { fake, call } = await start(t)
  const node = fake.addNode(fakeNode('a'))
  const lease = claimLease('10.244.0.0/24', node, 'kube-system', new Date())
  const path = '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases'
  const created = await call('POST', path, lease)
  t.equal(created.status, 201)
  t.match(await call('POST', path, lease), { status: 409, body: { reason: 'AlreadyExists', message: 'leases.coordination.k8s.io "flatnet-subnet-10-244-0-0-24" already exists' } })
  t.match(await call('POST', path, { ...lease, metadata: { name: 'l2' }, spec: { acquireTime: new Date().toISOString() } }), { status: 400 }, 'milliseconds are not a MicroTime')
  t.match(await call('POST', '/apis/coordination.k8s.io/v1/namespaces/nowhere/leases', { ...lease, metadata: { name: 'l3' } }), { status: 404, body: { message: 'namespaces "nowhere" not found' } })
  const wrongUid = await call('DELETE', `${path}/${lease.metadata.name}`, { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { uid: 'other' } })
  t.match(wrongUid, { status: 409, body: { reason: 'Conflict' } })
  t.equal((await call('DELETE', `${path}/${lease.metadata.name}`, { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { uid: created.body.metadata.uid } })).status, 200)
  t.same(fake.leases('kube-system'), [])
})

t.test('deleting a Node deletes what its ownerReferences tie to it (garbage collection)', async (t) => {
  const { fake } = await start(t)
  const a = fake.addNode(fakeNode('a'))
  const b = fake.addNode(fakeNode('b'))
  fake.addLease(claimLease('10.244.0.0/24', a, 'kube-system', new Date()))
  fake.addLease(claimLease('10.244.1.0/24', b, 'kube-system', new Date()))
  fake.deleteNode('a')
  t.same(
    fake.leases('kube-system').map((l) => l.spec?.holderIdentity),
    ['b'],
  )
  t.equal(fake.node('a'), undefined)
})
