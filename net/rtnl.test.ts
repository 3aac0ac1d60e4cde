// The hand-written rtnetlink codec against a real kernel, in a throw-away namespace: what it makes
// is what iproute2 then reads, what it reads is what iproute2 reads, and refusals carry the
// kernel's errno name.
import t, { type Test } from 'tap'
import { runOk, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { openNetns, warmThreadPool } from './netns.js'
import {
  addAddress,
  addRoute,
  closeRtnl,
  createVeth,
  deleteLink,
  deleteRoute,
  NetlinkError,
  linkByIndex,
  linkByName,
  listAddresses,
  listLinks,
  listRoutes,
  openRtnl,
  setLinkAlias,
  setLinkUp,
  type Rtnl,
} from './rtnl.js'

interface IpLink {
  ifindex: number
  ifname: string
  mtu: number
  address?: string
  flags: string[]
  ifalias?: string
  linkinfo?: { info_kind?: string }
}

async function namespace(t: Test, tag: string): Promise<{ ns: Netns; s: Rtnl; ip: (...args: string[]) => Promise<string> }> {
  await warmThreadPool()
  const ns = await testNamespaces(t, tag).create()
  const handle = openNetns(ns.path)
  const s = openRtnl(handle)
  t.teardown(() => {
    closeRtnl(s)
    handle.close()
  })
  const ip = async (...args: string[]) => (await runOk(['ip', '-n', ns.name, ...args])).stdout
  return { ns, s, ip }
}

t.test('links: create a veth, set it up, alias it; reads match ip -j -d link', async (t) => {
  const { s, ip } = await namespace(t, 'rtl')
  await createVeth(s, { name: 'host0', peerName: 'peer0', mtu: 1400 })
  const host = await linkByName(s, 'host0')
  t.ok(host, 'the new end is found by name')
  await setLinkUp(s, host!.index, 'host0')
  await setLinkAlias(s, host!.index, 'flatnet:net:eth0:ctr')
  const theirs = JSON.parse(await ip('-j', '-d', 'link', 'show')) as IpLink[]
  const mine = await listLinks(s)
  t.same(
    mine.map((l) => ({ index: l.index, name: l.name, mtu: l.mtu, mac: l.mac, up: l.up, alias: l.alias, kind: l.kind })).sort((a, b) => a.index - b.index),
    theirs
      .map((l) => ({
        index: l.ifindex,
        name: l.ifname,
        mtu: l.mtu,
        mac: l.address ?? '',
        up: l.flags.includes('UP'),
        alias: l.ifalias,
        kind: l.linkinfo?.info_kind,
      }))
      .sort((a, b) => a.index - b.index),
    'the dump reads every link as iproute2 does',
  )
  const byIp = theirs.find((l) => l.ifname === 'host0')!
  t.equal(byIp.mtu, 1400, 'MTU set at creation')
  t.equal(byIp.ifalias, 'flatnet:net:eth0:ctr', 'alias set')
  t.ok(byIp.flags.includes('UP'), 'up')
  t.equal(byIp.linkinfo?.info_kind, 'veth', 'a veth')
  t.same(
    await linkByIndex(s, host!.index),
    mine.find((l) => l.name === 'host0'),
    'by index = by name = in the dump',
  )
  t.equal(await linkByName(s, 'nosuch0'), undefined, 'a missing link is undefined (ENODEV)')
  t.equal(await linkByIndex(s, 999999), undefined)
  await t.rejects(createVeth(s, { name: 'host0', peerName: 'peer9' }), { message: 'create veth host0 (peer peer9): EEXIST', code: 'EEXIST' })
  t.equal(await deleteLink(s, { name: 'host0' }), true)
  t.equal(await deleteLink(s, { name: 'host0' }), false, 'already gone')
  t.notOk(
    (await listLinks(s)).some((l) => l.name === 'host0' || l.name === 'peer0'),
    'both ends gone',
  )
})

t.test('a veth peer is born in another namespace', async (t) => {
  const { s } = await namespace(t, 'rtp')
  const other = await namespace(t, 'rtq')
  const otherHandle = openNetns(other.ns.path)
  t.teardown(() => otherHandle.close())
  await createVeth(s, { name: 'h1', peerName: 'eth0', peerNetns: otherHandle, mtu: 1300 })
  const peer = JSON.parse(await other.ip('-j', 'link', 'show', 'eth0')) as IpLink[]
  t.equal(peer[0]?.mtu, 1300)
  t.equal(await linkByName(s, 'eth0'), undefined, 'not in the creating namespace')
  t.equal((await linkByName(other.s, 'eth0'))?.mtu, 1300)
})

t.test('addresses and routes: added, dumped as ip reads them, deleted', async (t) => {
  const { s, ip } = await namespace(t, 'rta')
  await createVeth(s, { name: 'a0', peerName: 'a1' })
  const a0 = (await linkByName(s, 'a0'))!
  await addAddress(s, { index: a0.index, family: 4, address: '10.77.0.1', prefixLength: 32, linkName: 'a0' })
  await addAddress(s, { index: a0.index, family: 6, address: 'fd00:77::1', prefixLength: 128, linkName: 'a0' })
  await t.rejects(addAddress(s, { index: a0.index, family: 4, address: '10.77.0.1', prefixLength: 32, linkName: 'a0' }), {
    message: 'add address 10.77.0.1/32 to a0: EEXIST',
  })
  await setLinkUp(s, a0.index, 'a0')
  const mine = (await listAddresses(s, a0.index)).map((a) => `${a.address}/${a.prefixLength}`).sort()
  const theirs = (JSON.parse(await ip('-j', 'addr', 'show', 'dev', 'a0')) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>)[0]!.addr_info
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort()
  t.same(mine, theirs)
  t.ok(mine.includes('10.77.0.1/32') && mine.includes('fd00:77::1/128'))

  await addRoute(s, { family: 4, dst: '10.77.0.9', dstLength: 32, oif: a0.index, scope: 'link', protocol: 201 })
  await addRoute(s, { family: 4, dst: '0.0.0.0', dstLength: 0, gateway: '10.77.0.9', oif: a0.index })
  await addRoute(s, { family: 4, dst: '10.78.0.0', dstLength: 24, gateway: '10.77.0.9', oif: a0.index, protocol: 200 }, { replace: true })
  await t.rejects(addRoute(s, { family: 4, dst: '10.77.0.9', dstLength: 32, oif: a0.index, scope: 'link' }), {
    message: `add route 10.77.0.9/32 dev #${a0.index}: EEXIST`,
  })
  const routes = (await listRoutes(s, 4)).map((r) => `${r.dst}/${r.dstLength} gw=${r.gateway ?? '-'} oif=${r.oif} proto=${r.protocol} scope=${r.scope}`).sort()
  const ipRoutes = (JSON.parse(await ip('-j', '-d', 'route', 'show', 'table', 'main')) as Array<{ dst: string; gateway?: string; dev: string; protocol: string; scope: string }>)
    .map((r) => {
      const dst = r.dst === 'default' ? '0.0.0.0/0' : r.dst.includes('/') ? r.dst : `${r.dst}/32`
      const proto = ({ boot: 3, kernel: 2, static: 4 } as Record<string, number>)[r.protocol] ?? Number(r.protocol)
      const scope = ({ global: 0, universe: 0, link: 253, host: 254 } as Record<string, number>)[r.scope]
      return `${dst} gw=${r.gateway ?? '-'} oif=${r.dev === 'a0' ? a0.index : r.dev} proto=${proto} scope=${scope}`
    })
    .sort()
  t.same(routes, ipRoutes, 'the route dump reads the main table as iproute2 does')
  t.equal(routes.length, 3)
  t.equal(await deleteRoute(s, { family: 4, dst: '10.78.0.0', dstLength: 24, protocol: 199 }), false, 'a delete naming another protocol misses')
  t.equal(await deleteRoute(s, { family: 4, dst: '10.78.0.0', dstLength: 24, protocol: 200 }), true)
  t.equal(await deleteRoute(s, { family: 4, dst: '10.78.0.0', dstLength: 24 }), false, 'already gone (ESRCH)')
  t.equal(await deleteRoute(s, { family: 4, dst: '10.77.0.9', dstLength: 32, oif: a0.index, scope: 'link' }), true, 'a scope-link route is deleted too')
  t.ok(
    (await listRoutes(s, 6)).some((r) => r.dst === 'fd00:77::1' && r.dstLength === 128 && r.oif === a0.index),
    'IPv6 routes read back',
  )
})

t.test('a kernel refusal is a NetlinkError carrying errno, its name and the operation', async (t) => {
  const { s } = await namespace(t, 'rte')
  const err = await setLinkUp(s, 999999, 'ghost0').catch((e: Error) => e)
  t.ok(err instanceof NetlinkError, 'typed where the answer was decoded')
  t.equal((err as NetlinkError).message, 'set link ghost0 up: ENODEV')
  t.equal((err as NetlinkError).code, 'ENODEV')
  t.equal((err as NetlinkError).errno, 19)
  t.equal((err as NetlinkError).operation, 'set link ghost0 up')
})

t.test('dumps asked at once on one socket take turns (the kernel answers EBUSY to overlapping ones)', async (t) => {
  const { s, ip } = await namespace(t, 'vxlab')
  await ip('link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan1')
  await ip('address', 'add', '172.21.0.1/16', 'dev', 'lan0')
  // the routes, VXLAN and conflist reconcilers share the daemon's socket and may sync in the same tick
  const [addresses, links, routes, again] = await Promise.all([listAddresses(s), listLinks(s), listRoutes(s, 4), listAddresses(s)])
  t.ok(
    addresses.some((a) => a.address === '172.21.0.1'),
    'the address dump answered',
  )
  t.same(links.map((l) => l.name).sort(), ['lan0', 'lan1', 'lo'], 'the link dump answered')
  t.ok(Array.isArray(routes), 'the route dump answered')
  t.same(again, addresses, 'a second address dump in the same tick reads the same')
})
