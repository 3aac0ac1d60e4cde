// The Node watch of the kubernetes datastore against a FAKE API server: resuming from the last
// resourceVersion, bookmarks, 410 Gone, streams ended by the server, outages.
import t, { type Test } from 'tap'
import { openFor, watchNodes } from './testing/contractSuite.js'
import type { FakeApiServer, FakeRequestRecord } from './testing/fakeApiServer.js'
import { fakeNode } from './testing/fakeApiServerNodes.js'
import { startFakeCluster } from './testing/fakeApiServerHarness.js'
import { claimLease } from './kubernetesNodes.js'

const names = (nodes: { name: string }[]) => nodes.map((n) => n.name).join()
const isWatch = (r: FakeRequestRecord) => r.path === '/api/v1/nodes' && r.query.watch === 'true'
const isList = (r: FakeRequestRecord) => r.path === '/api/v1/nodes' && r.query.watch === undefined && r.query.limit === undefined

/** Waits (bounded, so a broken watch fails instead of hanging) until the fake saw a matching request. */
async function untilRequest(fake: FakeApiServer, match: (r: FakeRequestRecord) => boolean, after = 0): Promise<FakeRequestRecord | undefined> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
    const found = fake.requests.slice(after).find(match)
    if (found) return found
  }
  return undefined
}

async function watchedCluster(t: Test) {
  const cluster = await startFakeCluster(t)
  cluster.fake.addNode(fakeNode('a', { podCIDRs: ['10.244.0.0/24'], internalIPs: ['172.18.0.2'] }))
  cluster.fake.addNode(fakeNode('b', { podCIDRs: ['10.244.1.0/24'], internalIPs: ['172.18.0.3'] }))
  const store = await openFor(t, cluster.config({ clusterCidr: '10.244.0.0/16' }))
  const seen = watchNodes(t, store)
  t.ok(await seen.until((nodes) => names(nodes) === 'a,b'), 'the watch starts with the listed Nodes')
  t.ok(await untilRequest(cluster.fake, (r) => isWatch(r) && r.status === 200), 'and opens a watch stream')
  return { ...cluster, store, seen }
}

t.test('the watch resumes from the list it made, asks for bookmarks, and streams changes', async (t) => {
  const { fake, seen } = await watchedCluster(t)
  const list = fake.requests.find(isList)!
  const watch = fake.requests.find(isWatch)!
  t.ok(fake.requests.indexOf(list) < fake.requests.indexOf(watch), 'list first, then watch')
  t.equal(watch.query.allowWatchBookmarks, 'true')
  t.match(watch.query.resourceVersion, /^\d+$/, 'from the resourceVersion of the list')
  t.ok(Number(watch.query.timeoutSeconds) >= 300, 'the server is asked to end the stream after minutes')
  fake.addNode(fakeNode('c', { podCIDRs: ['10.244.2.0/24'], internalIPs: ['172.18.0.4'] }))
  t.ok(await seen.until((nodes) => names(nodes) === 'a,b,c'))
  t.same(seen.errors, [])
})

t.test('the server ending the stream: the watch resumes from the last resourceVersion it saw, without listing again', async (t) => {
  const { fake, seen } = await watchedCluster(t)
  fake.updateNode('b', (n) => {
    n.metadata.labels!.touched = 'yes'
  })
  const lastSeen = fake.resourceVersion
  // The MODIFIED event is written before the stream ends: the client reads it first.
  const mark = fake.requests.length
  t.equal(fake.closeWatches(), 1)
  const resumed = await untilRequest(fake, isWatch, mark)
  t.equal(resumed?.query.resourceVersion, lastSeen, 'resumed from the last event')
  fake.deleteNode('a')
  t.ok(await seen.until((nodes) => names(nodes) === 'b'), 'changes after the reconnect are reported')
  t.equal(fake.requests.filter(isList).length, 1, 'no second list')
  t.same(seen.errors, [], 'a normal end of stream is no error')
})

t.test('bookmarks advance the resourceVersion: after a compaction the watch resumes without a 410 or a re-list', async (t) => {
  const { fake, seen } = await watchedCluster(t)
  // Writes to other resources move the store's resourceVersion on; the Node watch sees no event.
  const a = fake.node('a')!
  for (const subnet of ['10.250.0.0/24', '10.250.1.0/24', '10.250.2.0/24']) fake.addLease(claimLease(subnet, a, 'kube-system', new Date()))
  const bookmarkVersion = fake.resourceVersion
  fake.sendBookmarks()
  fake.compactHistory()
  const mark = fake.requests.length
  fake.closeWatches()
  const resumed = await untilRequest(fake, isWatch, mark)
  t.equal(resumed?.query.resourceVersion, bookmarkVersion, "resumed from the bookmark's resourceVersion")
  fake.addNode(fakeNode('c', { podCIDRs: ['10.244.2.0/24'], internalIPs: ['172.18.0.4'] }))
  t.ok(await seen.until((nodes) => names(nodes) === 'a,b,c'))
  t.same(
    fake.requests
      .filter(isWatch)
      .flatMap((r) => r.events ?? [])
      .filter((e) => e === 'ERROR'),
    [],
    'no 410',
  )
  t.equal(fake.requests.filter(isList).length, 1, 'no re-list')
})

t.test('410 Gone: the watch lists again and reports what changed while it was away, deletions included', async (t) => {
  const { fake, seen } = await watchedCluster(t)
  // An outage: streams end and new ones are refused; meanwhile a Node goes, another comes, and
  // the server compacts its history past the watch's resourceVersion.
  fake.refuseWatches = true
  const mark = fake.requests.length
  fake.closeWatches()
  t.ok(await untilRequest(fake, (r) => isWatch(r) && r.status === 503, mark), 'the watch retries during the outage')
  fake.deleteNode('a')
  fake.addNode(fakeNode('c', { podCIDRs: ['10.244.2.0/24'], internalIPs: ['172.18.0.4'] }))
  fake.compactHistory()
  const back = fake.requests.length
  fake.refuseWatches = false
  t.ok(await seen.until((nodes) => names(nodes) === 'b,c'), 'the deletion and the addition are reported')
  const after = fake.requests.slice(back)
  t.ok(
    after.some((r) => isWatch(r) && r.events?.[0] === 'ERROR'),
    'the resumed watch got ERROR 410',
  )
  t.ok(after.some(isList), 'then listed again')
  t.ok(
    seen.errors.some((e) => e.message.includes(fake.url) && e.message.includes('503')),
    'the outage was reported, naming the API server',
  )
  fake.addNode(fakeNode('d', { podCIDRs: ['10.244.3.0/24'], internalIPs: ['172.18.0.5'] }))
  t.ok(await seen.until((nodes) => names(nodes) === 'b,c,d'), 'and it keeps watching')
})

t.test("kubelet's updates that change no peer call nobody", async (t) => {
  const { fake, seen } = await watchedCluster(t)
  const calls = seen.calls.length
  for (let i = 0; i < 5; i++)
    fake.updateNode('a', (n) => {
      n.status = { ...n.status, conditions: [] }
      n.metadata.labels!.beat = String(i)
    })
  fake.addNode(fakeNode('c', { podCIDRs: ['10.244.2.0/24'], internalIPs: ['172.18.0.4'] }))
  t.ok(await seen.until((nodes) => names(nodes) === 'a,b,c'))
  t.equal(seen.calls.length, calls + 1, 'one call: for the Node that joined')
})

t.test('stopping the watch closes its stream and makes no more requests', async (t) => {
  const cluster = await startFakeCluster(t)
  cluster.fake.addNode(fakeNode('a', { podCIDRs: ['10.244.0.0/24'], internalIPs: ['172.18.0.2'] }))
  const store = await openFor(t, cluster.config())
  const calls: string[] = []
  const stop = store.watch(
    (nodes) => calls.push(names(nodes)),
    () => undefined,
  )
  t.ok(await untilRequest(cluster.fake, (r) => isWatch(r) && r.status === 200))
  // The first list is delivered after the watch opens (bursts are merged first): wait for it.
  for (const deadline = Date.now() + 10_000; calls.length === 0 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20))
  stop()
  for (const deadline = Date.now() + 10_000; cluster.fake.openWatches > 0 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20))
  t.equal(cluster.fake.openWatches, 0, 'stream closed')
  const count = cluster.fake.requests.length
  cluster.fake.addNode(fakeNode('b', { podCIDRs: ['10.244.1.0/24'], internalIPs: ['172.18.0.3'] }))
  await new Promise((r) => setTimeout(r, 300))
  t.equal(cluster.fake.requests.length, count, 'no request after stop')
  t.same(calls, ['a'], 'no call after stop')
})
