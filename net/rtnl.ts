// The few rtnetlink operations flatnet needs, over the `netlink` package. Each socket belongs to
// the namespace it was created in (see netns.ts), so "do X in the pod" means "use the pod's socket".
import { createRtNetlink, type RtNetlinkSocket } from 'netlink/dist/rt/rt.js'
import { FlagsNew } from 'netlink/dist/constants.js'
import type { RouteMessage } from 'netlink/dist/rt/structs.js'
import { afOf, bytesToIp, ipToBytes, type Family } from './ipbytes.js'
import { withNetns, type NetnsHandle } from './netns.js'

export type Rtnl = RtNetlinkSocket

/** Opens an rtnetlink socket in the current namespace, or inside `ns`. */
export function openRtnl(ns?: NetnsHandle): Rtnl {
  // The package's .d.ts wrongly requires buffer sizes (FACTS.md); they are optional at runtime.
  const open = () => createRtNetlink({} as Parameters<typeof createRtNetlink>[0])
  return ns ? withNetns(ns, open) : open()
}

export function closeRtnl(s: Rtnl): void {
  s.socket.close()
}

/** The errno name of a rejected netlink request ('EEXIST', 'ENODEV', …), if it is one. */
export function errnoOf(e: unknown): string | undefined {
  const m = /Request rejected: (E[A-Z0-9]+)/.exec(String((e as Error)?.message ?? e))
  return m?.[1]
}

/** Rethrows a netlink error with the operation and object named, keeping the errno visible. */
export function describe(op: string, e: unknown): Error {
  const err = new Error(`${op}: ${errnoOf(e) ?? (e as Error)?.message ?? String(e)}`)
  ;(err as NodeJS.ErrnoException).code = errnoOf(e)
  return err
}

const CREATE_EXCL = FlagsNew.CREATE | FlagsNew.EXCL

export interface LinkInfo {
  index: number
  name: string
  mtu: number
  mac: string
  up: boolean
  alias?: string
  kind?: string
}

function macOf(b?: Buffer): string {
  return b ? Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':') : ''
}

// IFLA_LINKINFO is returned raw by the package; we only need IFLA_INFO_KIND from it.
function kindOf(linkinfo?: Buffer): string | undefined {
  if (!linkinfo) return undefined
  for (let off = 0; off + 4 <= linkinfo.length; ) {
    const len = linkinfo.readUInt16LE(off)
    const type = linkinfo.readUInt16LE(off + 2) & 0x3fff
    if (len < 4) break
    if (type === IFLA_INFO_KIND) return linkinfo.subarray(off + 4, off + len).toString().replace(/\0+$/, '')
    off += (len + 3) & ~3
  }
  return undefined
}

function toLinkInfo(m: { data: { index?: number; flags?: { up?: true } }; attrs: { ifname?: string; mtu?: number; address?: Buffer; ifalias?: string; linkinfo?: Buffer } }): LinkInfo {
  return {
    index: m.data.index ?? 0,
    name: m.attrs.ifname ?? '',
    mtu: m.attrs.mtu ?? 0,
    mac: macOf(m.attrs.address),
    up: !!m.data.flags?.up,
    alias: m.attrs.ifalias || undefined,
    kind: kindOf(m.attrs.linkinfo),
  }
}

export async function linkByName(s: Rtnl, name: string): Promise<LinkInfo | undefined> {
  try {
    const [m] = await s.getLink({}, { ifname: name })
    return m ? toLinkInfo(m) : undefined
  } catch (e) {
    if (errnoOf(e) === 'ENODEV') return undefined
    throw describe(`get link ${name}`, e)
  }
}

export async function linkByIndex(s: Rtnl, index: number): Promise<LinkInfo | undefined> {
  try {
    const [m] = await s.getLink({ index })
    return m ? toLinkInfo(m) : undefined
  } catch (e) {
    if (errnoOf(e) === 'ENODEV') return undefined
    throw describe(`get link #${index}`, e)
  }
}

export async function listLinks(s: Rtnl): Promise<LinkInfo[]> {
  try {
    return (await s.getLinks()).map(toLinkInfo)
  } catch (e) {
    throw describe('list links', e)
  }
}

// Nested attribute encoding for IFLA_LINKINFO, which the package leaves to us (FACTS.md).
const IFLA_IFNAME = 3
const IFLA_MTU = 4
const IFLA_NET_NS_FD = 28
const IFLA_INFO_KIND = 1
const IFLA_INFO_DATA = 2
const VETH_INFO_PEER = 1
const NLA_F_NESTED = 0x8000

function nlattr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length
  const out = Buffer.alloc((len + 3) & ~3)
  out.writeUInt16LE(len, 0)
  out.writeUInt16LE(type, 2)
  payload.copy(out, 4)
  return out
}
const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b }
const cstr = (v: string) => Buffer.concat([Buffer.from(v), Buffer.alloc(1)])

export interface VethSpec {
  /** Name of the end created in the socket's namespace (the host end). */
  name: string
  /** Name of the other end. */
  peerName: string
  /** Where the other end is born; it never exists anywhere else, even briefly. */
  peerNetns?: NetnsHandle
  mtu?: number
}

export async function createVeth(s: Rtnl, v: VethSpec): Promise<void> {
  const peerAttrs = [nlattr(IFLA_IFNAME, cstr(v.peerName))]
  if (v.mtu) peerAttrs.push(nlattr(IFLA_MTU, u32(v.mtu)))
  if (v.peerNetns) peerAttrs.push(nlattr(IFLA_NET_NS_FD, u32(v.peerNetns.fd)))
  const peer = Buffer.concat([Buffer.alloc(16) /* struct ifinfomsg, all zero */, ...peerAttrs])
  const linkinfo = Buffer.concat([
    nlattr(IFLA_INFO_KIND, cstr('veth')),
    nlattr(IFLA_INFO_DATA | NLA_F_NESTED, nlattr(VETH_INFO_PEER | NLA_F_NESTED, peer)),
  ])
  try {
    await s.newLink({}, { ifname: v.name, mtu: v.mtu, linkinfo }, { flags: CREATE_EXCL })
  } catch (e) {
    throw describe(`create veth ${v.name} (peer ${v.peerName}${v.peerNetns ? ` in ${v.peerNetns.path}` : ''})`, e)
  }
}

/** Deletes a link; false when it was already gone. */
export async function deleteLink(s: Rtnl, link: { index: number } | { name: string }): Promise<boolean> {
  try {
    if ('index' in link) await s.delLink({ index: link.index })
    else await s.delLink({}, { ifname: link.name })
    return true
  } catch (e) {
    if (errnoOf(e) === 'ENODEV') return false
    throw describe(`delete link ${'index' in link ? `#${link.index}` : link.name}`, e)
  }
}

export async function setLinkUp(s: Rtnl, index: number, name = `#${index}`): Promise<void> {
  try {
    await s.setLink({ index, flags: { up: true }, change: { up: true } })
  } catch (e) {
    throw describe(`set link ${name} up`, e)
  }
}

export async function setLinkAlias(s: Rtnl, index: number, alias: string, name = `#${index}`): Promise<void> {
  try {
    await s.setLink({ index }, { ifalias: alias })
  } catch (e) {
    throw describe(`set alias of link ${name}`, e)
  }
}

export interface AddressSpec { index: number; family: Family; address: string; prefixLength: number; linkName?: string }

export async function addAddress(s: Rtnl, a: AddressSpec): Promise<void> {
  const bytes = ipToBytes(a.address)
  try {
    await s.newAddress(
      { family: afOf(a.family), prefixlen: a.prefixLength, index: a.index, scope: 0 },
      { local: bytes, address: bytes },
      { flags: CREATE_EXCL },
    )
  } catch (e) {
    throw describe(`add address ${a.address}/${a.prefixLength} to ${a.linkName ?? `link #${a.index}`}`, e)
  }
}

/**
 * How long to wait for the kernel's answer (default: forever). A dump's parts can be lost when
 * the socket's receive buffer overflows; a daemon must not wait forever.
 */
export interface RequestLimit {
  timeoutMs?: number
}

export interface AddressInfo { index: number; family: Family; address: string; prefixLength: number }

export async function listAddresses(s: Rtnl, index?: number, opts: RequestLimit = {}): Promise<AddressInfo[]> {
  try {
    const msgs = await s.getAddresses(undefined, undefined, { timeout: opts.timeoutMs })
    return msgs
      .filter((m) => index === undefined || m.data.index === index)
      .map((m) => ({
        index: m.data.index ?? 0,
        family: (m.data.family === afOf(6) ? 6 : 4) as Family,
        address: bytesToIp((m.attrs.local ?? m.attrs.address)!),
        prefixLength: m.data.prefixlen ?? 0,
      }))
  } catch (e) {
    throw describe('list addresses', e)
  }
}

export type RouteScopeName = 'universe' | 'link' | 'host'

export interface RouteSpec {
  family: Family
  dst: string
  dstLength: number
  gateway?: string
  oif?: number
  scope?: RouteScopeName
  /**
   * rtm_protocol: who owns the route (flatnetd marks its own). Default: boot (3), like `ip route add`.
   * On delete: only a route of this protocol is deleted (default: any protocol).
   */
  protocol?: number
  table?: number
  /** Gateway is reachable on oif even without a covering connected route. */
  onlink?: boolean
}

const SCOPE = { universe: 0, link: 253, host: 254 } as const
const RTNH_F_ONLINK = 4 // no typed flag in the package (FACTS.md)
const RT_TABLE_MAIN = 254

function routeText(r: RouteSpec): string {
  return `${r.dst}/${r.dstLength}${r.gateway ? ` via ${r.gateway}` : ''}${r.oif ? ` dev #${r.oif}` : ''}`
}

function routeMessage(r: RouteSpec, forDelete: boolean) {
  const table = r.table ?? RT_TABLE_MAIN
  const data = {
    family: afOf(r.family),
    dstLen: r.dstLength,
    // table ids above 255 only fit the attribute (FACTS.md)
    table: table > 255 ? 252 : table,
    // A delete names the protocol only when asked to, so that flatnetd's deletes can never hit a
    // route someone else owns (the kernel matches rtm_protocol when it is non-zero).
    protocol: forDelete ? (r.protocol ?? 0) : (r.protocol ?? 3),
    // a delete with scope NOWHERE matches routes of any scope (FACTS.md: link-scope routes)
    scope: forDelete ? 255 : SCOPE[r.scope ?? (r.gateway ? 'universe' : 'link')],
    type: 1 /* UNICAST */,
    flags: r.onlink ? ({ __unknown: RTNH_F_ONLINK } as const) : {},
  }
  const attrs: { dst: Buffer; gateway?: Buffer; oif?: number; table?: number } = { dst: ipToBytes(r.dst), table }
  if (r.gateway) attrs.gateway = ipToBytes(r.gateway)
  if (r.oif) attrs.oif = r.oif
  return { data, attrs }
}

export async function addRoute(s: Rtnl, r: RouteSpec, opts: { replace?: boolean } = {}): Promise<void> {
  const { data, attrs } = routeMessage(r, false)
  try {
    await s.newRoute(data, attrs, { flags: opts.replace ? FlagsNew.CREATE | FlagsNew.REPLACE : CREATE_EXCL })
  } catch (e) {
    throw describe(`add route ${routeText(r)}`, e)
  }
}

/** Deletes a route; false when it was already gone. */
export async function deleteRoute(s: Rtnl, r: RouteSpec): Promise<boolean> {
  const { data, attrs } = routeMessage(r, true)
  try {
    await s.delRoute(data, attrs)
    return true
  } catch (e) {
    if (errnoOf(e) === 'ESRCH' || errnoOf(e) === 'ENODEV') return false
    throw describe(`delete route ${routeText(r)}`, e)
  }
}

export interface RouteInfo {
  family: Family
  dst: string
  dstLength: number
  gateway?: string
  oif?: number
  scope: number
  protocol: number
  table: number
  type: number
  /** RTA_PRIORITY (the metric); 0 when absent. Part of a route's identity, with dst and tos. */
  priority: number
}

function toRouteInfo(m: RouteMessage): RouteInfo {
  const family: Family = m.data.family === afOf(6) ? 6 : 4
  const dst = m.attrs.dst ? bytesToIp(m.attrs.dst) : family === 4 ? '0.0.0.0' : '::'
  const protocol = m.data.protocol
  const scope = m.data.scope
  const type = m.data.type
  return {
    family,
    dst,
    dstLength: m.data.dstLen ?? 0,
    gateway: m.attrs.gateway ? bytesToIp(m.attrs.gateway) : undefined,
    oif: m.attrs.oif,
    scope: typeof scope === 'number' ? scope : SCOPE_BY_NAME[scope ?? 'UNIVERSE'] ?? 0,
    protocol: typeof protocol === 'number' ? protocol : PROTO_BY_NAME[protocol ?? ''] ?? 0,
    table: m.attrs.table ?? m.data.table ?? 0,
    type: typeof type === 'number' ? type : type === 'UNICAST' ? 1 : 0,
    priority: m.attrs.priority ?? 0,
  }
}
const SCOPE_BY_NAME: Record<string, number> = { UNIVERSE: 0, SITE: 200, LINK: 253, HOST: 254, NOWHERE: 255 }
const PROTO_BY_NAME: Record<string, number> = { REDIRECT: 1, KERNEL: 2, BOOT: 3, STATIC: 4 }

/** Unicast routes of one family in one table (main by default). */
export async function listRoutes(s: Rtnl, family: Family, table = RT_TABLE_MAIN, opts: RequestLimit = {}): Promise<RouteInfo[]> {
  try {
    const msgs = await s.getRoutes({ family: afOf(family) }, undefined, { timeout: opts.timeoutMs })
    return msgs.map(toRouteInfo).filter((r) => r.table === table && r.type === 1)
  } catch (e) {
    throw describe('list routes', e)
  }
}
