// Test-only: which IP families a plugin suite runs with. The reliability suites (kill points,
// churn) run once per family setting from thin copies that set FLATNET_TEST_IP_FAMILY before
// importing them (plugin/*.dual.reliability.test.ts); unset means IPv4 only, as before.
import { randomInt } from 'node:crypto'

export type TestFamilies = 'ipv4' | 'ipv6' | 'dual'

export const testFamilies: TestFamilies = ((): TestFamilies => {
  const v = process.env.FLATNET_TEST_IP_FAMILY ?? 'ipv4'
  if (v !== 'ipv4' && v !== 'ipv6' && v !== 'dual') throw new Error(`FLATNET_TEST_IP_FAMILY=${v}: expected ipv4, ipv6 or dual`)
  return v
})()

/**
 * A random IPv6 ULA pod range of the given size, with its gateway (::1) and the text its
 * addresses start with. Every suite's node is a namespace of its own: a collision costs nothing.
 */
export function testRange6(prefixLength = 64): { cidr: string; gateway: string; base: string } {
  const base = `fd00:fe${randomInt(0, 256).toString(16).padStart(2, '0')}:${randomInt(1, 0xffff).toString(16)}::`
  return { cidr: `${base}/${prefixLength}`, gateway: `${base}1`, base }
}

/** The `ranges` of a suite's conflist: its IPv4 range, an IPv6 one, or both (IPv4 first). */
export function rangesFor(families: TestFamilies, v4cidr: string, v6prefixLength = 64): string[] {
  const v6 = testRange6(v6prefixLength).cidr
  return families === 'ipv4' ? [v4cidr] : families === 'ipv6' ? [v6] : [v4cidr, v6]
}
