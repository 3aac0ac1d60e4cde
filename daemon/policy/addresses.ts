// Address arithmetic for policy peers: an ipBlock is `cidr` minus its `except` blocks, which
// nftables cannot subtract inside a set, so it becomes a list of address ranges (`a-b`, or the
// CIDR itself when nothing is cut out). Both families, through ipam's bigint CIDR math.
import { cidrSize, formatAddress, parseAddress, parseCidr, type Cidr, type IpFamily } from '../../ipam/index.js'

/** One interval-set element per range, in the family of `cidr`; empty when the block does not parse. */
export function ipBlockRanges(cidr: string, except: readonly string[] = []): { family: IpFamily; elements: string[] } | undefined {
  let block: Cidr
  try {
    block = parseCidr(cidr)
  } catch {
    return undefined // validation refuses it upstream; a block flatnet cannot read allows nothing
  }
  const cuts: Array<[bigint, bigint]> = []
  for (const text of except) {
    let c: Cidr
    try {
      c = parseCidr(text)
    } catch {
      continue
    }
    if (c.family !== block.family) continue
    cuts.push([c.network, c.network + cidrSize(c) - 1n])
  }
  if (cuts.length === 0) return { family: block.family, elements: [block.text] }
  cuts.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  const first = block.network
  const last = block.network + cidrSize(block) - 1n
  const elements: string[] = []
  let next = first
  for (const [lo, hi] of cuts) {
    if (hi < next) continue
    if (lo > last) break
    if (lo > next) elements.push(rangeText(block.family, next, lo - 1n))
    next = hi + 1n
    if (next > last) break
  }
  if (next <= last) elements.push(rangeText(block.family, next, last))
  return { family: block.family, elements }
}

function rangeText(family: IpFamily, lo: bigint, hi: bigint): string {
  return lo === hi ? formatAddress(family, lo) : `${formatAddress(family, lo)}-${formatAddress(family, hi)}`
}

/** The family of an address, or undefined when it does not parse. */
export function addressFamily(text: string): IpFamily | undefined {
  return addressValue(text)?.family
}

/**
 * An address as a number. IPv6 in its plain forms (hex groups, one `::`) is read here: ip-address
 * takes ~100 µs per IPv6 address, which made 5000 dual-stack pods cost a second per sync
 * (bench/policy.ts); other forms (an embedded IPv4 part) go through ipam's parser.
 */
function addressValue(text: string): { family: IpFamily; value: bigint } | undefined {
  if (text.includes(':') && !text.includes('.') && /^[0-9a-fA-F:]+$/.test(text)) {
    const halves = text.split('::')
    if (halves.length <= 2) {
      const head = halves[0] ? halves[0].split(':') : []
      const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : []
      const missing = 8 - head.length - tail.length
      if ((halves.length === 2 ? missing >= 1 : missing === 0) && [...head, ...tail].every((g) => g.length >= 1 && g.length <= 4)) {
        let value = 0n
        for (const g of [...head, ...Array<string>(missing).fill('0'), ...tail]) value = (value << 16n) | BigInt(parseInt(g, 16))
        return { family: 6, value }
      }
    }
  }
  try {
    return parseAddress(text)
  } catch {
    return undefined
  }
}

/** Whether `address` lies in one of `subnets` (CIDR texts). */
export function inSubnets(address: string, subnets: readonly Cidr[]): boolean {
  const a = addressValue(address)
  if (!a) return false
  return subnets.some((s) => s.family === a.family && a.value >= s.network && a.value < s.network + cidrSize(s))
}
