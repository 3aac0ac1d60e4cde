// The few rtnetlink operations flatnet needs, encoded by hand (rtnlCodec.ts) over the `netlink`
// package's native socket (rtnlSocket.ts). Each socket belongs to the namespace it was created in
// (see netns.ts), so "do X in the pod" means "use the pod's socket".
import { ipToBytes, type IpFamily } from './ipbytes.js'
import { withNetns, type NetnsHandle } from './netns.js'
import {
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  NLA_F_NESTED,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RTM_DELLINK,
  RTM_DELROUTE,
  RTM_F_FIB_MATCH,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWROUTE,
  RTM_SETLINK,
  VETH_INFO_PEER,
  addressDumpMessage,
  IFA_F_NODAD,
  IF_OPER_UP,
  addressMessage,
  aliasAttr,
  cstr,
  ifnameAttr,
  linkMessage,
  skipStatsAttr,
  linkUp,
  linkinfoAttr,
  mtuAttr,
  nlattr,
  parseAddress,
  parseLink,
  parseRoute,
  routeDumpMessage,
  routeMessage,
  u32,
  type AddressInfo,
  type LinkInfo,
  type RouteInfo,
} from './rtnlCodec.js'
import { NetlinkError, isNetlinkErrno } from './netlinkError.js'
import { RtnlSocket } from './rtnlSocket.js'

export type { AddressInfo, LinkInfo, RouteInfo } from './rtnlCodec.js'
export type Rtnl = RtnlSocket
export { NetlinkError, isNetlinkErrno } from './netlinkError.js'
export { IFA_F_DADFAILED, IFA_F_NODAD, IFA_F_TENTATIVE, IF_OPER_UP } from './rtnlCodec.js'

const NLM_F_DUMP = 0x300

/** Opens an rtnetlink socket in the current namespace, or inside `ns`. */
export function openRtnl(ns?: NetnsHandle): Rtnl {
  const open = () => new RtnlSocket()
  return ns ? withNetns(ns, open) : open()
}

export function closeRtnl(s: Rtnl): void {
  s.close()
}

/**
 * Names the operation on a failure: a kernel refusal stays a NetlinkError (same errno, the
 * operation in its message); anything else becomes an Error saying what was attempted.
 */
export function describe(op: string, e: unknown): Error {
  if (e instanceof NetlinkError) return e.during(op)
  return new Error(`${op}: ${(e as Error)?.message ?? String(e)}`, { cause: e })
}

const CREATE_EXCL = NLM_F_CREATE | NLM_F_EXCL

async function getLink(s: Rtnl, request: Buffer): Promise<LinkInfo | undefined> {
  const [reply] = await s.request(RTM_GETLINK, request)
  return reply ? parseLink(reply) : undefined
}

export async function linkByName(s: Rtnl, name: string): Promise<LinkInfo | undefined> {
  try {
    return await getLink(s, linkMessage({}, [ifnameAttr(name)]))
  } catch (e) {
    if (isNetlinkErrno(e, 'ENODEV')) return undefined
    throw describe(`get link ${name}`, e)
  }
}

export async function linkByIndex(s: Rtnl, index: number): Promise<LinkInfo | undefined> {
  try {
    return await getLink(s, linkMessage({ index }))
  } catch (e) {
    if (isNetlinkErrno(e, 'ENODEV')) return undefined
    throw describe(`get link #${index}`, e)
  }
}

export async function listLinks(s: Rtnl): Promise<LinkInfo[]> {
  try {
    return (await s.request(RTM_GETLINK, linkMessage({}, [skipStatsAttr()]), NLM_F_DUMP)).map(parseLink)
  } catch (e) {
    throw describe('list links', e)
  }
}

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
  // IFLA_LINKINFO { kind "veth", data { VETH_INFO_PEER: ifinfomsg + the peer's attributes } }
  const peerAttrs = [nlattr(IFLA_IFNAME, cstr(v.peerName))]
  if (v.mtu) peerAttrs.push(nlattr(IFLA_MTU, u32(v.mtu)))
  if (v.peerNetns) peerAttrs.push(nlattr(IFLA_NET_NS_FD, u32(v.peerNetns.fd)))
  const peer = linkMessage({}, peerAttrs)
  const linkinfo = Buffer.concat([nlattr(IFLA_INFO_KIND, cstr('veth')), nlattr(IFLA_INFO_DATA | NLA_F_NESTED, nlattr(VETH_INFO_PEER | NLA_F_NESTED, peer))])
  const attrs = [ifnameAttr(v.name)]
  if (v.mtu) attrs.push(mtuAttr(v.mtu))
  attrs.push(linkinfoAttr(linkinfo))
  try {
    await s.request(RTM_NEWLINK, linkMessage({}, attrs), CREATE_EXCL)
  } catch (e) {
    throw describe(`create veth ${v.name} (peer ${v.peerName}${v.peerNetns ? ` in ${v.peerNetns.path}` : ''})`, e)
  }
}

/** Deletes a link; false when it was already gone. */
export async function deleteLink(s: Rtnl, link: { index: number } | { name: string }): Promise<boolean> {
  try {
    await s.request(RTM_DELLINK, 'index' in link ? linkMessage({ index: link.index }) : linkMessage({}, [ifnameAttr(link.name)]))
    return true
  } catch (e) {
    if (isNetlinkErrno(e, 'ENODEV')) return false
    throw describe(`delete link ${'index' in link ? `#${link.index}` : link.name}`, e)
  }
}

export async function setLinkUp(s: Rtnl, index: number, name = `#${index}`): Promise<void> {
  try {
    await s.request(RTM_SETLINK, linkMessage({ index, ...linkUp }))
  } catch (e) {
    throw describe(`set link ${name} up`, e)
  }
}

/**
 * Polls a link until it is operationally up (IF_OPER_UP), within `timeoutMs`. The kernel sets
 * operstate from a deferred work item after the request that brought carrier returned, and
 * IPv6 treats a link as ready (neighbour discovery, link-local address) only from then on. The
 * pauses between polls grow from 0 to 16 ms, so a link that is up at once costs one request.
 */
export async function waitForOperUp(s: Rtnl, index: number, name = `#${index}`, timeoutMs = 2000): Promise<LinkInfo> {
  const deadline = performance.now() + timeoutMs
  let pause = 0
  for (;;) {
    const link = await linkByIndex(s, index)
    if (!link) throw new Error(`wait for link ${name} to come up: it vanished`)
    if (link.operState === IF_OPER_UP) return link
    if (performance.now() >= deadline)
      throw new Error(`wait for link ${name} to come up: still operstate ${link.operState ?? 'unknown'} (carrier ${link.lowerUp ? 'on' : 'off'}) after ${timeoutMs} ms`)
    // The kernel's link watcher usually sets it within a few milliseconds of both ends coming up:
    // short pauses (one GETLINK costs tens of microseconds) keep the overshoot, which every dual
    // or IPv6 ADD pays, under 2 ms.
    await new Promise((resolve) => setTimeout(resolve, pause))
    pause = Math.min(2, pause + 1)
  }
}

export async function setLinkAlias(s: Rtnl, index: number, alias: string, name = `#${index}`): Promise<void> {
  try {
    await s.request(RTM_SETLINK, linkMessage({ index }, [aliasAttr(alias)]))
  } catch (e) {
    throw describe(`set alias of link ${name}`, e)
  }
}

export interface AddressSpec {
  index: number
  family: IpFamily
  address: string
  prefixLength: number
  linkName?: string
  /**
   * IPv6: add with IFA_F_NODAD. Without it the kernel keeps the address tentative for the whole
   * of duplicate address detection (1-2 s) and refuses routes through it meanwhile (EINVAL).
   */
  noDad?: boolean
}

export async function addAddress(s: Rtnl, a: AddressSpec): Promise<void> {
  try {
    await s.request(RTM_NEWADDR, addressMessage(a.family, a.prefixLength, a.index, ipToBytes(a.address), a.noDad ? IFA_F_NODAD : 0), CREATE_EXCL)
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

export async function listAddresses(s: Rtnl, index?: number, opts: RequestLimit = {}): Promise<AddressInfo[]> {
  try {
    const replies = await s.request(RTM_GETADDR, addressDumpMessage(), NLM_F_DUMP, opts.timeoutMs)
    const out: AddressInfo[] = []
    for (const r of replies) {
      const a = parseAddress(r)
      if (a && (index === undefined || a.index === index)) out.push(a)
    }
    return out
  } catch (e) {
    throw describe('list addresses', e)
  }
}

export type RouteScopeName = 'universe' | 'link' | 'host'

export interface RouteSpec {
  family: IpFamily
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
const RTNH_F_ONLINK = 4
const RT_TABLE_MAIN = 254
const RTN_UNICAST = 1
const RTN_LOCAL = 2
const RTN_BROADCAST = 3

function routeText(r: RouteSpec): string {
  return `${r.dst}/${r.dstLength}${r.gateway ? ` via ${r.gateway}` : ''}${r.oif ? ` dev #${r.oif}` : ''}`
}

function encodeRoute(r: RouteSpec, forDelete: boolean): Buffer {
  const table = r.table ?? RT_TABLE_MAIN
  return routeMessage(
    {
      family: r.family,
      dstLength: r.dstLength,
      // rtm_table is one byte: ids above 255 go in the RTA_TABLE attribute, the header says RT_TABLE_COMPAT (252)
      table: table > 255 ? 252 : table,
      // A delete names the protocol only when asked to, so that flatnetd's deletes can never hit a
      // route someone else owns (the kernel matches rtm_protocol when it is non-zero).
      protocol: forDelete ? (r.protocol ?? 0) : (r.protocol ?? 3),
      // a delete with scope NOWHERE (255) matches routes of any scope; a link-scope route is not
      // found by a delete that names scope universe
      scope: forDelete ? 255 : SCOPE[r.scope ?? (r.gateway ? 'universe' : 'link')],
      type: RTN_UNICAST,
      flags: r.onlink ? RTNH_F_ONLINK : 0,
    },
    { table, dst: ipToBytes(r.dst), gateway: r.gateway ? ipToBytes(r.gateway) : undefined, oif: r.oif },
  )
}

export async function addRoute(s: Rtnl, r: RouteSpec, opts: { replace?: boolean } = {}): Promise<void> {
  try {
    await s.request(RTM_NEWROUTE, encodeRoute(r, false), opts.replace ? NLM_F_CREATE | NLM_F_REPLACE : CREATE_EXCL)
  } catch (e) {
    throw describe(`add route ${routeText(r)}`, e)
  }
}

/** Deletes a route; false when it was already gone. */
export async function deleteRoute(s: Rtnl, r: RouteSpec): Promise<boolean> {
  try {
    await s.request(RTM_DELROUTE, encodeRoute(r, true))
    return true
  } catch (e) {
    if (isNetlinkErrno(e, 'ESRCH') || isNetlinkErrno(e, 'ENODEV')) return false
    throw describe(`delete route ${routeText(r)}`, e)
  }
}

/** Unicast routes of one family in one table (main by default). */
export async function listRoutes(s: Rtnl, family: IpFamily, table = RT_TABLE_MAIN, opts: RequestLimit = {}): Promise<RouteInfo[]> {
  try {
    const replies = await s.request(RTM_GETROUTE, routeDumpMessage(family), NLM_F_DUMP, opts.timeoutMs)
    return replies.map(parseRoute).filter((r) => r.table === table && r.type === RTN_UNICAST)
  } catch (e) {
    throw describe('list routes', e)
  }
}

/**
 * The route of one table (main by default) whose destination is exactly `address` (/32 or
 * /128), of any type and owner; undefined when there is none. Asked as a lookup with
 * RTM_F_FIB_MATCH, which answers with the FIB entry itself in one request whatever the table's
 * size. A lookup that ends at a blackhole, unreachable or prohibit entry is answered by the
 * kernel with that type's errno (EINVAL, EHOSTUNREACH, EACCES) instead of the entry: only then
 * is the table dumped to see whether that entry is an exact one. The lookup walks the policy
 * rules (the local table first) and labels its answer with the table asked for, so an answer of
 * type local or broadcast — kinds only the local table holds — is not a route of this table.
 */
export async function exactRoute(s: Rtnl, family: IpFamily, address: string, table = RT_TABLE_MAIN): Promise<RouteInfo | undefined> {
  const bits = family === 4 ? 32 : 128
  const exact = (r: RouteInfo) => r.dst === address && r.dstLength === bits && r.table === table && r.type !== RTN_LOCAL && r.type !== RTN_BROADCAST
  const header = { family, dstLength: bits, table: table > 255 ? 252 : table, protocol: 0, scope: 0, type: 0, flags: RTM_F_FIB_MATCH }
  try {
    const [reply] = await s.request(RTM_GETROUTE, routeMessage(header, { table, dst: ipToBytes(address) }))
    const match = reply ? parseRoute(reply) : undefined
    return match && exact(match) ? match : undefined
  } catch (e) {
    if (isNetlinkErrno(e, 'ENETUNREACH') || isNetlinkErrno(e, 'ESRCH')) return undefined
    if (!isNetlinkErrno(e, 'EINVAL') && !isNetlinkErrno(e, 'EHOSTUNREACH') && !isNetlinkErrno(e, 'EACCES')) throw describe(`look up the route to ${address} in table ${table}`, e)
  }
  try {
    return (await s.request(RTM_GETROUTE, routeDumpMessage(family), NLM_F_DUMP)).map(parseRoute).find(exact)
  } catch (e) {
    throw describe('list routes', e)
  }
}
