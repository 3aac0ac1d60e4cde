import { randomBytes } from 'node:crypto'
import { createServer, type Socket } from 'node:net'
import { Etcd3 } from 'etcd3'
import t from 'tap'
import { datastoreErrorOf, openFor, request, runDatastoreContract, watchNodes } from './testing/contractSuite.js'
import { freeLoopbackPort, startEtcd } from './testing/etcdTestServer.js'
import { openDatastore } from './index.js'
import type { DatastoreConfig } from './types.js'

const etcd = await startEtcd()
t.teardown(() => etcd.stop())
const run = randomBytes(4).toString('hex')
let stores = 0
const fresh = (leaseTtlSeconds = 30): DatastoreConfig => ({
  kind: 'etcd',
  endpoints: [etcd.endpoint],
  prefix: `/flatnet-test-${run}/store-${++stores}/`,
  leaseTtlSeconds,
  timeoutMs: 3000,
})

t.test('contract', async (t) => runDatastoreContract(t, () => fresh()))

t.test('a node whose daemon stops renewing disappears when its lease expires; its subnet is free again', async (t) => {
  // 3 s: etcd's minimum is 2 s (1.5 election timeouts), and the renewing node needs slack on a
  // loaded machine.
  const config = fresh(3)
  const mortal = await openFor(t, config)
  const keeper = await openFor(t, config)
  const observer = await openFor(t, config)
  t.equal((await mortal.claim(request('mortal'))).subnet, '10.244.0.0/24')
  t.equal((await keeper.claim(request('keeper'))).subnet, '10.244.1.0/24')
  const renewals = setInterval(() => void keeper.renew('keeper', 'owner-of-keeper').catch(() => undefined), 500)
  t.teardown(() => clearInterval(renewals))
  const seen = watchNodes(t, observer)
  t.ok(await seen.until((nodes) => nodes.length === 2), 'both are there at first')
  const after = await seen.until((nodes) => nodes.map((n) => n.name).join() === 'keeper', 15_000)
  t.ok(after, 'watch reports the node that stopped renewing gone, the renewing one stays')
  t.same(
    (await observer.list()).map((n) => n.name),
    ['keeper'],
    'list agrees',
  )
  t.equal((await datastoreErrorOf(mortal.renew('mortal', 'owner-of-mortal')))?.kind, 'lost', 'renewing too late: lost')
  t.equal((await observer.claim(request('newcomer'))).subnet, '10.244.0.0/24', "a new node gets the expired node's subnet")
  const back = await mortal.claim(request('mortal'))
  t.equal(back.subnet, '10.244.2.0/24', 'the expired daemon can claim again (on a new lease)')
  await mortal.renew('mortal', 'owner-of-mortal')
})

t.test('closing a datastore does not give up its claims', async (t) => {
  const config = fresh()
  const first = await openDatastore(config)
  await first.claim(request('upgrading'))
  await first.close()
  const other = await openFor(t, config)
  t.same(
    (await other.list()).map((n) => n.name),
    ['upgrading'],
  )
})

t.test('an unreachable etcd is an unavailable error naming the endpoint, not a hang', async (t) => {
  const endpoint = `http://127.0.0.1:${await freeLoopbackPort()}`
  const bound = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 20_000).unref())
  const outcome = await Promise.race([datastoreErrorOf(openDatastore({ kind: 'etcd', endpoints: [endpoint], timeoutMs: 1000 })), bound])
  t.not(outcome, 'hung', 'open returned')
  t.equal(outcome !== 'hung' ? outcome?.kind : undefined, 'unavailable')
  t.match(outcome !== 'hung' ? outcome?.message : '', endpoint, 'the message names the endpoint')
})

t.test('an endpoint that accepts connections but never answers is unavailable too, within the timeout', async (t) => {
  const sockets = new Set<Socket>()
  const silent = createServer((socket) => {
    sockets.add(socket)
  })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    silent.close()
  })
  const endpoint = `http://127.0.0.1:${(silent.address() as { port: number }).port}`
  const bound = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 20_000).unref())
  const outcome = await Promise.race([datastoreErrorOf(openDatastore({ kind: 'etcd', endpoints: [endpoint], timeoutMs: 1000 })), bound])
  t.not(outcome, 'hung', 'open returned')
  t.equal(outcome !== 'hung' ? outcome?.kind : undefined, 'unavailable')
  t.match(outcome !== 'hung' ? outcome?.message : '', endpoint, 'the message names the endpoint')
})

t.test('a record that is not flatnet data is refused as corrupt, naming the key', async (t) => {
  const config = fresh() as DatastoreConfig & { kind: 'etcd'; prefix: string }
  const raw = new Etcd3({ hosts: etcd.endpoint })
  t.teardown(() => raw.close())
  await raw.put(`${config.prefix}nodes/intruder`).value('not json at all')
  const err = await datastoreErrorOf(openDatastore(config))
  t.equal(err?.kind, 'corrupt')
  t.match(err?.message, `${config.prefix}nodes/intruder`)
  t.equal(await raw.get(`${config.prefix}nodes/intruder`).string(), 'not json at all', 'left untouched')
})

// Last: it takes etcd down for a moment.
t.test('a watch survives an etcd restart: it reports the outage, then the changes made after it', async (t) => {
  const config = fresh()
  const writer = await openFor(t, config)
  const observer = await openFor(t, config)
  await writer.claim(request('w1'))
  const seen = watchNodes(t, observer)
  t.ok(await seen.until((nodes) => nodes.map((n) => n.name).join() === 'w1'), 'w1 seen before the outage')
  await etcd.restart(500)
  // The writer's own connection comes back on its own; retry while it does.
  let claimed
  for (const deadline = Date.now() + 20_000; !claimed && Date.now() < deadline;) {
    claimed = await writer.claim(request('w2')).catch(() => new Promise<undefined>((r) => setTimeout(r, 200)))
  }
  t.equal(claimed?.subnet, '10.244.1.0/24', 'claim works again after the restart')
  t.ok(await seen.until((nodes) => nodes.map((n) => n.name).join() === 'w1,w2', 20_000), 'the watch reports the node claimed after the restart')
  t.ok(
    seen.errors.some((e) => e.message.includes(etcd.endpoint)),
    'the outage was reported through onError, naming the endpoint',
  )
})
