// Who is dead, decided without root: the plans behind the plugin's GC and `flatnetctl ipam gc`.
import t from 'tap'
import type { Reservation } from '../ipam/index.js'
import { planDetached, planHostVethsByValidList, type HostLink } from './reclaim.js'
import { hostVethAlias, hostVethName } from './wiring.js'

const NOW = Date.parse('2025-01-01T12:00:00Z')
const rec = (containerId: string, address: string, ageSeconds = 3600, ifname = 'eth0'): Reservation => ({
  address,
  range: '10.9.0.0/24',
  containerId,
  ifname,
  createdAt: new Date(NOW - ageSeconds * 1000).toISOString(),
})
/** network null: a veth without alias (an ADD killed before it set one, or not ours). */
const veth = (containerId: string, network: string | null = 'net1', ifname = 'eth0'): HostLink => ({
  name: hostVethName(containerId, ifname),
  kind: 'veth',
  alias: network === null ? undefined : hostVethAlias(network, containerId, ifname),
})

t.test('GC by valid list: unlisted veths of the network go, and alias-less veths of released reservations', async (t) => {
  const links: HostLink[] = [
    veth('live'),
    veth('dead'),
    veth('other-net', 'net2'),
    veth('crashed-before-alias', null),
    veth('stranger', null),
    { name: 'eth0', kind: 'veth', alias: 'flatnet:net1:eth0:x' }, // an alias is just text: never delete a link not named by us
    { name: 'lo', alias: undefined },
  ]
  const released = [rec('dead', '10.9.0.3'), rec('crashed-before-alias', '10.9.0.4')]
  t.same(planHostVethsByValidList('net1', links, released, [{ containerId: 'live', ifname: 'eth0' }]).sort(), [hostVethName('dead', 'eth0'), hostVethName('crashed-before-alias', 'eth0')].sort())
})

t.test('by the host: a reservation without its veth is dead, a veth of the network without a reservation is an orphan', async (t) => {
  const links = [veth('live'), veth('orphan'), veth('other-net-orphan', 'net2')]
  const plan = planDetached({
    network: 'net1',
    linksBefore: links,
    reservations: [rec('live', '10.9.0.2'), rec('rebooted', '10.9.0.3')],
    linksAfter: links,
    now: NOW,
    minAgeMs: 60_000,
  })
  t.same(
    plan.reservations.map((r) => r.containerId),
    ['rebooted'],
  )
  t.same(plan.hostVeths, [hostVethName('orphan', 'eth0')], "another network's veths are not ours to judge")
  t.same(plan.tooYoung, [])
})

t.test("by the host: the readings' order protects a concurrent ADD and the grace period a slow one", async (t) => {
  // The ADD reserved after the first listing and made its veth before the second: it is alive.
  const adding = veth('adding')
  const plan = planDetached({
    network: 'net1',
    linksBefore: [],
    reservations: [rec('adding', '10.9.0.5', 0)],
    linksAfter: [adding],
    now: NOW,
    minAgeMs: 60_000,
  })
  t.same(plan, { reservations: [], hostVeths: [], tooYoung: [] })
  // Reserved, veth not made yet: too young to judge.
  const slow = planDetached({ network: 'net1', linksBefore: [], reservations: [rec('slow', '10.9.0.6', 5)], linksAfter: [], now: NOW, minAgeMs: 60_000 })
  t.same(slow.reservations, [])
  t.same(
    slow.tooYoung.map((r) => r.containerId),
    ['slow'],
  )
  t.same(
    planDetached({ network: 'net1', linksBefore: [], reservations: [rec('slow', '10.9.0.6', 5)], linksAfter: [], now: NOW, minAgeMs: 0 }).reservations.map((r) => r.containerId),
    ['slow'],
    '--min-age 0 judges it',
  )
  // An unreadable time proves no youth.
  const odd = { ...rec('odd', '10.9.0.7'), createdAt: 'yesterday' }
  t.same(planDetached({ network: 'net1', linksBefore: [], reservations: [odd], linksAfter: [], now: NOW, minAgeMs: 60_000 }).reservations, [odd])
})

t.test("by the host: an attachment's addresses go together or not at all", async (t) => {
  const v4 = rec('dual', '10.9.0.8', 3600)
  const v6 = { ...rec('dual', 'fd00::8', 5), range: 'fd00::/64' }
  const plan = planDetached({ network: 'net1', linksBefore: [], reservations: [v4, v6], linksAfter: [], now: NOW, minAgeMs: 60_000 })
  t.same(plan.reservations, [], 'one of them is young: both kept')
  t.same(planDetached({ network: 'net1', linksBefore: [], reservations: [v4, v6], linksAfter: [], now: NOW, minAgeMs: 0 }).reservations, [v4, v6])
})
