// Address text <-> the byte form netlink carries, both families by hand: neither node:net (~3 ms
// to load: streams, dns) nor an address library is loaded on the plugin's path.
import type { IpFamily } from '../ipam/index.js'
import { bytesToIpv6, formatIpv6, ipv6ToBytes, isIpv6 as isIPv6, parseIpv6 } from './ipv6.js'

export type { IpFamily }
export const AF_INET = 2
export const AF_INET6 = 10

// node:net's own IPv4 syntax (lib/internal/net.js): dotted decimal, no leading zeros.
const IPV4 = /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])$/
const isIPv4 = (ip: string) => IPV4.test(ip)

export function familyOf(ip: string): IpFamily {
  if (isIPv4(ip)) return 4
  if (isIPv6(ip)) return 6
  throw new Error(`not an IP address: ${JSON.stringify(ip)}`)
}

export function afOf(family: IpFamily): number {
  return family === 4 ? AF_INET : AF_INET6
}

export function ipToBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number))
  const v6 = parseIpv6(ip)
  if (v6 !== undefined) return ipv6ToBytes(v6)
  throw new Error(`not an IP address: ${JSON.stringify(ip)}`)
}

export function bytesToIp(b: Buffer | Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
  if (b.length === 16) return formatIpv6(bytesToIpv6(b))
  throw new Error(`address of ${b.length} bytes`)
}
