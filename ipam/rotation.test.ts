// Next-free rotation does work in proportion to the addresses in use, never to the size of the
// range: counted here in looks at the in-use set, on an IPv6 /64 (2^64 addresses).
import t from 'tap'
import { parseCidr, podRange } from './cidr.js'
import { rotationCandidates } from './rotation.js'

/** The in-use set, counting every look at it. */
class CountingSet extends Set<bigint> {
  looks = 0
  override has(v: bigint): boolean {
    this.looks++
    return super.has(v)
  }
}

const v6 = podRange(parseCidr('fd00:10:244:1::/64'))

function firstFree(first: bigint, last: bigint, start: bigint, inUse: CountingSet): bigint | undefined {
  for (const v of rotationCandidates(first, last, start, inUse)) return v
  return undefined
}

t.test('a /64 with 10 000 addresses in use right after the cursor: the first free one after 10 001 looks', async (t) => {
  const inUse = new CountingSet()
  for (let k = 0n; k < 10_000n; k++) inUse.add(v6.first + k)
  t.equal(firstFree(v6.first, v6.last, v6.first, inUse), v6.first + 10_000n)
  t.equal(inUse.looks, 10_001)
})

t.test('the cursor at the end of a /64 wraps to its start without walking the range', async (t) => {
  const inUse = new CountingSet()
  inUse.add(v6.last)
  inUse.add(v6.first)
  t.equal(firstFree(v6.first, v6.last, v6.last, inUse), v6.first + 1n)
  t.equal(inUse.looks, 3)
  // a cursor past the end (the last address was handed out) starts over at the first
  const fresh = new CountingSet()
  t.equal(firstFree(v6.first, v6.last, v6.last + 1n, fresh), v6.first)
  t.equal(fresh.looks, 1)
})

t.test('candidates turned down (lost races) cost one look each, and values learnt meanwhile are skipped', async (t) => {
  const inUse = new CountingSet()
  const taken: bigint[] = []
  for (const v of rotationCandidates(v6.first, v6.last, v6.first, inUse)) {
    taken.push(v)
    // another process holds this one, and also the one after it
    inUse.add(v)
    inUse.add(v + 1n)
    if (taken.length === 5) break
  }
  t.same(
    taken.map((v) => v - v6.first),
    [0n, 2n, 4n, 6n, 8n],
  )
  t.equal(inUse.looks, 9)
})

t.test('a full small range yields nothing; a full range stops at once however large', async (t) => {
  const v4 = podRange(parseCidr('10.0.0.0/29'))
  const inUse = new CountingSet()
  for (let v = v4.first; v <= v4.last; v++) inUse.add(v)
  t.equal(firstFree(v4.first, v4.last, v4.first, inUse), undefined)
  t.equal(inUse.looks, 0, 'known full before the first look')
  const one = podRange(parseCidr('fd00::/126'))
  const all = new CountingSet([one.first, one.first + 1n])
  t.equal(firstFree(one.first, one.last, one.first, all), undefined)
})
