// The reference plugins as a peer in dual stack: ptp + host-local with two ranges (IPv4 /24,
// IPv6 /64) and flatnet with the same two ranges, each ADD from a node namespace of its own (so
// IPv6 forwarding is turned on there, never on this machine), must give the pod one address per
// family in config order and make the same forwarding decisions in both families; DEL must clean
// up both alike.
//
// Differences by design, asserted as such: ptp gives the pod its address with the range's prefix
// (/24, /64) and adds `RANGE via GW` per family; flatnet gives /32 and /128 and needs no range route.
import t from 'tap'
import { join } from 'node:path'
import {
  REFERENCE_CNI_DIR,
  cniResult,
  flatnetBinary,
  flatnetMissingReason,
  inNetns,
  link,
  links,
  routeGet,
  routes,
  run,
  runCni,
  sysctl,
  testDir,
  testNamespaces,
  testRanges,
  type Netns,
} from '../helpers/index.js'
import { testRange6 } from '../../plugin/testing/families.js'

interface Side {
  label: string
  binary: string
  config: Record<string, unknown>
  node: Netns
  pod: Netns
  v4: { cidr: string; gateway: string; base: string }
  v6: { cidr: string; gateway: string; base: string }
}

const env = (s: Side) => ({ CNI_CONTAINERID: `ctr-${s.label}`, CNI_NETNS: s.pod.path, CNI_IFNAME: 'eth0', CNI_PATH: REFERENCE_CNI_DIR })

/** The pod's and the node's state with addresses, ranges, gateways and the host veth replaced by names. */
async function normalizedState(s: Side, hostVeth: string) {
  const pairs: Array<[string, string]> = [
    [s.v4.cidr, 'RANGE4'],
    [s.v6.cidr, 'RANGE6'],
    [`${s.v4.base}2`, 'POD4'],
    [`${s.v6.base}2`, 'POD6'],
    [s.v4.gateway, 'GW4'],
    [s.v6.gateway, 'GW6'],
    [hostVeth, 'HOSTVETH'],
  ]
  const n = (x: string | undefined) => {
    if (x === undefined) return '-'
    for (const [from, to] of pairs) {
      if (x === from) return to
      if (x.startsWith(`${from}/`)) return `${to}${x.slice(from.length)}`
    }
    return x
  }
  const lookup = async (where: Netns, address: string) => {
    const r = await routeGet(address, where)
    return `${n(r.gateway)} ${n(r.dev)} ${n(r.prefsrc)}`
  }
  const podRoutes6 = (await routes(s.pod, 6)).filter((r) => !r.dst.startsWith('fe80:') && r.type !== 'multicast').map((r) => `${n(r.dst)} ${n(r.gateway)} ${n(r.dev)}`)
  const hostRoutes = [...(await routes(s.node, 4)), ...(await routes(s.node, 6))].filter((r) => r.dev === hostVeth && !r.dst.startsWith('fe80:')).map((r) => `${n(r.dst)} ${n(r.dev)}`)
  const addr = JSON.parse((await run(['ip', '-n', s.node.name, '-j', 'addr', 'show', 'dev', hostVeth])).stdout) as Array<{
    addr_info: Array<{ local: string; prefixlen: number; scope: string; tentative?: boolean }>
  }>
  const podAddr = JSON.parse((await run(['ip', '-n', s.pod.name, '-j', 'addr', 'show', 'dev', 'eth0'])).stdout) as typeof addr
  return {
    podAddresses: podAddr.flatMap((l) => l.addr_info.filter((a) => a.scope === 'global').map((a) => n(`${a.local}/${a.prefixlen}`))),
    podTentative: podAddr.flatMap((l) => l.addr_info.filter((a) => a.tentative).map((a) => a.local)),
    podRoutes6: podRoutes6.sort(),
    hostAddresses: addr.flatMap((l) => l.addr_info.filter((a) => a.scope === 'global').map((a) => n(`${a.local}/${a.prefixlen}`))).sort(),
    hostRoutes: hostRoutes.sort(),
    lookups: {
      gateway6: await lookup(s.pod, s.v6.gateway),
      inRange6: await lookup(s.pod, `${s.v6.base}77`),
      outside6: await lookup(s.pod, '2001:db8::7'),
      outside4: await lookup(s.pod, '198.51.100.7'),
      toPod6: await lookup(s.node, `${s.v6.base}2`),
    },
  }
}

t.test('ptp + host-local with two ranges and flatnet wire a dual-stack pod equivalently', { skip: flatnetMissingReason() }, async (t) => {
  const nss = testNamespaces(t, 'dpeer')
  const { dir } = testDir(t, 'dpeer')
  const [r4a, r4b] = testRanges(2)
  const sides: Side[] = []
  for (const [label, v4] of [
    ['reference', r4a],
    ['flatnet', r4b],
  ] as const) {
    const node = await nss.create(`${label.slice(0, 4)}-node`)
    await run(['ip', '-n', node.name, 'link', 'set', 'lo', 'up'])
    const pod = await nss.create(`${label.slice(0, 4)}-pod`)
    const v6 = testRange6(64)
    const dataDir = join(dir, label)
    const config =
      label === 'reference'
        ? {
            cniVersion: '1.0.0',
            name: 'dual',
            type: 'ptp',
            mtu: 1500,
            ipam: {
              type: 'host-local',
              ranges: [[{ subnet: v4.cidr, gateway: v4.gateway }], [{ subnet: v6.cidr, gateway: v6.gateway }]],
              routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
              dataDir,
            },
          }
        : { cniVersion: '1.0.0', name: 'dual', type: 'flatnet', ranges: [v4.cidr, v6.cidr], mtu: 1500, dataDir }
    sides.push({ label, binary: label === 'reference' ? join(REFERENCE_CNI_DIR, 'ptp') : flatnetBinary, config, node, pod, v4, v6 })
  }

  const states = []
  for (const s of sides) {
    const call = await runCni(s.binary, 'ADD', { env: env(s), config: s.config, hostNetns: s.node.name, timeoutMs: 60_000 })
    const result = cniResult(call, `${s.label} ADD`)
    if (s.label === 'reference') {
      const lo = await runCni(join(REFERENCE_CNI_DIR, 'loopback'), 'ADD', {
        env: { ...env(s), CNI_IFNAME: 'lo' },
        config: { cniVersion: '1.0.0', name: 'lo', type: 'loopback' },
        hostNetns: s.node.name,
      })
      t.equal(lo.code, 0, `reference loopback ADD ${lo.stdout}`)
    }
    t.same(
      result.ips?.map((ip) => [ip.address.split('/')[0], ip.gateway]),
      [
        [`${s.v4.base}2`, s.v4.gateway],
        [`${s.v6.base}2`, s.v6.gateway],
      ],
      `${s.label}: one address per range, in config order, each with its gateway`,
    )
    const hostVeth = result.interfaces?.[0]?.name ?? ''
    states.push(await normalizedState(s, hostVeth))
    t.equal(await sysctl('net.ipv6.conf.all.forwarding', s.node), '1', `${s.label}: the node forwards IPv6`)
    t.ok(await inNetns(s.pod, ['ping', '-c', '1', '-W', '3', s.v6.gateway]).then((r) => r.code === 0), `${s.label}: pod → GW6`)
    t.ok(await run(['ip', 'netns', 'exec', s.node.name, 'ping', '-c', '1', '-W', '3', `${s.v6.base}2`]).then((r) => r.code === 0), `${s.label}: node → POD6`)
  }
  const [ref, flat] = states

  t.same(ref.podAddresses, ['POD4/24', 'POD6/64'], 'reference: addresses with the range prefix (ptp design)')
  t.same(flat.podAddresses, ['POD4/32', 'POD6/128'], 'flatnet: POD4/32 and POD6/128')
  t.same(flat.podTentative, [], 'flatnet: no tentative address in the pod when ADD returns')
  // The kernel adds a prefix route for every IPv6 address (POD6/128 here, RANGE6 for ptp's /64);
  // IPv4 keeps a /32's route in the local table only.
  t.same(flat.podRoutes6, ['::/0 GW6 eth0', 'GW6/128 - eth0', 'POD6/128 - eth0'], 'flatnet: IPv6 default via GW6, GW6 on-link, the kernel route of POD6/128')
  t.same(
    flat.podRoutes6.filter((r) => !ref.podRoutes6.includes(r)),
    ['POD6/128 - eth0'],
    'every flatnet IPv6 pod route but its address route is also the reference one',
  )
  t.ok(
    ref.podRoutes6.filter((r) => !flat.podRoutes6.includes(r)).every((r) => r.startsWith('RANGE6 ')),
    `the reference has only range routes more (${ref.podRoutes6.join(', ')})`,
  )
  t.same(flat.hostAddresses, ref.hostAddresses, 'the host veth carries the same gateways')
  t.same(flat.hostAddresses, ['GW4/32', 'GW6/128'])
  t.same(flat.hostRoutes, ref.hostRoutes, 'the same host routes to the pod')
  t.same(flat.hostRoutes, ['GW6/128 HOSTVETH', 'POD4/32 HOSTVETH', 'POD6/128 HOSTVETH'], 'POD4/32, POD6/128, and the kernel route of GW6/128')
  // The node's source address towards the pod is its gateway address once that is usable: at
  // once for flatnet (nodad); ptp's gateway is still tentative (DAD) right after its ADD, so the
  // node falls back to its link-local address meanwhile, or, while that is tentative too, to the
  // loopback's ::1 (seen in a fresh-clone run on a loaded machine).
  t.equal(flat.lookups.toPod6, '- HOSTVETH GW6', 'flatnet: the node reaches the pod from GW6 as soon as ADD returns')
  t.match(ref.lookups.toPod6, /^- HOSTVETH (GW6|fe80:\S+|::1)$/, `reference: the node's source towards the pod is GW6 once DAD ends, a fallback before (${ref.lookups.toPod6})`)
  const { toPod6: _f, ...flatRest } = flat.lookups
  const { toPod6: _r, ...refRest } = ref.lookups
  t.same(flatRest, refRest, 'the pod forwards alike in IPv6 and IPv4')

  for (const s of sides) {
    const del = await runCni(s.binary, 'DEL', { env: env(s), config: s.config, hostNetns: s.node.name, timeoutMs: 60_000 })
    t.equal(del.code, 0, `${s.label}: DEL ${del.stdout}`)
    t.same(
      (await links(s.pod)).map((l) => l.ifname),
      ['lo'],
      `${s.label}: only lo left in the pod`,
    )
    t.notOk(await link(`eth0`, s.pod))
    t.same(
      [...(await routes(s.node, 4)), ...(await routes(s.node, 6))].filter((r) => r.dst.startsWith(s.v4.base) || r.dst.startsWith(s.v6.base)),
      [],
      `${s.label}: no route to the pod left on the node`,
    )
  }
})
