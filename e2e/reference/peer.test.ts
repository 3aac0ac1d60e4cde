// The reference plugins as a peer: the same ADD (fresh namespace, a /24 of its own, MTU 1500)
// through Debian's ptp + host-local and through flatnet must leave equivalent state in the
// kernel, pod side and host side, once addresses and names are normalized; DEL must clean up
// both alike.
//
// The reference side is ptp + host-local plus the `loopback` plugin: CRI runtimes attach loopback
// as a network of its own (containerd's WithLoNetwork), while flatnet sets lo up itself.
//
// One difference is by design and asserted as such: ptp configures the pod address with the
// range's prefix (/24), deletes the connected route and adds `RANGE via GW` instead (its comment:
// "force all traffic to ARP via the gateway"); flatnet gives the pod a /32 and needs no range
// route. The forwarding decisions the pod makes (`ip route get` for the gateway, a neighbour in
// the range, an outside address) must be the same.
import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import {
  REFERENCE_CNI_DIR,
  cniResult,
  flatnetBinary,
  flatnetConflist,
  flatnetMissingReason,
  inNetns,
  link,
  links,
  pluginConfig,
  referenceConflist,
  routes,
  run,
  runCni,
  sysctl,
  testDir,
  testNamespaces,
  testRanges,
  type CniResult,
  type Conflist,
  type Netns,
  type TestRange,
} from '../helpers/index.js'
import { hostState, podState, type Placeholders } from './state.js'

interface Side {
  label: string
  binary: string
  list: Conflist
  ns: Netns
  range: TestRange
  dataDir: string
  containerId: string
}

function env(side: Side) {
  return { CNI_CONTAINERID: side.containerId, CNI_NETNS: side.ns.path, CNI_IFNAME: 'eth0', CNI_PATH: REFERENCE_CNI_DIR }
}

async function add(side: Side): Promise<{ result: CniResult; p: Placeholders }> {
  const call = await runCni(side.binary, 'ADD', { env: env(side), config: pluginConfig(side.list) })
  const result = cniResult(call, `${side.label} ADD`)
  if (side.label === 'reference') {
    const loConfig = { cniVersion: side.list.cniVersion, name: 'cni-loopback', type: 'loopback' }
    const lo = await runCni(join(REFERENCE_CNI_DIR, 'loopback'), 'ADD', { env: { ...env(side), CNI_IFNAME: 'lo' }, config: loConfig })
    if (lo.code !== 0) throw new Error(`reference loopback ADD: exit ${lo.code}: ${lo.stdout}${lo.stderr}`)
  }
  const pod = result.ips?.[0]?.address.split('/')[0] ?? ''
  const hostVeth = result.interfaces?.[0]?.name ?? ''
  return { result, p: { pod, gateway: side.range.gateway, range: side.range.cidr, hostVeth } }
}

t.test('ptp + host-local and flatnet wire a pod equivalently', { skip: flatnetMissingReason() }, async (t) => {
  const nss = testNamespaces(t, 'peer')
  const { prefix, dir } = testDir(t, 'peer')
  const [refRange, flatRange] = testRanges(2) as [TestRange, TestRange]
  const mk = (label: string, binary: string, range: TestRange, conflist: typeof referenceConflist) => async (): Promise<Side> => {
    const tag = label === 'reference' ? 'ref' : 'flat'
    const dataDir = join(dir, tag)
    return {
      label,
      binary,
      list: conflist({ name: `${prefix}-${tag}`, range, dataDir }),
      ns: await nss.create(tag),
      range,
      dataDir,
      containerId: `${prefix}-${tag}`,
    }
  }
  const ref = await mk('reference', join(REFERENCE_CNI_DIR, 'ptp'), refRange, referenceConflist)()
  const flat = await mk('flatnet', flatnetBinary, flatRange, flatnetConflist)()

  const refAdd = await add(ref)
  const flatAdd = await add(flat)

  await t.test('the results describe the same attachment', async (t) => {
    for (const [side, { result, p }] of [
      [ref, refAdd],
      [flat, flatAdd],
    ] as const) {
      t.equal(result.interfaces?.length, 2, `${side.label}: host veth, then the container interface`)
      t.equal(result.interfaces?.[0]?.sandbox ?? '', '', `${side.label}: host veth has no sandbox`)
      t.same([result.interfaces?.[1]?.name, result.interfaces?.[1]?.sandbox], ['eth0', side.ns.path], `${side.label}: eth0 in the pod`)
      t.equal(result.ips?.[0]?.gateway, p.gateway, `${side.label}: gateway is the range's .1`)
      t.equal(result.ips?.[0]?.interface, 1, `${side.label}: the address belongs to interface 1 (eth0)`)
      t.equal(p.pod, `${side.range.base}2`, `${side.label}: first free address`)
      t.equal((await link('eth0', side.ns))?.address, result.interfaces?.[1]?.mac, `${side.label}: reported MAC is the pod's`)
      t.equal((await link(p.hostVeth))?.address, result.interfaces?.[0]?.mac, `${side.label}: reported MAC is the host veth's`)
    }
  })

  const refPod = await podState(ref.ns, refAdd.p)
  const flatPod = await podState(flat.ns, flatAdd.p)
  const refHost = await hostState(refAdd.p)
  const flatHost = await hostState(flatAdd.p)

  await t.test('pod side', async (t) => {
    t.same(flatPod.links, refPod.links, 'same links: lo up, eth0 a veth, up, same MTU')
    t.same(
      flatPod.links.map((l) => [l.name, l.kind, l.up, l.mtu]),
      [
        ['eth0', 'veth', true, 1500],
        ['lo', undefined, true, 65536],
      ],
    )
    t.same(refPod.addresses, { lo: ['127.0.0.1/8'], eth0: ['POD/24'] }, 'reference: POD with the range prefix (ptp design)')
    t.same(flatPod.addresses, { lo: ['127.0.0.1/8'], eth0: ['POD/32'] }, 'flatnet: POD/32')
    const key = (r: { dst: string; gateway?: string; dev?: string }) => `${r.dst} ${r.gateway ?? '-'} ${r.dev ?? '-'}`
    const flatRoutes = flatPod.routes.map(key)
    t.same(flatRoutes, ['0.0.0.0/0 GW eth0', 'GW/32 - eth0'], 'flatnet: default via GW, GW on-link')
    t.same(
      refPod.routes.map(key).filter((r) => !flatRoutes.includes(r)),
      ['RANGE GW eth0'],
      'the reference has the same routes plus only its range-via-gateway route',
    )
    t.equal(flatPod.scopes['GW/32'], 'link', 'flatnet: the gateway route is scope link')
    t.equal(refPod.scopes['GW/32'], 'link', 'reference: the gateway route is scope link')
    t.same(flatPod.lookups, refPod.lookups, 'the pod forwards alike: to GW, to a neighbour in the range, to the outside')
    t.same(flatPod.lookups.outside, { gateway: 'GW', dev: 'eth0', prefsrc: 'POD' })
    t.same(flatPod.lookups.gateway, { gateway: undefined, dev: 'eth0', prefsrc: 'POD' })
  })

  await t.test('host side', async (t) => {
    t.same(flatHost, refHost, 'same host veth, addresses, routes and way to the pod')
    t.same(flatHost.addresses, ['GW/32'], 'the host veth carries GW/32')
    t.same(flatHost.routes, [{ dst: 'POD/32', gateway: undefined, dev: 'HOSTVETH', type: undefined }], 'route POD/32 dev HOSTVETH')
    t.same(flatHost.hostVeth && [flatHost.hostVeth.kind, flatHost.hostVeth.up, flatHost.hostVeth.mtu], ['veth', true, 1500])
    t.equal(await sysctl('net.ipv4.ip_forward'), '1', 'the host forwards')
  })

  await t.test('both pods reach their gateway and the host reaches both pods', async (t) => {
    for (const [side, { p }] of [
      [ref, refAdd],
      [flat, flatAdd],
    ] as const) {
      const out = await inNetns(side.ns, ['ping', '-c', '1', '-W', '3', p.gateway])
      t.equal(out.code, 0, `${side.label}: pod → ${p.gateway}`)
      const back = await run(['ping', '-c', '1', '-W', '3', p.pod])
      t.equal(back.code, 0, `${side.label}: host → pod ${p.pod}`)
    }
  })

  await t.test('DEL cleans up both alike', async (t) => {
    for (const [side, { p }] of [
      [ref, refAdd],
      [flat, flatAdd],
    ] as const) {
      const del = await runCni(side.binary, 'DEL', { env: env(side), config: pluginConfig(side.list) })
      t.equal(del.code, 0, `${side.label}: DEL succeeds (${del.stdout.trim()} ${del.stderr.trim()})`)
      t.equal(del.stdout.trim(), '', `${side.label}: DEL prints nothing`)
      t.same(
        (await links(side.ns)).map((l) => l.ifname),
        ['lo'],
        `${side.label}: only lo is left in the pod`,
      )
      t.equal(await link(p.hostVeth), undefined, `${side.label}: host veth is gone`)
      t.notOk(
        (await routes()).some((r) => r.dst === `${p.pod}/32`),
        `${side.label}: host route to the pod is gone`,
      )
      t.notOk(existsSync(join(side.dataDir, side.list.name, p.pod)), `${side.label}: address released`)
    }
  })
})
