// Pod ranges for tests. Each test run takes random /24s from 10.200.0.0/13 (10.200.0.0 –
// 10.207.255.255), so concurrent test files rarely pick the same one: their host routes
// (podIP/32 dev hostVeth) share the host's routing table and would collide with EEXIST.
import { randomInt } from 'node:crypto'

export interface TestRange {
  /** e.g. 10.203.17.0/24 */
  cidr: string
  /** first address, .1 */
  gateway: string
  /** a.b.c. — append the host part */
  base: string
}

/** `count` distinct, consecutive /24s. */
export function testRanges(count: number): TestRange[] {
  const start = randomInt(0, 8 * 256 - count) // /24 index inside the /13
  return Array.from({ length: count }, (_, i) => {
    const n = start + i
    const base = `10.${200 + Math.floor(n / 256)}.${n % 256}.`
    return { cidr: `${base}0/24`, gateway: `${base}1`, base }
  })
}
