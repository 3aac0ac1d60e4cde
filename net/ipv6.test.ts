// The hand-written IPv6 syntax and RFC 5952 formatting agree with the ip-address package (which
// the plugin no longer loads) on edge cases and on random addresses with many zero runs.
import t from 'tap'
import { randomInt } from 'node:crypto'
import { Address6 } from 'ip-address'
import { bytesToIpv6, formatIpv6, ipv6ToBytes, isIpv6, parseIpv6 } from './ipv6.js'

const valid = [
  '::',
  '::1',
  '1::',
  'fd00:10:244:1::',
  'fd00:10:244:1::1',
  'FD00::A',
  '0:0:0:0:0:0:0:1',
  '1:0:0:2:0:0:0:3',
  '1:0:0:2:0:0:3:4',
  'fe80::1:2',
  '::ffff:10.1.2.3',
  '64:ff9b::192.0.2.33',
  '1:2:3:4:5:6:7:8',
  '2001:db8:0:1:1:1:1:1',
  '0001:0002::0003',
]
const invalid = [
  '',
  ':',
  ':::',
  '1:::2',
  '1::2::3',
  '1:2:3:4:5:6:7:8:9',
  '1:2:3:4:5:6:7',
  '12345::',
  'g::',
  '::1.2.3',
  '::1.2.3.04',
  '::256.1.1.1',
  '1.2.3.4',
  'fe80::1%eth0',
  ' ::1',
  '::1 ',
  '1:2:3:4:5:6:7::8',
  ':1::',
  '1::2:',
]

t.test('what is an IPv6 address, as ip-address judges it', async (t) => {
  for (const a of valid) {
    t.ok(isIpv6(a), `${a} valid`)
    t.ok(Address6.isValid(a), `${a} valid for ip-address too`)
    t.equal(parseIpv6(a), new Address6(a).bigInt(), `${a} value`)
  }
  for (const a of invalid) t.notOk(isIpv6(a), `${JSON.stringify(a)} invalid`)
})

t.test('RFC 5952 text equals ip-address correctForm on 20 000 random addresses with zero runs', async (t) => {
  let same = 0
  const differ: string[] = []
  for (let n = 0; n < 20_000; n++) {
    let v = 0n
    for (let g = 0; g < 8; g++) v = (v << 16n) | BigInt(randomInt(0, 3) === 0 ? randomInt(0, 0x10000) : randomInt(0, 2) ? 0 : randomInt(0, 16))
    const ours = formatIpv6(v)
    const theirs = Address6.fromBigInt(v).correctForm()
    if (ours === theirs) same++
    else if (differ.length < 5) differ.push(`${v.toString(16)}: ${ours} vs ${theirs}`)
    if (parseIpv6(ours) !== v) differ.push(`${ours} does not parse back`)
  }
  t.same(differ, [])
  t.equal(same, 20_000)
})

t.test('bytes round trip', async (t) => {
  const v = parseIpv6('fd00:10:244:1::abcd')!
  const b = ipv6ToBytes(v)
  t.equal(b.length, 16)
  t.equal(b.toString('hex'), 'fd00001002440001000000000000abcd')
  t.equal(bytesToIpv6(b), v)
})
