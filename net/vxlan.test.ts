// The VXLAN device, neighbour and FDB codecs against a real kernel, in a throw-away namespace:
// what they make is what iproute2 reads back, and what they read is what iproute2 reads.
import t from 'tap'
import { runOk, testNamespaces } from '../e2e/helpers/index.js'
import { deleteFdb, deleteNeighbour, listFdb, listNeighbours, NUD_PERMANENT, setFdb, setNeighbour } from './neigh.js'
import { openNetns, warmThreadPool } from './netns.js'
import { addAddress, closeRtnl, createVeth, linkByName, listAddresses, openRtnl, setLinkUp } from './rtnl.js'
import { createVxlan, deleteAddress, setLinkMtu, vxlanByName } from './vxlanLink.js'

interface IpVxlan {
  ifname: string
  mtu: number
  address: string
  linkinfo: { info_kind: string; info_data: { id: number; local?: string; local6?: string; port: number; learning: boolean } }
}

t.test('vxlan devices, neighbours and fdb entries: made by hand-encoded netlink, read back like iproute2 reads them', async (t) => {
  await warmThreadPool()
  const ns = await testNamespaces(t, 'vxlan').create()
  const handle = openNetns(ns.path)
  const s = openRtnl(handle)
  t.teardown(() => {
    closeRtnl(s)
    handle.close()
  })
  const ip = async (...args: string[]) => (await runOk(['ip', '-n', ns.name, ...args])).stdout
  await createVeth(s, { name: 'uplink', peerName: 'uplink-peer' })
  const uplink = (await linkByName(s, 'uplink'))!
  await addAddress(s, { index: uplink.index, family: 4, address: '192.0.2.1', prefixLength: 24 })
  await addAddress(s, { index: uplink.index, family: 6, address: 'fd00:77::1', prefixLength: 64, noDad: true })

  await createVxlan(s, { name: 'flatnet.vxlan', vni: 7, local: '192.0.2.1', port: 8472, mac: '02:aa:00:00:00:01', mtu: 1450 })
  await createVxlan(s, { name: 'flatnet.vxlan6', vni: 7, local: 'fd00:77::1', port: 4789, mac: '02:aa:00:00:00:01', mtu: 1430 })
  const v4 = (await vxlanByName(s, 'flatnet.vxlan'))!
  const v6 = (await vxlanByName(s, 'flatnet.vxlan6'))!
  t.same([v4.kind, v4.vni, v4.local, v4.port, v4.learning, v4.mac, v4.mtu], ['vxlan', 7, '192.0.2.1', 8472, false, '02:aa:00:00:00:01', 1450], 'IPv4 underlay device as configured')
  t.same([v6.kind, v6.vni, v6.local, v6.port, v6.learning, v6.mtu], ['vxlan', 7, 'fd00:77::1', 4789, false, 1430], 'IPv6 underlay device as configured')
  const theirs = JSON.parse(await ip('-j', '-d', 'link', 'show', 'flatnet.vxlan')) as IpVxlan[]
  t.same(
    {
      kind: theirs[0]!.linkinfo.info_kind,
      id: theirs[0]!.linkinfo.info_data.id,
      local: theirs[0]!.linkinfo.info_data.local,
      port: theirs[0]!.linkinfo.info_data.port,
      learning: theirs[0]!.linkinfo.info_data.learning,
    },
    { kind: 'vxlan', id: 7, local: '192.0.2.1', port: 8472, learning: false },
    'ip -d link agrees',
  )
  t.equal(await vxlanByName(s, 'flatnet.none'), undefined, 'a missing device is undefined')
  await setLinkMtu(s, v4.index, 1400, 'flatnet.vxlan')
  t.equal((await vxlanByName(s, 'flatnet.vxlan'))!.mtu, 1400, 'mtu changed in place')
  await setLinkUp(s, v4.index)
  await addAddress(s, { index: v4.index, family: 4, address: '10.244.1.0', prefixLength: 32 })
  t.equal(await deleteAddress(s, { index: v4.index, family: 4, address: '10.244.1.0', prefixLength: 32 }), true, 'address deleted')
  t.equal(await deleteAddress(s, { index: v4.index, family: 4, address: '10.244.1.0', prefixLength: 32 }), false, 'deleting it again: false')
  t.notOk(
    (await listAddresses(s, v4.index)).some((a) => a.address === '10.244.1.0'),
    'gone from the dump',
  )

  await setNeighbour(s, { family: 4, index: v4.index, address: '10.244.2.0', mac: '02:aa:00:00:00:02' })
  await setNeighbour(s, { family: 6, index: v6.index, address: 'fd00:10:244:2::', mac: '02:aa:00:00:00:02' })
  await setFdb(s, { index: v4.index, mac: '02:aa:00:00:00:02', dst: '198.51.100.2' })
  await setFdb(s, { index: v6.index, mac: '02:aa:00:00:00:02', dst: 'fd00:78::2' })
  t.same(
    (await listNeighbours(s, 4, v4.index)).map((n) => [n.address, n.mac, n.state]),
    [['10.244.2.0', '02:aa:00:00:00:02', NUD_PERMANENT]],
    'IPv4 neighbour, permanent',
  )
  t.same(
    (await listNeighbours(s, 6, v6.index)).filter((n) => n.state === NUD_PERMANENT).map((n) => [n.address, n.mac]),
    [['fd00:10:244:2::', '02:aa:00:00:00:02']],
    'IPv6 neighbour, permanent',
  )
  t.match(await ip('neigh', 'show', 'dev', 'flatnet.vxlan'), /10\.244\.2\.0 lladdr 02:aa:00:00:00:02 PERMANENT/, 'ip neigh agrees')
  t.same(
    (await listFdb(s, v4.index)).filter((f) => f.dst).map((f) => [f.mac, f.dst, f.state]),
    [['02:aa:00:00:00:02', '198.51.100.2', NUD_PERMANENT]],
    'fdb entry with its remote',
  )
  t.match((await runOk(['bridge', '-n', ns.name, 'fdb', 'show', 'dev', 'flatnet.vxlan6'])).stdout, /02:aa:00:00:00:02 dst fd00:78::2 self permanent/, 'bridge fdb agrees (IPv6 remote)')

  // Replacing moves the entry in place: one remote, one address.
  await setFdb(s, { index: v4.index, mac: '02:aa:00:00:00:02', dst: '198.51.100.9' })
  await setNeighbour(s, { family: 4, index: v4.index, address: '10.244.2.0', mac: '02:aa:00:00:00:03' })
  t.same(
    (await listFdb(s, v4.index)).filter((f) => f.dst).map((f) => [f.mac, f.dst]),
    [['02:aa:00:00:00:02', '198.51.100.9']],
    'fdb remote replaced, not appended',
  )
  t.same(
    (await listNeighbours(s, 4, v4.index)).map((n) => [n.address, n.mac]),
    [['10.244.2.0', '02:aa:00:00:00:03']],
    'neighbour replaced',
  )

  t.equal(await deleteFdb(s, { index: v4.index, mac: '02:aa:00:00:00:02', dst: '198.51.100.9' }), true)
  t.equal(await deleteFdb(s, { index: v4.index, mac: '02:aa:00:00:00:02', dst: '198.51.100.9' }), false, 'deleting a missing fdb entry: false')
  t.equal(await deleteNeighbour(s, { family: 4, index: v4.index, address: '10.244.2.0' }), true)
  t.equal(await deleteNeighbour(s, { family: 4, index: v4.index, address: '10.244.2.0' }), false, 'deleting a missing neighbour: false')
  t.same(
    (await listFdb(s, v4.index)).filter((f) => f.dst),
    [],
    'no fdb entry left',
  )
  t.same(await listNeighbours(s, 4, v4.index), [], 'no neighbour left')
  await t.rejects(
    setFdb(s, { index: 999999, mac: '02:aa:00:00:00:02', dst: '198.51.100.9' }),
    { code: 'ENODEV', message: /set fdb 02:aa:00:00:00:02 dst 198\.51\.100\.9 on link #999999: ENODEV/ },
    'a refusal names the operation and the errno',
  )
})
