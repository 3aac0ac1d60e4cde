// Next-free rotation over a pod range: the addresses after the last one handed out, wrapping
// around, skipping those in use. An IPv6 /64 holds 2^64 addresses, so the work must never depend
// on the size of the range: each step either skips a value of `inUse` or yields a candidate, and
// a value is never looked at twice, so finding a free address costs at most inUse.size + 1 looks
// (plus one per candidate the caller turns down). Pure: ipam/rotation.test.ts counts the looks.

/**
 * Candidates in rotation order from `start` (clamped into [first, last]). `inUse` may grow while
 * iterating (a caller that loses a race adds what it learnt): the new values are skipped too.
 */
export function* rotationCandidates(first: bigint, last: bigint, start: bigint, inUse: ReadonlySet<bigint>): Generator<bigint> {
  const size = last - first + 1n
  if (size <= 0n) return
  const from = start < first || start > last ? first : start
  for (let k = 0n; k < size; k++) {
    // Stop as soon as every address is known to be taken, however large the range.
    if (BigInt(inUse.size) >= size) return
    const value = first + ((from - first + k) % size)
    if (!inUse.has(value)) yield value
  }
}
