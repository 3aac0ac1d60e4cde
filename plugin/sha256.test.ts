// The plugin's own SHA-256 gives node:crypto's digest, for the lengths around every padding
// boundary and for non-ASCII text (host veth names depend on it: a wrong hash strands veths).
import t from 'tap'
import { createHash } from 'node:crypto'
import { sha256Hex } from './sha256.js'

t.test('same digest as node:crypto', async (t) => {
  const texts = ['', 'abc', 'ctr-1/eth0', 'é∑😀/net1']
  for (let n = 0; n <= 200; n++) texts.push('x'.repeat(n), Array.from({ length: n }, (_, i) => String.fromCharCode(32 + ((i * 7 + n) % 95))).join(''))
  let mismatches = 0
  for (const text of texts) if (sha256Hex(text) !== createHash('sha256').update(text).digest('hex')) mismatches++
  t.equal(mismatches, 0, `${texts.length} texts`)
  t.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'the FIPS 180-2 example')
})
