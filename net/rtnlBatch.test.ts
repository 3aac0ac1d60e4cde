// Batched route requests and the lean route dump against a real kernel, in a throw-away namespace:
// every request gets its own answer in order (also across datagrams, also when some fail), and the
// dump reads back what iproute2 reads.
import t, { type Test } from 'tap'
import { runOk, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { openNetns, warmThreadPool } from './netns.js'
import { RouteBatchSocket, type RouteOperation } from './rtnlBatch.js'

async function namespace(t: Test): Promise<{ ns: Netns; batch: RouteBatchSocket; errors: Error[] }> {
  await warmThreadPool()
  const ns = await testNamespaces(t, 'rbatch').create()
  const ip = (...args: string[]) => runOk(['ip', '-n', ns.name, ...args])
  await ip('link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan1')
  await ip('addr', 'add', '172.21.0.1/16', 'dev', 'lan0')
  await ip('link', 'set', 'lan0', 'up')
  await ip('link', 'set', 'lan1', 'up')
  const handle = openNetns(ns.path)
  const errors: Error[] = []
  const batch = RouteBatchSocket.open((e) => errors.push(e), handle)
  t.teardown(() => {
    batch.close()
    handle.close()
  })
  return { ns, batch, errors }
}

function add(dst: string, gateway: string, protocol = 200): RouteOperation {
  return { op: 'add', route: { family: 4, dst, dstLength: 24, gateway, protocol } }
}

async function protoRoutes(ns: Netns, proto: string): Promise<string[]> {
  const { stdout } = await runOk(['ip', '-n', ns.name, '-j', 'route', 'show', 'proto', proto])
  return (JSON.parse(stdout || '[]') as Array<{ dst: string; gateway?: string }>).map((r) => `${r.dst} via ${r.gateway}`).sort()
}

t.test('600 operations over several datagrams: one outcome per operation, in order, failures named', async (t) => {
  const { ns, batch, errors } = await namespace(t)
  const ops: RouteOperation[] = []
  for (let i = 0; i < 600; i++) ops.push(add(`10.${100 + (i >> 8)}.${i & 255}.0`, `172.21.${i >> 8}.${i & 255 || 1}`))
  ops[300] = add('10.200.0.0', '192.0.2.1') // gateway not reachable: ENETUNREACH
  ops[301] = add('10.100.0.0', '172.21.9.9') // same destination as ops[0]: EEXIST
  const outcomes = await batch.apply(ops)
  t.equal(outcomes.length, 600)
  t.equal(outcomes[300], 'ENETUNREACH')
  t.equal(outcomes[301], 'EEXIST')
  t.equal(outcomes.filter((o) => o === undefined).length, 598, 'every other one succeeded')
  t.equal((await protoRoutes(ns, '200')).length, 598)
  t.same(errors, [])

  const replace: RouteOperation = { op: 'replace', route: { family: 4, dst: '10.100.0.0', dstLength: 24, gateway: '172.21.7.7', protocol: 200 } }
  const gone: RouteOperation = { op: 'delete', route: { family: 4, dst: '10.100.1.0', dstLength: 24, gateway: '172.21.0.1', protocol: 200 } }
  const missing: RouteOperation = { op: 'delete', route: { family: 4, dst: '10.222.0.0', dstLength: 24, gateway: '172.21.0.1', protocol: 200 } }
  t.same(await batch.apply([replace, gone, missing]), [undefined, undefined, 'ESRCH'])
  const now = await protoRoutes(ns, '200')
  t.ok(now.includes('10.100.0.0/24 via 172.21.7.7'), 'replaced in place')
  t.notOk(
    now.some((r) => r.startsWith('10.100.1.0/24')),
    'deleted',
  )
})

t.test('a delete naming protocol 200 never removes a route of another protocol', async (t) => {
  const { ns, batch } = await namespace(t)
  await runOk(['ip', '-n', ns.name, 'route', 'add', '10.9.0.0/24', 'via', '172.21.0.9', 'proto', 'static'])
  t.same(await batch.apply([{ op: 'delete', route: { family: 4, dst: '10.9.0.0', dstLength: 24, gateway: '172.21.0.9', protocol: 200 } }]), ['ESRCH'])
  t.same(await protoRoutes(ns, 'static'), ['10.9.0.0/24 via 172.21.0.9'])
})

t.test('the dump reads the main table as iproute2 does', async (t) => {
  const { ns, batch } = await namespace(t)
  const ip = (...args: string[]) => runOk(['ip', '-n', ns.name, ...args])
  await ip('route', 'add', '10.1.0.0/24', 'via', '172.21.0.2', 'proto', '200')
  await ip('route', 'add', '10.2.0.0/24', 'via', '172.21.0.3', 'proto', 'static', 'metric', '50')
  await ip('route', 'add', '10.3.0.5/32', 'dev', 'lan0', 'scope', 'link', 'proto', '201')
  await ip('route', 'add', 'default', 'via', '172.21.0.254')
  await ip('route', 'add', '10.4.0.0/24', 'via', '172.21.0.4', 'table', '100') // another table: not listed
  const dump = await batch.listRoutes(4)
  const mine = dump.map((r) => `${r.dst}/${r.dstLength} gw=${r.gateway ?? '-'} proto=${r.protocol} scope=${r.scope} metric=${r.priority} table=${r.table}`).sort()
  const { stdout } = await runOk(['ip', '-n', ns.name, '-j', '-d', 'route', 'show', 'table', 'main'])
  const protoNumber: Record<string, number> = { kernel: 2, boot: 3, static: 4 }
  const scopeNumber: Record<string, number> = { global: 0, universe: 0, link: 253, host: 254 }
  const theirs = (JSON.parse(stdout) as Array<{ dst: string; gateway?: string; protocol: string; scope: string; metric?: number }>)
    .map((r) => {
      const dst = r.dst === 'default' ? '0.0.0.0/0' : r.dst.includes('/') ? r.dst : `${r.dst}/32`
      return `${dst} gw=${r.gateway ?? '-'} proto=${protoNumber[r.protocol] ?? Number(r.protocol)} scope=${scopeNumber[r.scope] ?? r.scope} metric=${r.metric ?? 0} table=254`
    })
    .sort()
  t.same(mine, theirs)
  t.equal(mine.length, 5, 'default, connected, proto 200, static, proto 201')
})

t.test('dumps asked at once take turns: each gets the whole table', async (t) => {
  const { ns, batch } = await namespace(t)
  await runOk(['ip', '-n', ns.name, 'route', 'add', '10.1.0.0/24', 'via', '172.21.0.2', 'proto', '200'])
  // the routes and the VXLAN reconcilers share this socket and may dump in the same tick
  const dumps = await Promise.all([batch.listRoutes(4), batch.listRoutes(4), batch.listRoutes(6), batch.listRoutes(4)])
  const v4 = (d: Array<{ dst: string; dstLength: number }>) => d.map((r) => `${r.dst}/${r.dstLength}`).sort()
  t.same(v4(dumps[0]!), ['10.1.0.0/24', '172.21.0.0/16'])
  t.same(v4(dumps[1]!), v4(dumps[0]!))
  t.same(v4(dumps[3]!), v4(dumps[0]!))
  t.ok(Array.isArray(dumps[2]), 'the IPv6 dump in between answered too')
})
