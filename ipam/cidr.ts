// CIDR math for both IPv4 and IPv6, with addresses as bigint so one code path serves both
// families. Parsing and canonical formatting are by hand for both (IPv6: net/ipv6.ts, checked
// against the ip-address package in its test), so the plugin loads no address library at all.
import { formatIpv6, parseIpv6 } from '../net/ipv6.js'

export type IpFamily = 4 | 6

/** A network in canonical form: `network` has no host bits set, `text` is `a.b.c.d/n` (or v6). */
export interface Cidr {
  family: IpFamily
  network: bigint
  prefixLength: number
  text: string
}

/** A bad CIDR or address; the message names the input and what is wrong with it. */
export class CidrError extends Error {
  override name = 'CidrError'
}

export function addressBits(family: IpFamily): number {
  return family === 4 ? 32 : 128
}

// A few forms are refused in configuration before the address is parsed: a prefix on what should
// be a bare address, zero-padded prefixes like `/08`, IPv6 zones like `%eth0`.
const prefixSyntax = /^(0|[1-9][0-9]{0,2})$/

// node:net's IPv4 syntax (lib/internal/net.js), without loading node:net (~3 ms) for it.
const IPV4 = /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])$/

export function parseAddress(text: string): { family: IpFamily; value: bigint } {
  if (typeof text !== 'string' || text === '') throw new CidrError(`invalid IP address ${JSON.stringify(text)}: empty`)
  if (text.includes('/')) throw new CidrError(`invalid IP address ${JSON.stringify(text)}: expected an address without a prefix length`)
  if (text.includes('%')) throw new CidrError(`invalid IP address ${JSON.stringify(text)}: zone identifiers are not supported`)
  if (text.includes(':')) {
    const value = parseIpv6(text)
    if (value === undefined) throw new CidrError(`invalid IP address ${JSON.stringify(text)}: not a valid IPv6 address`)
    return { family: 6, value }
  }
  // Dotted decimal, no leading zeros (what the ip-address package accepted before).
  if (!IPV4.test(text)) throw new CidrError(`invalid IP address ${JSON.stringify(text)}: not a valid IPv4 address`)
  const [a, b, c, d] = text.split('.').map(Number) as [number, number, number, number]
  return { family: 4, value: BigInt(a * 0x1000000 + b * 0x10000 + c * 0x100 + d) }
}

export function formatAddress(family: IpFamily, value: bigint): string {
  const max = (1n << BigInt(addressBits(family))) - 1n
  if (value < 0n || value > max) throw new CidrError(`address value ${value} is out of range for IPv${family}`)
  if (family === 6) return formatIpv6(value)
  const v = Number(value)
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`
}

function hostMask(family: IpFamily, prefixLength: number): bigint {
  return (1n << BigInt(addressBits(family) - prefixLength)) - 1n
}

function makeCidr(family: IpFamily, network: bigint, prefixLength: number): Cidr {
  return { family, network, prefixLength, text: `${formatAddress(family, network)}/${prefixLength}` }
}

export function parseCidr(text: string): Cidr {
  if (typeof text !== 'string') throw new CidrError(`invalid CIDR ${JSON.stringify(text)}: not a string`)
  const slash = text.indexOf('/')
  if (slash < 0) throw new CidrError(`invalid CIDR ${JSON.stringify(text)}: missing /prefix-length`)
  const addressText = text.slice(0, slash)
  const prefixText = text.slice(slash + 1)
  let address: { family: IpFamily; value: bigint }
  try {
    address = parseAddress(addressText)
  } catch (err) {
    throw new CidrError(`invalid CIDR ${JSON.stringify(text)}: ${(err as Error).message}`)
  }
  const bits = addressBits(address.family)
  if (!prefixSyntax.test(prefixText)) throw new CidrError(`invalid CIDR ${JSON.stringify(text)}: prefix length ${JSON.stringify(prefixText)} is not a number`)
  const prefixLength = Number(prefixText)
  if (prefixLength > bits) throw new CidrError(`invalid CIDR ${JSON.stringify(text)}: prefix length ${prefixLength} is out of range 0-${bits} for IPv${address.family}`)
  const hostBits = address.value & hostMask(address.family, prefixLength)
  if (hostBits !== 0n) {
    const suggestion = makeCidr(address.family, address.value - hostBits, prefixLength).text
    throw new CidrError(`${text}: host bits set; did you mean ${suggestion}?`)
  }
  return makeCidr(address.family, address.value, prefixLength)
}

export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(addressBits(c.family) - c.prefixLength)
}

export function cidrContains(c: Cidr, family: IpFamily, value: bigint): boolean {
  return family === c.family && value >= c.network && value < c.network + cidrSize(c)
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false
  // Two aligned blocks overlap exactly when one contains the other's start.
  return cidrContains(a, b.family, b.network) || cidrContains(b, a.family, a.network)
}

function checkChildPrefix(parent: Cidr, prefixLength: number): void {
  const bits = addressBits(parent.family)
  if (!Number.isInteger(prefixLength) || prefixLength < parent.prefixLength || prefixLength > bits) {
    throw new CidrError(`cannot split ${parent.text} into /${prefixLength} subnets: prefix length must be between ${parent.prefixLength} and ${bits}`)
  }
}

export function subnetCount(parent: Cidr, prefixLength: number): bigint {
  checkChildPrefix(parent, prefixLength)
  return 1n << BigInt(prefixLength - parent.prefixLength)
}

/** The index-th /prefixLength subnet of parent, counting from 0 at parent's start. */
export function subnetAt(parent: Cidr, prefixLength: number, index: bigint): Cidr {
  const count = subnetCount(parent, prefixLength)
  if (index < 0n || index >= count) throw new CidrError(`subnet index ${index} is out of range: ${parent.text} holds ${count} /${prefixLength} subnets`)
  const step = 1n << BigInt(addressBits(parent.family) - prefixLength)
  return makeCidr(parent.family, parent.network + index * step, prefixLength)
}

/** Inverse of subnetAt: undefined unless child lies inside parent and is no larger than it. */
export function subnetIndex(parent: Cidr, child: Cidr): bigint | undefined {
  if (child.family !== parent.family || child.prefixLength < parent.prefixLength) return undefined
  if (!cidrContains(parent, child.family, child.network)) return undefined
  const offset = child.network - parent.network
  const step = 1n << BigInt(addressBits(child.family) - child.prefixLength)
  // A parsed Cidr is always aligned; a hand-built one may not be.
  if (offset % step !== 0n) return undefined
  return offset / step
}

/** The addresses of a node's pod range that pods may get, and the gateway the host side holds. */
export interface PodRange {
  cidr: Cidr
  gateway: string
  first: bigint
  last: bigint
  /** Number of pod addresses (first..last). Exact up to 2^53; large IPv6 ranges are approximate. */
  capacity: number
}

export function podRange(c: Cidr): PodRange {
  const size = cidrSize(c)
  const gateway = c.network + 1n
  const first = c.network + 2n
  // IPv4 keeps the broadcast address out; IPv6 has no broadcast.
  const last = c.family === 4 ? c.network + size - 2n : c.network + size - 1n
  if (first > last) {
    throw new CidrError(`pod range ${c.text} is too small: it must hold a gateway and at least one pod address`)
  }
  return { cidr: c, gateway: formatAddress(c.family, gateway), first, last, capacity: Number(last - first + 1n) }
}
