// Address text <-> the byte form netlink carries. IPv4 is parsed by hand (the plugin's hot
// path); IPv6 goes through ip-address. Neither node:net (~3 ms to load: streams, dns) nor
// ip-address is loaded for IPv4 (the plugin's bundle loads ip-address on first use).
import { Address6 } from 'ip-address'
import type { IpFamily } from '../ipam/index.js'

export type { IpFamily }
export const AF_INET = 2
export const AF_INET6 = 10

// node:net's own IPv4 syntax (lib/internal/net.js): dotted decimal, no leading zeros.
const IPV4 = /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])$/
const isIPv4 = (ip: string) => IPV4.test(ip)
const isIPv6 = (ip: string) => process.getBuiltinModule('node:net').isIPv6(ip)

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
  if (isIPv6(ip)) {
    // toByteArray drops leading zero bytes (and may add a sign byte): normalise to 16.
    const bytes = new Address6(ip).toByteArray().slice(-16)
    return Buffer.from([...new Array<number>(16 - bytes.length).fill(0), ...bytes])
  }
  throw new Error(`not an IP address: ${JSON.stringify(ip)}`)
}

export function bytesToIp(b: Buffer | Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
  if (b.length === 16) return Address6.fromByteArray(Array.from(b)).correctForm()
  throw new Error(`address of ${b.length} bytes`)
}
