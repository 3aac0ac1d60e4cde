// Each reconciler's decisions without a kernel: the masquerade table's wanted state against what
// nft 1.0.6 prints for it, and its syncs against the recording nft; which CNI configurations
// shadow ours; how a blocked peer route is worded; forwarding's failure text. The kernel side is
// proven by the flatnetd.*.test.ts suites.
import { pino } from 'pino'
import t from 'tap'
import { parseCidr } from '../../ipam/index.js'
import { RecordingNft } from '../../net/testing/nftRecorder.js'
import { masqueradeState } from '../masquerade.js'
import { FakeView } from '../reconcile/testing/fakeReconciler.js'
import { ForwardingReconciler, MasqueradeReconciler, blockedRouteText, configsBefore } from './index.js'

const silent = pino({ level: 'silent' })
const cluster = parseCidr('10.32.0.0/12')

/** `nft -j list table ip flatnet` of the installed table, as nft 1.0.6 (Debian 12) prints it. */
const listed = {
  nftables: [
    { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
    { table: { family: 'ip', name: 'flatnet', handle: 1 } },
    { chain: { family: 'ip', table: 'flatnet', name: 'postrouting', handle: 1, type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } },
    {
      rule: {
        family: 'ip',
        table: 'flatnet',
        chain: 'postrouting',
        handle: 2,
        expr: [
          { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { prefix: { addr: '10.32.0.0', len: 12 } } } },
          { match: { op: '!=', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { prefix: { addr: '10.32.0.0', len: 12 } } } },
          { masquerade: null },
        ],
      },
    },
  ],
}

const full = { full: true, changed: new Set<never>() }
const partial = { full: false, changed: new Set<never>() }

t.test('masquerade: a missing table is installed in one transaction', async (t) => {
  const nft = new RecordingNft()
  const m = new MasqueradeReconciler(cluster, silent, nft)
  t.same(await m.sync(new FakeView(), full), { changed: true, problems: [] })
  t.equal(nft.scripts.length, 1)
  t.match(nft.scripts[0]!, /^add table ip flatnet\ndelete table ip flatnet\ntable ip flatnet \{/)
})

t.test('masquerade: the table nft lists back equals the wanted state, so a full sync leaves it alone', async (t) => {
  const nft = new RecordingNft()
  nft.tables.set('ip flatnet', listed)
  const m = new MasqueradeReconciler(cluster, silent, nft)
  t.same(await m.sync(new FakeView(), full), { changed: false, problems: [] })
  t.same(nft.scripts, [], 'nothing applied')
})

t.test('masquerade: a hand-edited table (an extra rule, another range) is rebuilt whole', async (t) => {
  const nft = new RecordingNft()
  const edited = structuredClone(listed)
  edited.nftables.push({ rule: { family: 'ip', table: 'flatnet', chain: 'postrouting', handle: 3, expr: [{ masquerade: null }] } })
  nft.tables.set('ip flatnet', edited)
  const m = new MasqueradeReconciler(cluster, silent, nft)
  t.equal((await m.sync(new FakeView(), full)).changed, true)
  t.equal(nft.scripts.length, 1)
  nft.tables.set('ip flatnet', listed)
  t.equal((await new MasqueradeReconciler(parseCidr('10.244.0.0/16'), silent, nft).sync(new FakeView(), full)).changed, true, 'another range')
})

t.test('masquerade: a partial sync trusts what it wrote; after a failure it reads back again', async (t) => {
  const nft = new RecordingNft()
  const m = new MasqueradeReconciler(cluster, silent, nft)
  await m.sync(new FakeView(), full)
  const calls = nft.calls.length
  t.same(await m.sync(new FakeView(), partial), { changed: false, problems: [] })
  t.equal(nft.calls.length, calls, 'no nft run at all')
  nft.failApply = 'Error: Operation not permitted'
  const failed = await m.sync(new FakeView(), full)
  t.match(failed.problems, [/^install nftables table ip flatnet \(masquerade 10\.32\.0\.0\/12 → outside\): Error: Operation not permitted$/])
  nft.failApply = undefined
  const before = nft.calls.length
  await m.sync(new FakeView(), partial)
  t.ok(nft.calls.length > before, 'the memory was forgotten: the partial sync went to nft')
})

t.test('masquerade: remove() deletes the table in one transaction that succeeds when there is none', async (t) => {
  const nft = new RecordingNft()
  t.equal(await new MasqueradeReconciler(cluster, silent, nft).remove(), 'no nftables table ip flatnet')
  nft.tables.set('ip flatnet', listed)
  t.equal(await new MasqueradeReconciler(cluster, silent, nft).remove(), 'nftables table ip flatnet removed')
  t.same(nft.scripts, ['add table ip flatnet\ndelete table ip flatnet\n', 'add table ip flatnet\ndelete table ip flatnet\n'])
})

t.test('masquerade state names the range as nft prints a prefix', async (t) => {
  t.match(masqueradeState(parseCidr('10.244.0.0/16')).rules[0]!.expr[0], { match: { right: { prefix: { addr: '10.244.0.0', len: 16 } } } })
})

t.test('conflist: configurations a runtime loads before ours, by byte order, only its extensions', async (t) => {
  const dir = ['05-cilium.conf', '10-flannel.conflist', '10-flatnet.conflist', '99-loopback.conf', '00-notes.txt', '.10-flatnet.conflist.42.tmp', '10-Flatnet.json', 'calico.conflist']
  t.same(
    configsBefore(dir, '10-flatnet.conflist'),
    ['05-cilium.conf', '10-Flatnet.json', '10-flannel.conflist'],
    'upper case sorts before lower case (Go sort.Strings); the temp file, 99-loopback and a .txt do not count',
  )
  t.same(configsBefore(['10-flatnet.conflist'], '10-flatnet.conflist'), [])
})

t.test("routes: a blocked peer route names the peer, the route and the holder's protocol", async (t) => {
  t.equal(
    blockedRouteText({
      route: { node: 'b', dst: '10.244.1.0', dstLength: 24, gateway: '192.168.77.2' },
      holder: { dst: '10.244.1.0', dstLength: 24, protocol: 4, gateway: '192.168.77.254' },
    } as Parameters<typeof blockedRouteText>[0]),
    'b: route 10.244.1.0/24 via 192.168.77.2 not added: 10.244.1.0/24 is already routed by protocol 4',
  )
})

t.test('forwarding: a read-only sysctl is a problem naming it and its consequence', async (t) => {
  const f = new ForwardingReconciler(silent, async () => {
    throw new Error('set sysctl net.ipv4.ip_forward=1: EROFS')
  })
  t.same(await f.sync(new FakeView()), { changed: false, problems: ['set sysctl net.ipv4.ip_forward=1: EROFS: pods cannot be routed until net.ipv4.ip_forward is 1'] })
  const set: string[] = []
  const g = new ForwardingReconciler(silent, async (k, v) => (set.push(`${k}=${v}`), true))
  t.same(await g.sync(new FakeView()), { changed: true, problems: [] })
  t.same(set, ['net.ipv4.ip_forward=1'])
})
