// What the kernel says, for assertions: links, addresses, routes and sysctls of the host or of a
// namespace, read with iproute2's JSON output (`ip -j`). Tests assert on these, never on what a
// plugin claims it did. `ns` undefined means the host (the namespace this process runs in).
import type { Netns } from './netns.js'
import { run, runOk } from './run.js'

export type Where = Netns | string | undefined

export interface LinkState {
  ifindex: number
  ifname: string
  /** e.g. ['BROADCAST','MULTICAST','UP','LOWER_UP'] */
  flags: string[]
  mtu: number
  operstate: string
  /** MAC address */
  address?: string
  /** Kind from IFLA_LINKINFO: 'veth', 'bridge', … (absent for lo and physical devices). */
  kind?: string
  /** Set for a veth whose peer lives in another namespace. */
  link_netnsid?: number
}

export interface AddressState {
  family: 'inet' | 'inet6'
  local: string
  prefixlen: number
  scope: string
}

export interface RouteState {
  /** Always a CIDR: `default` is reported as 0.0.0.0/0 (or ::/0), a host route as a.b.c.d/32. */
  dst: string
  gateway?: string
  dev?: string
  /** Absent means universe (global). */
  scope?: string
  protocol?: string
  prefsrc?: string
  /** Absent means unicast. */
  type?: string
  flags: string[]
}

export interface RouteLookup {
  dst: string
  gateway?: string
  dev: string
  prefsrc?: string
}

function ipArgs(where: Where): string[] {
  if (where === undefined) return ['ip']
  return ['ip', '-n', typeof where === 'string' ? where : where.name]
}

function whereName(where: Where): string {
  if (where === undefined) return 'host'
  return `netns ${typeof where === 'string' ? where : where.name}`
}

async function ipJson<T>(where: Where, args: readonly string[]): Promise<T> {
  const argv = [...ipArgs(where), '-j', ...args]
  const { stdout } = await runOk(argv)
  try {
    // iproute2 prints nothing at all (not "[]") for some empty dumps.
    return JSON.parse(stdout.trim() || '[]') as T
  } catch (err) {
    throw new Error(`${argv.join(' ')} (${whereName(where)}): unparsable JSON: ${(err as Error).message}`)
  }
}

interface RawLink {
  ifindex: number
  ifname: string
  flags: string[]
  mtu: number
  operstate: string
  address?: string
  link_netnsid?: number
  linkinfo?: { info_kind?: string }
}

export async function links(where?: Where): Promise<LinkState[]> {
  const raw = await ipJson<RawLink[]>(where, ['-d', 'link', 'show'])
  return raw.map((l) => ({
    ifindex: l.ifindex,
    ifname: l.ifname,
    flags: l.flags,
    mtu: l.mtu,
    operstate: l.operstate,
    address: l.address,
    kind: l.linkinfo?.info_kind,
    link_netnsid: l.link_netnsid,
  }))
}

/** The link named `ifname`, or undefined when there is none. */
export async function link(ifname: string, where?: Where): Promise<LinkState | undefined> {
  return (await links(where)).find((l) => l.ifname === ifname)
}

interface RawAddrLink {
  ifname: string
  addr_info: Array<{ family: string; local: string; prefixlen: number; scope: string }>
}

/** Addresses per interface name (IPv4 and IPv6, including link-local). */
export async function addresses(where?: Where): Promise<Map<string, AddressState[]>> {
  const raw = await ipJson<RawAddrLink[]>(where, ['addr', 'show'])
  const out = new Map<string, AddressState[]>()
  for (const l of raw) {
    out.set(
      l.ifname,
      l.addr_info.filter((a) => a.family === 'inet' || a.family === 'inet6').map((a) => ({ family: a.family as 'inet' | 'inet6', local: a.local, prefixlen: a.prefixlen, scope: a.scope })),
    )
  }
  return out
}

/** IPv4 addresses of one interface as `a.b.c.d/len` (empty when the interface has none or is absent). */
export async function ipv4Of(ifname: string, where?: Where): Promise<string[]> {
  const all = (await addresses(where)).get(ifname) ?? []
  return all.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`)
}

interface RawRoute {
  dst: string
  gateway?: string
  dev?: string
  scope?: string
  protocol?: string
  prefsrc?: string
  type?: string
  flags: string[]
}

function canonicalDst(dst: string, family: 4 | 6): string {
  if (dst === 'default') return family === 4 ? '0.0.0.0/0' : '::/0'
  if (dst.includes('/')) return dst
  return `${dst}/${family === 4 ? 32 : 128}`
}

/** Routes of the main table (`ip route show`), one family. */
export async function routes(where?: Where, family: 4 | 6 = 4): Promise<RouteState[]> {
  const raw = await ipJson<RawRoute[]>(where, [`-${family}`, 'route', 'show', 'table', 'main'])
  return raw.map((r) => ({ ...r, flags: r.flags ?? [], dst: canonicalDst(r.dst, family) }))
}

/** How the kernel would send a packet to `address` (`ip route get`); sends nothing. */
export async function routeGet(address: string, where?: Where): Promise<RouteLookup> {
  const raw = await ipJson<RouteLookup[]>(where, ['route', 'get', address])
  const first = raw[0]
  if (!first) throw new Error(`ip route get ${address} (${whereName(where)}): no answer`)
  return { dst: first.dst, gateway: first.gateway, dev: first.dev, prefsrc: first.prefsrc }
}

/** A sysctl value, e.g. `net.ipv4.ip_forward`, as the namespace sees it. */
export async function sysctl(key: string, where?: Where): Promise<string> {
  const path = `/proc/sys/${key.replaceAll('.', '/')}`
  const argv = where === undefined ? ['cat', path] : ['ip', 'netns', 'exec', typeof where === 'string' ? where : where.name, 'cat', path]
  const result = await run(argv)
  if (result.code !== 0) throw new Error(`read ${key} (${whereName(where)}): ${result.stderr.trim()}`)
  return result.stdout.trim()
}
