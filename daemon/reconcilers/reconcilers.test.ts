// Each reconciler's decisions without a kernel: the masquerade and anti-spoofing tables' wanted
// state against what nft 1.0.6 prints for them, and its syncs against the recording nft; which CNI configurations
// shadow ours; how a blocked peer route is worded; forwarding's failure text. The kernel side is
// proven by the flatnetd.*.test.ts suites.
import { pino } from 'pino'
import t from 'tap'
import { parseCidr } from '../../ipam/index.js'
import { RecordingNft } from '../../net/testing/nftRecorder.js'
import { masqueradeState } from '../masquerade.js'
import { FakeView } from '../reconcile/testing/fakeReconciler.js'
import { raDefaults } from './forwarding.js'
import type { RouteInfo } from '../../net/rtnl.js'
import { podSourcesOf, type PodSources } from '../antispoof.js'
import { AntispoofReconciler, ForwardingReconciler, MasqueradeReconciler, blockedRouteText, configsBefore, type ForwardingHost } from './index.js'

const silent = pino({ level: 'silent' })
const cluster = [parseCidr('10.32.0.0/12')]

/** `nft -j list table inet flatnet` of the installed table, as nft 1.0.6 (Debian 12) prints it. */
const listed = {
  nftables: [
    { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
    { table: { family: 'inet', name: 'flatnet', handle: 1 } },
    { chain: { family: 'inet', table: 'flatnet', name: 'postrouting', handle: 1, type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } },
    {
      rule: {
        family: 'inet',
        table: 'flatnet',
        chain: 'postrouting',
        handle: 2,
        expr: [
          { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { prefix: { addr: '10.32.0.0', len: 12 } } } },
          { match: { op: '!=', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { prefix: { addr: '10.32.0.0', len: 12 } } } },
          { mangle: { key: { meta: { key: 'mark' } }, value: 0 } },
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
  t.match(nft.scripts[0]!, /^add table ip flatnet\ndelete table ip flatnet\nadd table inet flatnet\ndelete table inet flatnet\ntable inet flatnet \{/)
})

t.test('masquerade: the table nft lists back equals the wanted state, so a full sync leaves it alone', async (t) => {
  const nft = new RecordingNft()
  nft.tables.set('inet flatnet', listed)
  const m = new MasqueradeReconciler(cluster, silent, nft)
  t.same(await m.sync(new FakeView(), full), { changed: false, problems: [] })
  t.same(nft.scripts, [], 'nothing applied')
})

t.test('masquerade: a hand-edited table (an extra rule, another range) is rebuilt whole', async (t) => {
  const nft = new RecordingNft()
  const edited = structuredClone(listed)
  edited.nftables.push({ rule: { family: 'inet', table: 'flatnet', chain: 'postrouting', handle: 3, expr: [{ masquerade: null }] } })
  nft.tables.set('inet flatnet', edited)
  const m = new MasqueradeReconciler(cluster, silent, nft)
  t.equal((await m.sync(new FakeView(), full)).changed, true)
  t.equal(nft.scripts.length, 1)
  nft.tables.set('inet flatnet', listed)
  t.equal((await new MasqueradeReconciler([parseCidr('10.244.0.0/16')], silent, nft).sync(new FakeView(), full)).changed, true, 'another range')
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
  t.match(failed.problems, [/^install nftables table inet flatnet \(masquerade 10\.32\.0\.0\/12 → outside\): Error: Operation not permitted$/])
  nft.failApply = undefined
  const before = nft.calls.length
  await m.sync(new FakeView(), partial)
  t.ok(nft.calls.length > before, 'the memory was forgotten: the partial sync went to nft')
})

t.test('masquerade: remove() deletes the table in one transaction that succeeds when there is none', async (t) => {
  const nft = new RecordingNft()
  t.equal(await new MasqueradeReconciler(cluster, silent, nft).remove(), 'no nftables table inet flatnet')
  nft.tables.set('inet flatnet', listed)
  t.equal(await new MasqueradeReconciler(cluster, silent, nft).remove(), 'nftables table inet flatnet removed')
  nft.tables.set('ip flatnet', {})
  t.equal(await new MasqueradeReconciler(cluster, silent, nft).remove(), 'nftables table inet flatnet removed; nftables table ip flatnet (earlier version) removed')
  const both = 'add table ip flatnet\ndelete table ip flatnet\nadd table inet flatnet\ndelete table inet flatnet\n'
  t.same(nft.scripts, [both, both, both])
})

t.test('masquerade state names the range as nft prints a prefix', async (t) => {
  t.match(masqueradeState([parseCidr('10.244.0.0/16')]).rules[0]!.expr[0], { match: { right: { prefix: { addr: '10.244.0.0', len: 16 } } } })
})

t.test('masquerade: the IPv4-only table of an earlier version makes a full sync rebuild, removing it in the same transaction', async (t) => {
  const nft = new RecordingNft()
  nft.tables.set('inet flatnet', listed)
  nft.tables.set('ip flatnet', { nftables: [] })
  const m = new MasqueradeReconciler(cluster, silent, nft)
  t.equal((await m.sync(new FakeView(), full)).changed, true)
  t.match(nft.scripts, [/^add table ip flatnet\ndelete table ip flatnet\nadd table inet flatnet\ndelete table inet flatnet\ntable inet flatnet \{/])
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

/** A forwarding host whose sysctls and routes are what the test says. */
function host(over: Partial<ForwardingHost> = {}): ForwardingHost & { set: string[] } {
  const set: string[] = []
  return { set, ensure: async (k, v) => (set.push(`${k}=${v}`), true), raDefaultRoutes: async () => [], acceptRa: async () => '0', ...over }
}

t.test('forwarding: a read-only sysctl is a problem naming it and its consequence', async (t) => {
  const f = new ForwardingReconciler(
    [4],
    silent,
    host({
      ensure: async () => {
        throw new Error('set sysctl net.ipv4.ip_forward=1: EROFS')
      },
    }),
  )
  t.same(await f.sync(new FakeView()), { changed: false, problems: ['set sysctl net.ipv4.ip_forward=1: EROFS: pods cannot be routed until net.ipv4.ip_forward is 1'] })
  const h = host()
  t.same(await new ForwardingReconciler([4], silent, h).sync(new FakeView()), { changed: true, problems: [] })
  t.same(h.set, ['net.ipv4.ip_forward=1'], 'IPv4 only: IPv6 forwarding is not touched')
})

t.test('forwarding: each configured family, and IPv6 only when an IPv6 range is configured', async (t) => {
  const dual = host()
  await new ForwardingReconciler([4, 6], silent, dual).sync(new FakeView())
  t.same(dual.set, ['net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1'])
  const v6 = host()
  await new ForwardingReconciler([6], silent, v6).sync(new FakeView())
  t.same(v6.set, ['net.ipv6.conf.all.forwarding=1'])
})

t.test('forwarding: an RA-learned IPv6 default route on an interface with accept_ra=1 is a warning naming it and the fix; accept_ra=2 is fine', async (t) => {
  const ra = [{ ifname: 'eth0', gateway: 'fe80::1' }]
  const warned = new ForwardingReconciler([4, 6], silent, host({ raDefaultRoutes: async () => ra, acceptRa: async () => '1' }))
  t.same((await warned.sync(new FakeView())).problems, [], 'a warning, not a problem: readiness is not at stake')
  t.equal(warned.status().warnings?.length, 1)
  t.match(
    warned.status().warnings![0]!,
    /^the IPv6 default route via fe80::1 dev eth0 is learned from router advertisements with accept_ra=1, .* Set net\.ipv6\.conf\.eth0\.accept_ra=2 or configure the default route statically \(flatnetd changes neither\)$/,
  )
  const fine = new ForwardingReconciler([4, 6], silent, host({ raDefaultRoutes: async () => ra, acceptRa: async () => '2' }))
  await fine.sync(new FakeView())
  t.same(fine.status(), {})
  const v4 = new ForwardingReconciler([4], silent, host({ raDefaultRoutes: async () => ra, acceptRa: async () => '1' }))
  await v4.sync(new FakeView())
  t.same(v4.status(), {}, 'no IPv6 range: IPv6 forwarding untouched, nothing to warn about')
})

t.test('forwarding: RA-learned default routes are found in a dump by protocol ra', async (t) => {
  const base = { scope: 0, table: 254, type: 1, priority: 1024, oif: 2 }
  const routes = [
    { ...base, family: 6 as const, dst: '::', dstLength: 0, gateway: 'fe80::1', protocol: 9 },
    { ...base, family: 6 as const, dst: '::', dstLength: 0, gateway: 'fe80::2', protocol: 4 }, // static
    { ...base, family: 6 as const, dst: 'fd00::', dstLength: 64, protocol: 9 }, // an RA prefix route, not a default
  ]
  t.same(
    raDefaults(routes).map((r) => r.gateway),
    ['fe80::1'],
  )
})

/** The host as the antispoof reconciler reads it: pod sources from host routes, links by name. */
class FakeHost {
  sources: PodSources = { 4: [{ index: 7, address: '10.244.0.5' }], 6: [{ index: 7, address: 'fd00:10:244::5' }] }
  links = new Map([['fn00000000000a0', 7]])
  readonly reader = { sources: async () => structuredClone(this.sources), indexes: async () => new Map(this.links) }
}

t.test('antispoof: a missing table is installed with the pod sources in one transaction; partial syncs add and delete elements; a read-back that differs is rebuilt', async (t) => {
  const nft = new RecordingNft()
  const host = new FakeHost()
  const a = new AntispoofReconciler(silent, host.reader, nft)
  t.same(await a.sync(new FakeView(), full), { changed: true, problems: [] })
  t.match(nft.scripts, [
    /^add table inet flatnet-antispoof\ndelete table inet flatnet-antispoof\ntable inet flatnet-antispoof \{\n\tset pod-sources-v4 \{\n\t\ttype iface_index \. ipv4_addr\n\t\telements = \{ 7 \. 10\.244\.0\.5 \}\n\t\}\n\tset pod-sources-v6 \{\n\t\ttype iface_index \. ipv6_addr\n\t\telements = \{ 7 \. fd00:10:244::5 \}\n\t\}\n\tchain prerouting \{\n\t\ttype filter hook prerouting priority raw; policy accept;\n\t\tiif \. ip saddr @pod-sources-v4 accept\n\t\tiif \. ip6 saddr @pod-sources-v6 accept\n/,
  ])
  t.same(await a.sync(new FakeView(), partial), { changed: false, problems: [] }, 'a partial sync with the same routes writes nothing')
  t.equal(nft.scripts.length, 1)
  host.sources[4] = [{ index: 8, address: '10.244.0.6' }]
  t.same(await a.sync(new FakeView(), partial), { changed: true, problems: [] })
  t.equal(
    nft.scripts[1],
    'add element inet flatnet-antispoof pod-sources-v4 { 8 . 10.244.0.6 }\ndelete element inet flatnet-antispoof pod-sources-v4 { 7 . 10.244.0.5 }\n',
    "a partial sync adds the new pod's source and deletes the gone one's, in one transaction",
  )

  // Full syncs compare with what nft lists: live links by name, a gone link's index as a string.
  host.sources[4] = [{ index: 7, address: '10.244.0.5' }]
  nft.tables.set('inet flatnet-antispoof', antispoofListed)
  t.same(await new AntispoofReconciler(silent, host.reader, nft).sync(new FakeView(), full), { changed: false, problems: [] }, 'the listed table is what is wanted')
  t.equal(nft.scripts.length, 2)
  host.sources[4].push({ index: 77, address: '10.244.0.9' })
  const withGone = structuredClone(antispoofListed)
  ;(withGone.nftables[2] as { set: { elem: unknown[] } }).set.elem.push({ concat: ['77', '10.244.0.9'] })
  nft.tables.set('inet flatnet-antispoof', withGone)
  t.same(await new AntispoofReconciler(silent, host.reader, nft).sync(new FakeView(), full), { changed: false, problems: [] }, 'an element of a gone link is read back by its index')
  host.sources[4].pop()
  t.same(await new AntispoofReconciler(silent, host.reader, nft).sync(new FakeView(), full), { changed: true, problems: [] }, 'an element no host route wants: rebuilt')
  t.match(nft.scripts[2], /^add table inet flatnet-antispoof\ndelete table inet flatnet-antispoof\n.*elements = \{ 7 \. 10\.244\.0\.5 \}/s)
  const edited = structuredClone(antispoofListed)
  edited.nftables.pop()
  nft.tables.set('inet flatnet-antispoof', edited)
  t.equal((await new AntispoofReconciler(silent, host.reader, nft).sync(new FakeView(), full)).changed, true, 'the drop rule deleted by hand: rebuilt')
  nft.failApply = 'Error: Operation not permitted'
  t.match((await new AntispoofReconciler(silent, host.reader, nft).sync(new FakeView(), full)).problems, [
    /^install nftables table inet flatnet-antispoof: Error: Operation not permitted: pods could send with forged source addresses$/,
  ])
  nft.failApply = undefined
  nft.tables.delete('inet flatnet-antispoof')
  const b = new AntispoofReconciler(silent, host.reader, nft)
  await b.sync(new FakeView(), full)
  nft.failApply = 'Error: Could not process rule: No such file or directory'
  host.sources[6] = []
  t.match((await b.sync(new FakeView(), partial)).problems, [
    /^update the pod sources of nftables table inet flatnet-antispoof: .*No such file.*: the fib rule still judges every pod packet, the pod-source sets lag$/s,
  ])
  nft.failApply = undefined
  const before = nft.scripts.length
  await b.sync(new FakeView(), partial)
  t.match(nft.scripts[before], /^add table inet flatnet-antispoof\ndelete table inet flatnet-antispoof\n/, 'after a failed update the next sync reads back and rebuilds')
})

t.test('antispoof: pod sources are the host routes of protocol 201 to one address through one interface', async (t) => {
  const route = (over: Partial<RouteInfo>): RouteInfo => ({ family: 4, dst: '10.244.0.5', dstLength: 32, oif: 7, scope: 253, protocol: 201, table: 254, type: 1, priority: 0, ...over })
  t.same(
    podSourcesOf([
      route({}),
      route({ family: 6, dst: 'fd00:10:244::5', dstLength: 128 }),
      route({ protocol: 200, dst: '10.244.1.0', dstLength: 24, gateway: '192.168.0.2' }),
      route({ dstLength: 24 }),
      route({ family: 6, dst: 'fd00:10:244::6', dstLength: 64 }),
      route({ oif: undefined }),
    ]),
    [
      { index: 7, address: '10.244.0.5' },
      { index: 7, address: 'fd00:10:244::5' },
    ],
  )
})

t.test('antispoof: remove() deletes the table, and succeeds when there is none', async (t) => {
  const nft = new RecordingNft()
  const host = new FakeHost()
  t.equal(await new AntispoofReconciler(silent, host.reader, nft).remove(), 'no nftables table inet flatnet-antispoof')
  nft.tables.set('inet flatnet-antispoof', antispoofListed)
  t.equal(await new AntispoofReconciler(silent, host.reader, nft).remove(), 'nftables table inet flatnet-antispoof removed')
  t.same(nft.scripts, ['add table inet flatnet-antispoof\ndelete table inet flatnet-antispoof\n', 'add table inet flatnet-antispoof\ndelete table inet flatnet-antispoof\n'])
})

/** `nft -j list table inet flatnet-antispoof` of the installed table with one pod's sources (its host veth fn00000000000a0 is link 7), as nft 1.0.6 (Debian 12) prints it. */
const antispoofListed = {
  nftables: [
    { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
    { table: { family: 'inet', name: 'flatnet-antispoof', handle: 2 } },
    { set: { family: 'inet', name: 'pod-sources-v4', table: 'flatnet-antispoof', type: ['iface_index', 'ipv4_addr'], handle: 2, elem: [{ concat: ['fn00000000000a0', '10.244.0.5'] }] as unknown[] } },
    {
      set: {
        family: 'inet',
        name: 'pod-sources-v6',
        table: 'flatnet-antispoof',
        type: ['iface_index', 'ipv6_addr'],
        handle: 3,
        elem: [{ concat: ['fn00000000000a0', 'fd00:10:244::5'] }] as unknown[],
      },
    },
    { chain: { family: 'inet', table: 'flatnet-antispoof', name: 'prerouting', handle: 1, type: 'filter', hook: 'prerouting', prio: -300, policy: 'accept' } },
    {
      rule: {
        family: 'inet',
        table: 'flatnet-antispoof',
        chain: 'prerouting',
        handle: 4,
        expr: [{ match: { op: '==', left: { concat: [{ meta: { key: 'iif' } }, { payload: { protocol: 'ip', field: 'saddr' } }] }, right: '@pod-sources-v4' } }, { accept: null }],
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'flatnet-antispoof',
        chain: 'prerouting',
        handle: 5,
        expr: [{ match: { op: '==', left: { concat: [{ meta: { key: 'iif' } }, { payload: { protocol: 'ip6', field: 'saddr' } }] }, right: '@pod-sources-v6' } }, { accept: null }],
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'flatnet-antispoof',
        chain: 'prerouting',
        handle: 8,
        expr: [
          { match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'fn*' } },
          { match: { op: '==', left: { payload: { protocol: 'icmpv6', field: 'type' } }, right: { set: ['nd-router-solicit', 'nd-neighbor-solicit', 'nd-neighbor-advert'] } } },
          { match: { op: '==', left: { payload: { protocol: 'ip6', field: 'hoplimit' } }, right: 255 } },
          { match: { op: '==', left: { fib: { result: 'type', flags: ['daddr', 'iif'] } }, right: { set: ['local', 'multicast'] } } },
          { accept: null },
        ],
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'flatnet-antispoof',
        chain: 'prerouting',
        handle: 9,
        expr: [
          { match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'fn*' } },
          { match: { op: '==', left: { fib: { result: 'oif', flags: ['saddr', 'iif'] } }, right: false } },
          { drop: null },
        ],
      },
    },
  ],
}
