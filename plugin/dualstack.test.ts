// The plugin in IPv6-only and dual-stack configurations, on real namespaces: every verb judged by
// the kernel's state (addresses with their flags, routes, sysctls) and the store's files.
import t, { type Test } from 'tap'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { testDir, testNamespaces, testRanges, inNetns, run, link, routes, sysctl } from '../e2e/helpers/index.js'
import type { Netns } from '../e2e/helpers/netns.js'
import { cniOnNode, makeNode } from './testing/testHarness.js'
import { hostVethName } from './wiring.js'
import { testRange6 } from './testing/families.js'

const PATH_ENV = '/opt/cni/bin'

interface Setup {
  node: Netns
  conf: Record<string, unknown>
  storeDir: string
  v4: ReturnType<typeof testRanges>[number]
  v6: ReturnType<typeof testRange6>
  newPod(): Promise<Netns>
  env(pod: Netns | undefined, id: string): Record<string, string>
}

async function setup(t: Test, tag: string, families: Array<4 | 6>, version = '1.1.0'): Promise<Setup> {
  const spaces = testNamespaces(t, tag)
  const { dir } = testDir(t, tag)
  const node = await spaces.create('node')
  await makeNode(node)
  // A new namespace starts with IPv6 forwarding off (its IPv6 sysctls are the kernel's defaults).
  const [v4] = testRanges(1)
  const v6 = testRange6()
  const ranges = families.map((f) => (f === 4 ? v4.cidr : v6.cidr))
  const conf = { cniVersion: version, name: 'net1', type: 'flatnet', ranges, dataDir: dir, mtu: 1450 }
  let n = 0
  return {
    node,
    conf,
    v4,
    v6,
    storeDir: join(dir, 'net1'),
    newPod: () => spaces.create(`pod${++n}`),
    env: (pod, id) => ({ CNI_CONTAINERID: id, CNI_NETNS: pod?.path ?? '', CNI_IFNAME: 'eth0', CNI_PATH: PATH_ENV }),
  }
}

function reservations(dir: string): string[] {
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /^[0-9a-f.:]+$/.test(f) && /[.:]/.test(f))
        .sort()
    : []
}

interface Addr6 {
  local: string
  prefixlen: number
  scope: string
  nodad?: boolean
  tentative?: boolean
  dadfailed?: boolean
}

/** IPv6 addresses of one interface with their flags, as `ip -j -6 addr` shows them. */
async function ipv6Of(ifname: string, where: Netns): Promise<Addr6[]> {
  const r = await run(['ip', '-n', where.name, '-j', '-6', 'addr', 'show', 'dev', ifname])
  if (r.code !== 0) return []
  const raw = JSON.parse(r.stdout || '[]') as Array<{ addr_info: Addr6[] }>
  return raw.flatMap((l) => l.addr_info)
}

async function ping(from: Netns, to: string): Promise<boolean> {
  return (await inNetns(from, ['busybox', 'ping', '-c', '1', '-W', '2', to])).code === 0
}

type AddResult = {
  ips: Array<{ address: string; gateway: string; interface: number; version?: string }>
  routes: Array<{ dst: string; gw?: string }>
}

t.test('IPv6-only ADD: pod /128 and gateway /128 with nodad, never tentative, routes both ways, no DAD and no RA', async (t) => {
  const s = await setup(t, 'v6add', [6])
  const pod = await s.newPod()
  const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-6'), config: s.conf })
  t.equal(add.code, 0, add.stdout + add.stderr)
  const podIp = `${s.v6.base}2`
  const hostVeth = hostVethName('ctr-6', 'eth0')
  const r = add.json as AddResult
  t.same(r.ips, [{ address: `${podIp}/128`, gateway: s.v6.gateway, interface: 1 }])
  t.same(r.routes, [{ dst: '::/0', gw: s.v6.gateway }])

  // pod side: its address with nodad and not tentative, the scope-link gateway route, the default
  const podAddrs = (await ipv6Of('eth0', pod)).filter((a) => a.scope === 'global')
  t.same(
    podAddrs.map((a) => [a.local, a.prefixlen, a.nodad === true, a.tentative === true, a.dadfailed === true]),
    [[podIp, 128, true, false, false]],
    'pod address /128 nodad, not tentative',
  )
  const podRoutes = await routes(pod, 6)
  t.ok(
    podRoutes.some((x) => x.dst === `${s.v6.gateway}/128` && x.dev === 'eth0' && !x.gateway),
    'route to the gateway on eth0',
  )
  t.ok(
    podRoutes.some((x) => x.dst === '::/0' && x.gateway === s.v6.gateway && x.dev === 'eth0'),
    'default via the gateway',
  )
  t.equal(await sysctl('net.ipv6.conf.eth0.accept_dad', pod), '0', 'pod eth0 accept_dad=0')
  t.equal(await sysctl('net.ipv6.conf.eth0.accept_ra', pod), '0', 'pod eth0 accept_ra=0')
  t.notOk(
    (await ipv6Of('eth0', pod)).some((a) => a.tentative),
    'no tentative address at all on eth0 (link-local included)',
  )

  // host side: the gateway /128 nodad, the /128 route to the pod, protocol 201
  const hostAddrs = (await ipv6Of(hostVeth, s.node)).filter((a) => a.scope === 'global')
  t.same(
    hostAddrs.map((a) => [a.local, a.prefixlen, a.nodad === true, a.tentative === true]),
    [[s.v6.gateway, 128, true, false]],
    'gateway /128 nodad on the host veth',
  )
  t.equal((await link(hostVeth, s.node))?.operstate, 'UP', 'host veth operationally up when ADD returns')
  t.ok(
    (await routes(s.node, 6)).some((x) => x.dst === `${podIp}/128` && x.dev === hostVeth && x.protocol === '201'),
    'host route to the pod, proto 201',
  )
  t.equal(await sysctl(`net.ipv6.conf.${hostVeth}.accept_dad`, s.node), '0', 'host veth accept_dad=0')
  t.equal(await sysctl(`net.ipv6.conf.${hostVeth}.accept_ra`, s.node), '0', 'host veth accept_ra=0')
  t.equal(await sysctl('net.ipv6.conf.all.forwarding', s.node), '1', 'IPv6 forwarding on: a v6 range is configured')
  t.equal(await sysctl('net.ipv4.ip_forward', s.node), '0', 'IPv4 forwarding untouched: no v4 range')
  t.same(reservations(s.storeDir), [podIp])

  // traffic, both ways, at once: no DAD wait anywhere
  t.ok(await ping(pod, s.v6.gateway), 'pod → gateway')
  t.ok(await ping(s.node, podIp), 'node → pod')

  // CHECK passes, then names a missing v6 default route
  const check = await cniOnNode(s.node, 'CHECK', { env: s.env(pod, 'ctr-6'), config: { ...s.conf, prevResult: add.json } })
  t.equal(check.code, 0, check.stdout)
  await inNetns(pod, ['ip', '-6', 'route', 'del', 'default'])
  const bad = await cniOnNode(s.node, 'CHECK', { env: s.env(pod, 'ctr-6'), config: { ...s.conf, prevResult: add.json } })
  t.match(bad.json, { code: 103, msg: new RegExp(`default route via ${s.v6.gateway} is missing`) })

  // DEL: veth, route and reservation gone
  const del = await cniOnNode(s.node, 'DEL', { env: s.env(pod, 'ctr-6'), config: s.conf })
  t.equal(del.code, 0, del.stdout)
  t.notOk(await link(hostVethName('ctr-6', 'eth0'), s.node))
  t.same(
    (await routes(s.node, 6)).filter((x) => x.protocol === '201'),
    [],
  )
  t.same(reservations(s.storeDir), [])
})

for (const order of [
  [4, 6],
  [6, 4],
] as const) {
  t.test(`dual-stack ADD (ranges IPv${order[0]} first): one veth, one address per range in config order; CHECK, DEL`, async (t) => {
    const s = await setup(t, `dual${order[0]}`, [...order])
    const pod = await s.newPod()
    const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-d'), config: s.conf })
    t.equal(add.code, 0, add.stdout + add.stderr)
    const v4ip = `${s.v4.base}2`
    const v6ip = `${s.v6.base}2`
    const hostVeth = hostVethName('ctr-d', 'eth0')
    const expectIps = { 4: { address: `${v4ip}/32`, gateway: s.v4.gateway, interface: 1 }, 6: { address: `${v6ip}/128`, gateway: s.v6.gateway, interface: 1 } }
    const expectRoutes = { 4: { dst: '0.0.0.0/0', gw: s.v4.gateway }, 6: { dst: '::/0', gw: s.v6.gateway } }
    const r = add.json as AddResult
    t.same(
      r.ips,
      order.map((f) => expectIps[f]),
      'ips in config order',
    )
    t.same(
      r.routes,
      order.map((f) => expectRoutes[f]),
      'routes in config order',
    )
    t.equal((await run(['ip', '-n', pod.name, '-o', 'link', 'show', 'type', 'veth'])).stdout.trim().split('\n').length, 1, 'one veth in the pod')

    t.same(
      (await ipv6Of('eth0', pod)).filter((a) => a.scope === 'global').map((a) => [a.local, a.nodad === true, a.tentative === true]),
      [[v6ip, true, false]],
    )
    const v4addrs = JSON.parse((await run(['ip', '-n', pod.name, '-j', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>
    t.same(
      v4addrs.flatMap((l) => l.addr_info.map((a) => `${a.local}/${a.prefixlen}`)),
      [`${v4ip}/32`],
    )
    const hostRoutes4 = (await routes(s.node, 4)).filter((x) => x.protocol === '201')
    const hostRoutes6 = (await routes(s.node, 6)).filter((x) => x.protocol === '201')
    t.same(
      hostRoutes4.map((x) => [x.dst, x.dev]),
      [[`${v4ip}/32`, hostVeth]],
    )
    t.same(
      hostRoutes6.map((x) => [x.dst, x.dev]),
      [[`${v6ip}/128`, hostVeth]],
    )
    t.equal(await sysctl('net.ipv4.ip_forward', s.node), '1')
    t.equal(await sysctl('net.ipv6.conf.all.forwarding', s.node), '1')
    t.same(reservations(s.storeDir), [v4ip, v6ip].sort())
    for (const dst of [s.v4.gateway, s.v6.gateway]) t.ok(await ping(pod, dst), `pod → ${dst}`)
    for (const dst of [v4ip, v6ip]) t.ok(await ping(s.node, dst), `node → ${dst}`)

    const check = await cniOnNode(s.node, 'CHECK', { env: s.env(pod, 'ctr-d'), config: { ...s.conf, prevResult: add.json } })
    t.equal(check.code, 0, check.stdout)
    // Someone re-adds the pod's IPv6 address with DAD (100 probes: it stays tentative for the test).
    await inNetns(pod, ['sysctl', '-qw', 'net.ipv6.conf.eth0.accept_dad=1', 'net.ipv6.conf.eth0.dad_transmits=100'])
    await inNetns(pod, ['ip', '-6', 'addr', 'del', `${v6ip}/128`, 'dev', 'eth0'])
    await inNetns(pod, ['ip', '-6', 'addr', 'add', `${v6ip}/128`, 'dev', 'eth0'])
    const tentative = await cniOnNode(s.node, 'CHECK', { env: s.env(pod, 'ctr-d'), config: { ...s.conf, prevResult: add.json } })
    t.match(tentative.json, { code: 103, msg: new RegExp(`address ${v6ip}/128 on eth0 is tentative`) })

    const del = await cniOnNode(s.node, 'DEL', { env: s.env(pod, 'ctr-d'), config: s.conf })
    t.equal(del.code, 0, del.stdout)
    t.same(reservations(s.storeDir), [], 'both addresses released')
    t.same(
      [...(await routes(s.node, 4)), ...(await routes(s.node, 6))].filter((x) => x.protocol === '201'),
      [],
      'no pod route of either family left',
    )
  })
}

t.test('dual-stack results per spec version: 0.3.x and 0.4.0 carry version "4" and "6", 1.x none', async (t) => {
  const s = await setup(t, 'dualver', [4, 6])
  let id = 0
  for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    const pod = await s.newPod()
    const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, `ctr-v${++id}`), config: { ...s.conf, cniVersion: v } })
    t.equal(add.code, 0, `${v}: ${add.stdout}`)
    const r = add.json as AddResult
    if (v.startsWith('0.'))
      t.same(
        r.ips.map((ip) => ip.version),
        ['4', '6'],
        `${v} versions`,
      )
    else
      t.notOk(
        r.ips.some((ip) => 'version' in ip),
        `${v} carries no version`,
      )
  }
})

t.test('dual-stack GC releases both families of every attachment not listed, and their host veths', async (t) => {
  const s = await setup(t, 'dualgc', [6, 4])
  const [keep, drop] = [await s.newPod(), await s.newPod()]
  t.equal((await cniOnNode(s.node, 'ADD', { env: s.env(keep, 'ctr-keep'), config: s.conf })).code, 0)
  t.equal((await cniOnNode(s.node, 'ADD', { env: s.env(drop, 'ctr-drop'), config: s.conf })).code, 0)
  t.equal(reservations(s.storeDir).length, 4)
  const gc = await cniOnNode(s.node, 'GC', { env: { CNI_PATH: PATH_ENV }, config: { ...s.conf, 'cni.dev/valid-attachments': [{ containerID: 'ctr-keep', ifname: 'eth0' }] } })
  t.equal(gc.code, 0, gc.stdout)
  t.same(reservations(s.storeDir), [`${s.v4.base}2`, `${s.v6.base}2`].sort(), 'the kept pod holds both of its addresses, nothing else is held')
  t.notOk(await link(hostVethName('ctr-drop', 'eth0'), s.node), 'dropped host veth removed')
  t.ok(await link(hostVethName('ctr-keep', 'eth0'), s.node), 'kept host veth stays')
  const status = await cniOnNode(s.node, 'STATUS', { env: { CNI_PATH: PATH_ENV }, config: s.conf })
  t.equal(status.code, 0, status.stdout)
})

t.test('turning IPv6 forwarding on warns about a default route learnt by RA with accept_ra=1, and changes nothing there', async (t) => {
  const s = await setup(t, 'v6ra', [6])
  // The node's uplink: a veth pair inside the node namespace, its default route "learnt by RA".
  await run(['ip', '-n', s.node.name, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1'])
  await run(['ip', 'netns', 'exec', s.node.name, 'sysctl', '-qw', 'net.ipv6.conf.up0.accept_ra=1', 'net.ipv6.conf.up0.accept_dad=0'])
  await run(['ip', '-n', s.node.name, 'link', 'set', 'up0', 'up'])
  await run(['ip', '-n', s.node.name, 'link', 'set', 'up1', 'up'])
  const ra = await run(['ip', '-n', s.node.name, '-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'up0', 'proto', 'ra'])
  t.equal(ra.code, 0, ra.stderr)
  const pod = await s.newPod()
  const add = await cniOnNode(s.node, 'ADD', { env: s.env(pod, 'ctr-ra'), config: s.conf })
  t.equal(add.code, 0, add.stdout)
  t.match(add.stderr, /IPv6 default route via fe80::1 dev up0 was learnt from a router advertisement.*accept_ra=1 on up0/)
  t.equal(await sysctl('net.ipv6.conf.up0.accept_ra', s.node), '1', 'accept_ra of the uplink untouched')
  // a second ADD finds forwarding on already: nothing more to say
  const again = await cniOnNode(s.node, 'ADD', { env: s.env(await s.newPod(), 'ctr-ra2'), config: s.conf })
  t.equal(again.code, 0)
  t.notMatch(again.stderr, /router advertisement/)
})

t.test('IPv4-only ADD leaves IPv6 forwarding off', async (t) => {
  const s = await setup(t, 'v4fwd', [4])
  t.equal((await cniOnNode(s.node, 'ADD', { env: s.env(await s.newPod(), 'ctr-4'), config: s.conf })).code, 0)
  t.equal(await sysctl('net.ipv4.ip_forward', s.node), '1')
  t.equal(await sysctl('net.ipv6.conf.all.forwarding', s.node), '0')
})

t.test('IP= in CNI_ARGS takes one address per family, comma-separated, in any order', async (t) => {
  const s = await setup(t, 'dualreq', [4, 6])
  const want4 = `${s.v4.base}77`
  const want6 = `${s.v6.base}abcd`
  const add = await cniOnNode(s.node, 'ADD', { env: { ...s.env(await s.newPod(), 'ctr-q'), CNI_ARGS: `IP=${want6},${want4}` }, config: s.conf })
  t.equal(add.code, 0, add.stdout)
  t.same(
    (add.json as AddResult).ips.map((ip) => ip.address),
    [`${want4}/32`, `${want6}/128`],
  )
  const two6 = await cniOnNode(s.node, 'ADD', { env: { ...s.env(await s.newPod(), 'ctr-q2'), CNI_ARGS: `IP=${s.v6.base}5,${s.v6.base}6` }, config: s.conf })
  t.match(two6.json, { code: 7, msg: /one address per range/ })
  t.same(reservations(s.storeDir), [want4, want6].sort(), 'the refused ADD holds nothing')
})
