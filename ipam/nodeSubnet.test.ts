import t from 'tap'
import { CidrError, parseCidr } from './cidr.js'
import { NodeSubnetAllocator, isPlanSubnet, lowestFreeNodeSubnet, planNodeSubnets } from './nodeSubnet.js'

const cidrs = (...texts: string[]) => texts.map((x) => parseCidr(x))

t.test('planNodeSubnets cuts the cluster range into equal node subnets', async (t) => {
  const plan = planNodeSubnets('10.244.0.0/16', 24)
  t.equal(plan.cluster.text, '10.244.0.0/16')
  t.equal(plan.prefixLength, 24)
  t.equal(plan.count, 256n)
  t.equal(planNodeSubnets('10.244.0.0/22', 24).count, 4n)
  t.equal(planNodeSubnets('10.244.0.0/24', 24).count, 1n, 'a cluster range of a single node subnet is allowed')
  t.equal(planNodeSubnets('fd00:10::/56', 64).count, 256n)
})

t.test('planNodeSubnets refuses a prefix length that does not fit, naming both', async (t) => {
  for (const [cluster, prefix] of [
    ['10.244.0.0/16', 8],
    ['10.244.0.0/16', 33],
    ['10.244.0.0/16', 24.5],
    ['10.244.0.0/16', -1],
  ] as const) {
    t.throws(() => planNodeSubnets(cluster, prefix), { name: 'CidrError', message: new RegExp(`${prefix}.*10\\.244\\.0\\.0/16`) }, `/${prefix}`)
  }
  t.throws(() => planNodeSubnets('10.244.0.0/16', 31), { message: /\/31 of cluster range 10\.244\.0\.0\/16 is unusable/ }, 'IPv4 /31 leaves no pod address')
  t.throws(() => planNodeSubnets('fd00::/64', 127), { message: /\/127 .* is unusable/ }, 'IPv6 /127 leaves no pod address')
  t.ok(planNodeSubnets('10.244.0.0/16', 30), 'IPv4 /30 holds a gateway and one pod')
  t.throws(() => planNodeSubnets('10.244.0.1/16', 24), CidrError, 'a cluster range with host bits is refused')
})

t.test('lowestFreeNodeSubnet picks the first subnet nobody uses', async (t) => {
  const plan = planNodeSubnets('10.244.0.0/16', 24)
  t.equal(lowestFreeNodeSubnet(plan, [])?.text, '10.244.0.0/24', 'empty cluster → the first subnet')
  t.equal(lowestFreeNodeSubnet(plan, cidrs('10.244.0.0/24', '10.244.1.0/24'))?.text, '10.244.2.0/24')
  t.equal(lowestFreeNodeSubnet(plan, cidrs('10.244.1.0/24', '10.244.0.0/24', '10.244.3.0/24'))?.text, '10.244.2.0/24', 'a hole left by a removed node is reused first, order of input does not matter')
  t.equal(lowestFreeNodeSubnet(plan, cidrs('10.244.1.0/24'))?.text, '10.244.0.0/24')
})

t.test('lowestFreeNodeSubnet treats whatever a used subnet of another size overlaps as taken', async (t) => {
  const plan = planNodeSubnets('10.244.0.0/16', 24)
  t.equal(lowestFreeNodeSubnet(plan, cidrs('10.244.0.0/23'))?.text, '10.244.2.0/24', 'a larger used block covers two node subnets')
  t.equal(lowestFreeNodeSubnet(plan, cidrs('10.244.0.128/25'))?.text, '10.244.1.0/24', 'a smaller used block blocks its whole node subnet')
  t.equal(lowestFreeNodeSubnet(plan, cidrs('10.0.0.0/8')), undefined, 'a used block containing the whole range exhausts it')
  t.equal(lowestFreeNodeSubnet(plan, cidrs('10.245.0.0/24', '192.168.0.0/24', 'fd00::/64'))?.text, '10.244.0.0/24', 'blocks outside the range or of another family are ignored')
})

t.test('lowestFreeNodeSubnet reports exhaustion as undefined', async (t) => {
  const plan = planNodeSubnets('10.244.0.0/22', 24)
  const all = cidrs('10.244.0.0/24', '10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24')
  t.equal(lowestFreeNodeSubnet(plan, all), undefined)
  t.equal(lowestFreeNodeSubnet(plan, all.slice(0, 3))?.text, '10.244.3.0/24', 'the last subnet is handed out')
})

t.test('lowestFreeNodeSubnet works for IPv6 and for thousands of nodes', async (t) => {
  const v6 = planNodeSubnets('fd00:10::/48', 64)
  t.equal(lowestFreeNodeSubnet(v6, cidrs('fd00:10::/64'))?.text, 'fd00:10:0:1::/64')
  const big = planNodeSubnets('10.0.0.0/12', 26)
  const used = []
  for (let i = 0n; i < 5000n; i++) used.push(parseCidr(`10.${Number(i >> 10n)}.${Number((i >> 2n) & 255n)}.${Number((i & 3n) * 64n)}/26`))
  t.equal(lowestFreeNodeSubnet(big, used)?.text, '10.4.226.0/26', 'the 5001st /26 follows the 5000 used ones')
})

t.test('NodeSubnetAllocator hands out the gaps lowest first, each once, then reports exhaustion', async (t) => {
  const plan = planNodeSubnets('10.244.0.0/21', 24)
  const allocator = new NodeSubnetAllocator(plan, cidrs('10.244.1.0/24', '10.244.3.0/24', '10.244.4.0/23'))
  const got = []
  for (let s = allocator.next(); s; s = allocator.next()) got.push(s.text)
  t.same(got, ['10.244.0.0/24', '10.244.2.0/24', '10.244.6.0/24', '10.244.7.0/24'])
  t.equal(allocator.next(), undefined, 'still exhausted when asked again')
  const big = new NodeSubnetAllocator(planNodeSubnets('10.0.0.0/12', 26), [])
  let last
  for (let i = 0; i < 5000; i++) last = big.next()
  t.equal(last?.text, '10.4.225.192/26', 'the 5000th of 5000 fresh allocations')
})

t.test('NodeSubnetAllocator.take takes a particular free subnet once, and next() skips it', async (t) => {
  const plan = planNodeSubnets('10.244.0.0/21', 24)
  const allocator = new NodeSubnetAllocator(plan, cidrs('10.244.1.0/24', '10.244.4.0/23'))
  t.notOk(allocator.take(parseCidr('10.244.1.0/24')), 'a used one: no')
  t.notOk(allocator.take(parseCidr('10.244.5.0/24')), 'one inside a larger used block: no')
  t.notOk(allocator.take(parseCidr('10.244.2.0/25')), 'not a node subnet of the plan: no')
  t.notOk(allocator.take(parseCidr('10.245.2.0/24')), 'outside the range: no')
  t.ok(allocator.take(parseCidr('10.244.2.0/24')), 'a free one: yes')
  t.notOk(allocator.take(parseCidr('10.244.2.0/24')), 'the same again: no')
  t.equal(allocator.next()?.text, '10.244.0.0/24')
  t.equal(allocator.next()?.text, '10.244.3.0/24', 'next() skips the taken one')
  t.notOk(allocator.take(parseCidr('10.244.0.0/24')), 'one next() handed out: no')
  t.ok(allocator.take(parseCidr('10.244.7.0/24')), 'a free one above the candidate: yes')
  t.equal(allocator.next()?.text, '10.244.6.0/24')
  t.equal(allocator.next(), undefined, 'then the range is exhausted')
})

t.test('isPlanSubnet accepts exactly the node subnets of the plan', async (t) => {
  const plan = planNodeSubnets('10.244.0.0/16', 24)
  t.ok(isPlanSubnet(plan, parseCidr('10.244.7.0/24')))
  t.notOk(isPlanSubnet(plan, parseCidr('10.244.7.0/25')), 'other size')
  t.notOk(isPlanSubnet(plan, parseCidr('10.245.7.0/24')), 'outside the range')
  t.notOk(isPlanSubnet(plan, parseCidr('fd00::/24')), 'other family')
})
