// What the datastore can do to a daemon, on the file store and on a real etcd:
// - a second daemon (another state dir, so another owner id) started with the same node name is
//   refused: not ready, naming the conflict and the owner holding the name; the first one keeps
//   working and its routes are untouched;
// - records written by someone else (garbage, truncated JSON, wrong types, a malformed etcd value)
//   are refused with a clear log line; the daemon stays up, not ready, keeps every route (an
//   unreadable datastore is never taken for an empty one), and recovers once the record is fixed.
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Etcd3 } from 'etcd3'
import t, { type Test } from 'tap'
import { testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { openDatastore, type ClaimRequest, type Datastore } from './datastore/index.js'
import { startEtcd } from './datastore/testing/etcdTestServer.js'
import { eventually, flatnetdMissingReason, nodeNamespace, routeLines, startFlatnetd, tempDir, type DaemonProcess, type Teardown } from './testing/harness.js'
import { relayIntoNetns } from './testing/nsRelay.js'

const skip = flatnetdMissingReason()
const etcdSkip = skip ?? (statSync('/usr/bin/etcd', { throwIfNoEntry: false }) ? undefined : '/usr/bin/etcd missing (Debian etcd-server)')
const cluster = '10.244.0.0/16'
const claim = (name: string, nodeIP: string): ClaimRequest => ({ name, nodeIP, owner: `test-${name}`, clusterCidr: cluster, prefixLength: 24 })

interface Setup {
  ns: Netns
  dir: string
  store: Datastore
  /** Flags selecting this datastore, for the daemon. */
  flags: string[]
  etcd?: { endpoint: string }
}

async function fileSetup(t: Teardown, tag: string, lan: string): Promise<Setup> {
  const dir = tempDir(t, tag)
  const ns = await nodeNamespace(testNamespaces(t, tag), lan)
  const path = join(dir, 'nodes.json')
  const store = await openDatastore({ kind: 'file', path })
  t.teardown(() => store.close())
  return { ns, dir, store, flags: ['--datastore-file', path] }
}

async function etcdSetup(t: Teardown, tag: string, lan: string): Promise<Setup> {
  const etcd = await startEtcd()
  t.teardown(() => etcd.stop())
  const dir = tempDir(t, tag)
  const ns = await nodeNamespace(testNamespaces(t, tag), lan)
  await relayIntoNetns(t, ns, 2379, Number(new URL(etcd.endpoint).port))
  const store = await openDatastore({ kind: 'etcd', endpoints: [etcd.endpoint], leaseTtlSeconds: 3600 })
  t.teardown(() => store.close())
  return { ns, dir, store, flags: ['--datastore', 'etcd', '--etcd-endpoints', 'http://127.0.0.1:2379'], etcd }
}

function daemon(t: Teardown, s: Setup, state: string, port = 9473): DaemonProcess {
  return startFlatnetd(
    t,
    s.ns,
    [
      '--node-name',
      'me',
      '--node-ip',
      lanIP(s),
      ...s.flags,
      '--state-dir',
      join(s.dir, state),
      '--cni-conf-dir',
      join(s.dir, 'net.d'),
      '--reconcile-interval',
      '0.5',
      '--no-masquerade',
      '--log-level',
      'debug',
    ],
    port,
  )
}
const lanIP = (s: Setup) => (s.flags.includes('etcd') ? '192.168.87.1' : '192.168.86.1')

/** Waits until the daemon has finished `n` more passes than now. */
async function passes(d: DaemonProcess, n: number): Promise<void> {
  const count = () => d.logs.filter((l) => l.msg === 'reconcile done').length
  const from = count()
  await eventually(`${n} more passes`, count, (c) => c >= from + n)
}

async function twoDaemonsOneName(t: Test, s: Setup): Promise<void> {
  const net = lanIP(s).replace(/\.1$/, '')
  const p1 = await s.store.claim(claim('p1', `${net}.2`))
  const first = daemon(t, s, 'state1')
  await eventually(
    'first ready',
    () => first.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  const owner1 = readFileSync(join(s.dir, 'state1', 'owner-id'), 'utf8').trim()
  const routes = await routeLines(s.ns)
  t.same(routes, [`${p1.subnet} via ${net}.2 proto 200`])
  const conflist = statSync(join(s.dir, 'net.d', '10-flatnet.conflist'))

  // Same host, same name, same CNI config dir: only the state dir (hence the owner id) differs.
  const second = daemon(t, s, 'state2', 9474)
  const refused = await eventually(
    'second refused',
    () => second.http('/readyz'),
    (r) => r.status === 503 && /held by another live daemon/.test(r.body),
    20_000,
  )
  const reason = JSON.parse(refused.body).reason as string
  t.comment(`second daemon's /readyz reason: ${reason}`)
  t.match(reason, `node me is held by another live daemon (owner "${owner1}"`, 'the reason names the conflict and the owner holding the name')
  t.ok(
    second.logs.some((l) => l.level === 'error' && l.msg === 'claim node subnet failed; retrying' && JSON.stringify(l.err).includes(owner1)),
    'an error log line names it too',
  )
  await eventually(
    'second retried',
    () => second.logs.filter((l) => l.msg === 'claim node subnet failed; retrying').length,
    (n) => n >= 3,
  )
  t.equal(second.exitCode(), undefined, 'the second keeps running (and keeps being refused)')

  // The first is unaffected: ready, same routes, same conflist, still the holder, still following changes.
  t.equal((await first.http('/readyz')).status, 200, 'first still ready')
  t.same(await routeLines(s.ns), routes, 'routes untouched')
  t.equal(statSync(join(s.dir, 'net.d', '10-flatnet.conflist')).ino, conflist.ino, 'conflist untouched')
  t.equal((await s.store.list()).find((n) => n.name === 'me')?.owner, owner1, 'the name is still held by the first')
  const p2 = await s.store.claim(claim('p2', `${net}.3`))
  await eventually(
    'first routes a new peer',
    () => routeLines(s.ns),
    (r) => r.includes(`${p2.subnet} via ${net}.3 proto 200`),
  )
  t.equal((await second.http('/readyz')).status, 503, 'second still refused')
  t.equal(await second.stop(), 0)
  t.equal(await first.stop(), 0)
}

t.test('two daemons, one node name: the second is refused (file)', { skip }, async (t) => twoDaemonsOneName(t, await fileSetup(t, 'ddup', '192.168.86.1/24')))
t.test('two daemons, one node name: the second is refused (etcd)', { skip: etcdSkip }, async (t) => twoDaemonsOneName(t, await etcdSetup(t, 'ddupe', '192.168.87.1/24')))

t.test('a corrupted file store: refused, routes kept, recovered when fixed — running and at start', { skip }, async (t) => {
  const s = await fileSetup(t, 'dcorrupt', '192.168.86.1/24')
  const path = join(s.dir, 'nodes.json')
  const p1 = await s.store.claim(claim('p1', '192.168.86.2'))
  const p2 = await s.store.claim(claim('p2', '192.168.86.3'))
  let d = daemon(t, s, 'state')
  await eventually(
    'ready',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  const routes = await routeLines(s.ns)
  t.same(routes, [`${p1.subnet} via 192.168.86.2 proto 200`, `${p2.subnet} via 192.168.86.3 proto 200`])
  const good = readFileSync(path, 'utf8')
  const corruptions: Record<string, string> = {
    garbage: 'this is not a flatnet state file \u0000\u00ff',
    empty: '',
    'truncated JSON': good.slice(0, Math.floor(good.length / 2)),
    'subnet of the wrong type': good.replace(`"subnet":"${p1.subnet}"`, '"subnet":42'),
    'nodes not an array': good.replace(/"nodes": \[[\s\S]*\]/, '"nodes": {"p1": 1}'),
    'a JSON array': '[1,2,3]',
    'wrong kind': good.replace('flatnet/node-subnets', 'something/else'),
    'a subnet held twice': good.replace(`"subnet":"${p2.subnet}"`, `"subnet":"${p1.subnet}"`),
  }
  for (const [what, text] of Object.entries(corruptions)) {
    t.not(text, good, `${what}: differs from the good file`)
    writeFileSync(path, text)
    const r = await eventually(
      `${what}: not ready`,
      () => d.http('/readyz'),
      (r) => r.status === 503,
      20_000,
    )
    t.match(JSON.parse(r.body).reason, /datastore file holds records flatnet cannot read .*nodes\.json: not a valid flatnet node state file/, `${what}: /readyz names the file and the problem`)
    await passes(d, 3)
    t.same(await routeLines(s.ns), routes, `${what}: routes kept through 3 more passes`)
    t.equal(readFileSync(path, 'utf8'), text, `${what}: the file is left as it was`)
    t.equal((await d.http('/healthz')).status, 200, `${what}: alive`)
    writeFileSync(path, good)
    await eventually(
      `${what}: ready again once fixed`,
      () => d.http('/readyz'),
      (r) => r.status === 200,
      20_000,
    )
  }
  t.ok(
    d.logs.some((l) => l.level === 'error' && l.msg === 'datastore trouble: not ready; routes stay as they are; retrying' && /not a valid flatnet node state file/.test(JSON.stringify(l.err))),
    'a clear error log line',
  )
  t.equal(d.exitCode(), undefined, 'never exited')

  // Killed, and restarted while the file is corrupt: it cannot read the desired set, so it changes nothing.
  t.equal(await d.stop('SIGKILL'), 137)
  writeFileSync(path, corruptions['truncated JSON']!)
  d = daemon(t, s, 'state')
  const r = await eventually(
    'not ready at start',
    () => d.http('/readyz'),
    (r) => r.status === 503 && /datastore not open/.test(r.body),
    20_000,
  )
  t.match(JSON.parse(r.body).reason, /not a valid flatnet node state file/)
  await eventually(
    'retrying the open',
    () => d.logs.filter((l) => l.msg === 'open datastore failed; retrying').length,
    (n) => n >= 3,
  )
  t.same(await routeLines(s.ns), routes, 'routes kept by a daemon that starts on an unreadable store')
  writeFileSync(path, good)
  await eventually(
    'ready once fixed',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  t.same(await routeLines(s.ns), routes)
  t.equal(await d.stop(), 0)
})

t.test('malformed etcd values under the flatnet prefix: refused, routes kept, recovered when fixed', { skip: etcdSkip }, async (t) => {
  const s = await etcdSetup(t, 'dbadetcd', '192.168.87.1/24')
  const p1 = await s.store.claim(claim('p1', '192.168.87.2'))
  const p2 = await s.store.claim(claim('p2', '192.168.87.3'))
  const client = new Etcd3({ hosts: [s.etcd!.endpoint] })
  t.teardown(() => client.close())
  const d = daemon(t, s, 'state')
  await eventually(
    'ready',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  const routes = await routeLines(s.ns)
  t.same(routes, [`${p1.subnet} via 192.168.87.2 proto 200`, `${p2.subnet} via 192.168.87.3 proto 200`].sort())
  const key = '/flatnet/nodes/p1'
  const good = (await client.get(key).string())!
  const bad: Array<[string, string, string]> = [
    ["garbage in p1's record", key, 'garbage{'],
    ["p1's record with a subnet of the wrong type", key, good.replace(`"subnet":"${p1.subnet}"`, '"subnet":["x"]')],
    ["p1's record naming another node", key, good.replace('"name":"p1"', '"name":"p2"')],
    ['an unreadable record of a new node', '/flatnet/nodes/intruder', '\u0000\u0001'],
  ]
  for (const [what, k, value] of bad) {
    await client.put(k).value(value)
    const r = await eventually(
      `${what}: not ready`,
      () => d.http('/readyz'),
      (r) => r.status === 503,
      20_000,
    )
    t.match(JSON.parse(r.body).reason, /datastore etcd holds records flatnet cannot read .*etcd key/, `${what}: /readyz names the etcd key`)
    await passes(d, 3)
    t.same(await routeLines(s.ns), routes, `${what}: routes kept, p1's too`)
    t.equal((await d.http('/healthz')).status, 200)
    if (k === key) await client.put(k).value(good)
    else await client.delete().key(k)
    await eventually(
      `${what}: ready again once fixed`,
      () => d.http('/readyz'),
      (r) => r.status === 200,
      20_000,
    )
    t.same(await routeLines(s.ns), routes)
  }
  // Subnet keys are read only by claims (and full lists), not by the watch the routes follow: the
  // running daemon keeps going; a claim or list would be refused naming the key.
  await client.put('/flatnet/subnets/not-a-subnet').value('p1')
  await passes(d, 3)
  t.equal((await d.http('/readyz')).status, 200, 'a bad subnet key: the running daemon is unaffected')
  t.same(await routeLines(s.ns), routes)
  await t.rejects(s.store.list(), /etcd key \/flatnet\/subnets\/not-a-subnet does not name a subnet/, 'a list names the bad key')
  await client.delete().key('/flatnet/subnets/not-a-subnet')
  t.equal(d.exitCode(), undefined, 'never exited')
  t.equal(await d.stop(), 0)
})
