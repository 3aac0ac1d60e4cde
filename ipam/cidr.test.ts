import t from 'tap'
import { CidrError, addressBits, cidrContains, cidrSize, cidrsOverlap, formatAddress, parseAddress, parseCidr, podRange, subnetAt, subnetCount, subnetIndex } from './cidr.js'

/** The CidrError thrown by fn, so a test can check what its message names. */
function cidrErrorOf(fn: () => unknown): CidrError | undefined {
  try {
    fn()
  } catch (err) {
    return err instanceof CidrError ? err : undefined
  }
  return undefined
}

t.test('parseCidr accepts canonical IPv4 and IPv6 networks', async (t) => {
  const v4 = parseCidr('10.244.1.0/24')
  t.same(v4, { family: 4, network: 0x0af40100n, prefixLength: 24, text: '10.244.1.0/24' })
  t.equal(parseCidr('0.0.0.0/0').text, '0.0.0.0/0')
  t.equal(parseCidr('10.244.1.7/32').network, 0x0af40107n)
  const v6 = parseCidr('fd00:0:0:0::/64')
  t.equal(v6.family, 6)
  t.equal(v6.prefixLength, 64)
  t.equal(v6.text, 'fd00::/64', 'IPv6 text is canonical')
  t.equal(v6.network, 0xfd00n << 112n)
})

t.test('parseCidr rejects garbage with a message naming the input', async (t) => {
  for (const bad of [
    '',
    'nonsense',
    '10.244.1.0',
    '10.244.1.0/',
    '10.244.1/24',
    '256.0.0.0/8',
    '10.0.0.0/33',
    '10.0.0.0/-1',
    '10.0.0.0/08',
    '010.0.0.0/8',
    '10.0.0.0/24 ',
    'fd00::/129',
    'fe80::%eth0/64',
    '10.0.0.0/24/24',
  ]) {
    t.match(cidrErrorOf(() => parseCidr(bad))?.message, JSON.stringify(bad), `rejects ${JSON.stringify(bad)}`)
  }
})

t.test('parseCidr rejects host bits and suggests the network', async (t) => {
  t.throws(() => parseCidr('10.244.1.5/24'), new CidrError('10.244.1.5/24: host bits set; did you mean 10.244.1.0/24?'))
  t.throws(() => parseCidr('fd00::1/64'), { message: 'fd00::1/64: host bits set; did you mean fd00::/64?' })
})

t.test('parseAddress and formatAddress round trip; garbage is rejected', async (t) => {
  t.same(parseAddress('10.244.1.7'), { family: 4, value: 0x0af40107n })
  t.same(parseAddress('fd00::7'), { family: 6, value: (0xfd00n << 112n) + 7n })
  t.equal(formatAddress(4, 0x0af40107n), '10.244.1.7')
  t.equal(formatAddress(6, (0xfd00n << 112n) + 7n), 'fd00::7')
  for (const bad of ['', 'x', '10.244.1.7/32', '1.2.3', '1.2.3.4.5', 'fd00:::1', 'fe80::1%eth0']) {
    t.throws(() => parseAddress(bad), CidrError, `rejects ${JSON.stringify(bad)}`)
  }
  t.throws(() => formatAddress(4, 1n << 32n), CidrError)
  t.equal(addressBits(4), 32)
  t.equal(addressBits(6), 128)
})

t.test('subnetAt and subnetIndex are inverse on 10.244.0.0/16 into /24s', async (t) => {
  const cluster = parseCidr('10.244.0.0/16')
  t.equal(subnetCount(cluster, 24), 256n)
  t.equal(subnetAt(cluster, 24, 0n).text, '10.244.0.0/24')
  t.equal(subnetAt(cluster, 24, 1n).text, '10.244.1.0/24')
  t.equal(subnetAt(cluster, 24, 255n).text, '10.244.255.0/24')
  let roundTrips = 0
  for (let i = 0n; i < 256n; i++) {
    const child = subnetAt(cluster, 24, i)
    if (subnetIndex(cluster, child) === i && cidrContains(cluster, 4, child.network)) roundTrips++
  }
  t.equal(roundTrips, 256, 'every one of the 256 subnets maps back to its index')
  t.throws(() => subnetAt(cluster, 24, 256n), CidrError)
  t.throws(() => subnetAt(cluster, 24, -1n), CidrError)
  t.throws(() => subnetCount(cluster, 15), CidrError)
  t.equal(subnetIndex(cluster, parseCidr('10.245.0.0/24')), undefined, 'outside the parent')
  t.equal(subnetIndex(cluster, parseCidr('10.0.0.0/8')), undefined, 'larger than the parent')
  t.equal(subnetIndex(cluster, parseCidr('fd00::/120')), undefined, 'other family')
  t.equal(subnetIndex(cluster, { family: 4, network: 0x0af40105n, prefixLength: 24, text: 'unaligned' }), undefined, 'unaligned')
  t.equal(subnetAt(parseCidr('fd00::/48'), 64, 3n).text, 'fd00:0:0:3::/64')
})

t.test('cidrSize, cidrContains and cidrsOverlap', async (t) => {
  const a = parseCidr('10.244.0.0/16')
  t.equal(cidrSize(a), 65536n)
  t.equal(cidrSize(parseCidr('fd00::/64')), 1n << 64n)
  t.ok(cidrContains(a, 4, parseAddress('10.244.255.255').value))
  t.notOk(cidrContains(a, 4, parseAddress('10.245.0.0').value))
  t.notOk(cidrContains(a, 6, parseAddress('10.244.0.1').value), 'family must match')
  t.ok(cidrsOverlap(a, parseCidr('10.244.7.0/24')), 'parent and child')
  t.ok(cidrsOverlap(parseCidr('10.244.7.0/24'), a), 'child and parent')
  t.ok(cidrsOverlap(a, a), 'itself')
  t.notOk(cidrsOverlap(a, parseCidr('10.245.0.0/16')), 'neighbours')
  t.notOk(cidrsOverlap(parseCidr('10.244.1.0/24'), parseCidr('10.244.2.0/24')), 'sibling /24s')
  t.notOk(cidrsOverlap(parseCidr('0.0.0.0/0'), parseCidr('::/0')), 'different families never overlap')
})

t.test('podRange of a /24: gateway .1, pods .2 to .254', async (t) => {
  const r = podRange(parseCidr('10.244.1.0/24'))
  t.equal(r.gateway, '10.244.1.1')
  t.equal(formatAddress(4, r.first), '10.244.1.2')
  t.equal(formatAddress(4, r.last), '10.244.1.254')
  t.equal(r.capacity, 253)
  t.equal(r.cidr.text, '10.244.1.0/24')
  const v6 = podRange(parseCidr('fd00::/120'))
  t.equal(v6.gateway, 'fd00::1')
  t.equal(formatAddress(6, v6.last), 'fd00::ff', 'IPv6 has no broadcast')
  t.equal(v6.capacity, 254)
  t.equal(podRange(parseCidr('10.0.0.0/30')).capacity, 1)
})

t.test('podRange rejects ranges without room for a gateway and a pod', async (t) => {
  for (const small of ['10.244.1.0/31', '10.244.1.0/32', 'fd00::/127', 'fd00::/128']) {
    t.match(cidrErrorOf(() => podRange(parseCidr(small)))?.message, `pod range ${small} is too small`, `rejects ${small}`)
  }
})
