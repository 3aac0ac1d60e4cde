// Spec versions flatnet speaks, and the result encoding that differs between them.

import { atLeast, type CniVersion } from '../conf/cniVersions.js'

export { SUPPORTED_VERSIONS, LATEST, isSupported, atLeast, type CniVersion } from '../conf/cniVersions.js'

export interface ResultInterface {
  name: string
  mac: string
  sandbox?: string
  mtu?: number
}
export interface ResultIp {
  address: string
  gateway: string
  interface: number
}
export interface ResultRoute {
  dst: string
  gw?: string
}
export interface Dns {
  nameservers?: string[]
  domain?: string
  search?: string[]
  options?: string[]
}
export interface Result {
  interfaces: ResultInterface[]
  ips: ResultIp[]
  routes: ResultRoute[]
  dns: Dns
}

/**
 * The result as the given version prints it: 0.3.x and 0.4.0 carry "version" on each ips
 * entry, 1.x dropped it. `mtu` on interfaces only exists from 1.1.0 on.
 */
export function encodeResult(version: CniVersion, r: Result): Record<string, unknown> {
  const legacy = !atLeast(version, '1.0.0')
  return {
    cniVersion: version,
    interfaces: r.interfaces.map((i) => {
      const out: Record<string, unknown> = { name: i.name, mac: i.mac }
      if (i.mtu !== undefined && atLeast(version, '1.1.0')) out.mtu = i.mtu
      if (i.sandbox !== undefined) out.sandbox = i.sandbox
      return out
    }),
    ips: r.ips.map((ip) => (legacy ? { version: ip.address.includes(':') ? '6' : '4', ...ip } : { ...ip })),
    routes: r.routes,
    dns: r.dns,
  }
}
