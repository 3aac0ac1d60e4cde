// IPv6 text <-> 128-bit value, by hand: the `ip-address` package (~90 KB) and node:net together
// cost a dual-stack ADD ~8 ms of loading for what is a few lines here. Syntax as RFC 4291 2.2
// (hex groups, one "::", an optional trailing dotted IPv4); output as RFC 5952 (lowercase, no
// leading zeros, the longest run of two or more zero groups as "::", the first on a tie).
// net/ipv6.test.ts checks both against ip-address on random and edge-case addresses.

const GROUP = /^[0-9a-fA-F]{1,4}$/
const DOTTED = /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])$/

/** The 8 groups of a textual IPv6 address, or undefined when it is not one. */
function groupsOf(text: string): number[] | undefined {
  if (text.length > 45 || text.length < 2) return undefined
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const parse = (part: string): number[] | undefined => {
    if (part === '') return []
    const out: number[] = []
    const fields = part.split(':')
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!
      if (i === fields.length - 1 && f.includes('.')) {
        if (!DOTTED.test(f)) return undefined
        const [a, b, c, d] = f.split('.').map(Number) as [number, number, number, number]
        out.push((a << 8) | b, (c << 8) | d)
      } else {
        if (!GROUP.test(f)) return undefined
        out.push(parseInt(f, 16))
      }
    }
    return out
  }
  const head = parse(halves[0]!)
  if (!head) return undefined
  if (halves.length === 1) return head.length === 8 ? head : undefined
  const tail = parse(halves[1]!)
  if (!tail || head.length + tail.length > 7) return undefined
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail]
}

export function isIpv6(text: string): boolean {
  return groupsOf(text) !== undefined
}

/** The address's value, or undefined when `text` is not an IPv6 address. */
export function parseIpv6(text: string): bigint | undefined {
  const groups = groupsOf(text)
  if (!groups) return undefined
  let v = 0n
  for (const g of groups) v = (v << 16n) | BigInt(g)
  return v
}

/** RFC 5952 text of a 128-bit value. */
export function formatIpv6(value: bigint): string {
  const groups: number[] = []
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn))
  let bestStart = -1
  let bestLength = 1 // a single zero group is never compressed
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':')
  if (bestStart < 0) return hex(groups)
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`
}

export function ipv6ToBytes(value: bigint): Buffer {
  const out = Buffer.alloc(16)
  for (let i = 0; i < 16; i++) out[i] = Number((value >> BigInt((15 - i) * 8)) & 0xffn)
  return out
}

export function bytesToIpv6(b: Buffer | Uint8Array): bigint {
  let v = 0n
  for (let i = 0; i < 16; i++) v = (v << 8n) | BigInt(b[i]!)
  return v
}
