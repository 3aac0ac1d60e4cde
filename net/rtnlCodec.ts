// The rtnetlink messages flatnet sends and reads, encoded by hand: links (ifinfomsg), addresses
// (ifaddrmsg) and routes (rtmsg) with just the attributes we use. The `netlink` package's rt
// module covers every attribute the kernel knows through generated tables whose loading alone
// cost the plugin ~11 ms per call; these few are all a pod's wiring and the daemon's reads need.
// Layouts: linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h. Host byte order (little-endian;
// rtnlSocket.ts refuses anything else).
import { afOf, bytesToIp, type IpFamily } from './ipbytes.js'

// message types
export const RTM_NEWLINK = 16
export const RTM_DELLINK = 17
export const RTM_GETLINK = 18
export const RTM_SETLINK = 19
export const RTM_NEWADDR = 20
export const RTM_GETADDR = 22
export const RTM_NEWROUTE = 24
export const RTM_DELROUTE = 25
export const RTM_GETROUTE = 26

// request flags (NLM_F_*)
export const NLM_F_REPLACE = 0x100
export const NLM_F_EXCL = 0x200
export const NLM_F_CREATE = 0x400

// link attributes
const IFLA_ADDRESS = 1
const IFLA_LINK = 5
export const IFLA_IFNAME = 3
export const IFLA_MTU = 4
const IFLA_OPERSTATE = 16
const IFLA_LINKINFO = 18
const IFLA_IFALIAS = 20
export const IFLA_NET_NS_FD = 28
const IFLA_LINK_NETNSID = 37
const IFLA_EXT_MASK = 29
/** RTEXT_FILTER_SKIP_STATS: the kernel leaves a link's counters out of its answer. */
const RTEXT_FILTER_SKIP_STATS = 1 << 3
export const IFLA_INFO_KIND = 1
export const IFLA_INFO_DATA = 2
export const VETH_INFO_PEER = 1
export const NLA_F_NESTED = 0x8000
const IFF_UP = 1
/** The driver reports carrier (operationally up as far as the device knows). */
const IFF_LOWER_UP = 0x10000

// address attributes
const IFA_ADDRESS = 1
const IFA_LOCAL = 2
/** u32 flags: the full set, where ifaddrmsg's ifa_flags byte holds only the low 8 bits. */
const IFA_FLAGS = 8

// address flags (linux/if_addr.h)
/** Skip duplicate address detection: the kernel never marks such an IPv6 address tentative. */
export const IFA_F_NODAD = 0x02
export const IFA_F_DADFAILED = 0x08
/** DAD still running: the address cannot be used yet, routes through it are refused (EINVAL). */
export const IFA_F_TENTATIVE = 0x40

// route attributes
const RTA_DST = 1
const RTA_OIF = 4
const RTA_GATEWAY = 5
const RTA_PRIORITY = 6
const RTA_TABLE = 15

export interface LinkInfo {
  index: number
  name: string
  mtu: number
  mac: string
  up: boolean
  /** IFF_LOWER_UP: the device has carrier (a veth: both ends are up). */
  lowerUp: boolean
  /** IFLA_OPERSTATE (RFC 2863, IF_OPER_*: 6 up, 2 down, 7 dormant); set by the kernel's linkwatch work, after the change that causes it. */
  operState?: number
  alias?: string
  kind?: string
  /** IFLA_LINK: the peer's ifindex (a veth's other end), in the peer's own namespace. */
  peerIndex?: number
  /** IFLA_LINK_NETNSID: present when the peer lives in another namespace (its id as this namespace numbers it). */
  peerNetnsId?: number
}

export const IF_OPER_UP = 6

export interface AddressInfo {
  index: number
  family: IpFamily
  address: string
  prefixLength: number
  /** IFA_F_* flags (IFA_FLAGS when the kernel sends it, else ifa_flags). */
  flags: number
}

export interface RouteInfo {
  family: IpFamily
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

const align4 = (n: number) => (n + 3) & ~3

/** One attribute: header + payload, padded to 4 bytes. */
export function nlattr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length
  const out = Buffer.alloc(align4(len))
  out.writeUInt16LE(len, 0)
  out.writeUInt16LE(type, 2)
  payload.copy(out, 4)
  return out
}
export const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(v)
  return b
}
/** A 16-bit value in network byte order (ports: IFLA_VXLAN_PORT, CTA_PROTO_DST_PORT). */
export const be16 = (v: number): Buffer => {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(v)
  return b
}
/** A NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING policies take it. */
export const cstr = (v: string): Buffer => Buffer.from(`${v}\0`)

/** Calls fn(type, start, end) for each attribute in buf[from, to). */
function eachAttr(buf: Buffer, from: number, to: number, fn: (type: number, start: number, end: number) => void): void {
  for (let off = from; off + 4 <= to;) {
    const len = buf.readUInt16LE(off)
    if (len < 4 || off + len > to) break
    fn(buf.readUInt16LE(off + 2) & 0x3fff, off + 4, off + len)
    off += align4(len)
  }
}

const stringAt = (buf: Buffer, start: number, end: number) => buf.toString('utf8', start, end).replace(/\0+$/, '')

// ---- links ----

export interface LinkHeader {
  index?: number
  flags?: number
  change?: number
}

/** struct ifinfomsg (family AF_UNSPEC) followed by the attributes. */
export function linkMessage(h: LinkHeader, attrs: Buffer[] = []): Buffer {
  const head = Buffer.alloc(16)
  head.writeInt32LE(h.index ?? 0, 4)
  head.writeUInt32LE(h.flags ?? 0, 8)
  head.writeUInt32LE(h.change ?? 0, 12)
  return attrs.length ? Buffer.concat([head, ...attrs]) : head
}

export const linkUp = { flags: IFF_UP, change: IFF_UP }
export const ifnameAttr = (name: string) => nlattr(IFLA_IFNAME, cstr(name))
export const mtuAttr = (mtu: number) => nlattr(IFLA_MTU, u32(mtu))
export const aliasAttr = (alias: string) => nlattr(IFLA_IFALIAS, cstr(alias))
/** Asks a link dump without counters: nothing here reads them, and they are most of each answer's bytes. */
export const skipStatsAttr = () => nlattr(IFLA_EXT_MASK, u32(RTEXT_FILTER_SKIP_STATS))
export const linkinfoAttr = (linkinfo: Buffer) => nlattr(IFLA_LINKINFO, linkinfo)

function kindOf(buf: Buffer, start: number, end: number): string | undefined {
  let kind: string | undefined
  eachAttr(buf, start, end, (t, s, e) => {
    if (t === IFLA_INFO_KIND) kind = stringAt(buf, s, e)
  })
  return kind
}

/** An RTM_NEWLINK message's payload (ifinfomsg + attributes). */
export function parseLink(buf: Buffer): LinkInfo {
  const link: LinkInfo = { index: buf.readInt32LE(4), name: '', mtu: 0, mac: '', up: (buf.readUInt32LE(8) & IFF_UP) !== 0, lowerUp: (buf.readUInt32LE(8) & IFF_LOWER_UP) !== 0 }
  eachAttr(buf, 16, buf.length, (t, s, e) => {
    if (t === IFLA_IFNAME) link.name = stringAt(buf, s, e)
    else if (t === IFLA_MTU) link.mtu = buf.readUInt32LE(s)
    else if (t === IFLA_OPERSTATE) link.operState = buf.readUInt8(s)
    else if (t === IFLA_ADDRESS) link.mac = Array.from(buf.subarray(s, e), (x) => x.toString(16).padStart(2, '0')).join(':')
    else if (t === IFLA_IFALIAS) link.alias = stringAt(buf, s, e) || undefined
    else if (t === IFLA_LINKINFO) link.kind = kindOf(buf, s, e)
    else if (t === IFLA_LINK) link.peerIndex = buf.readUInt32LE(s)
    else if (t === IFLA_LINK_NETNSID) link.peerNetnsId = buf.readInt32LE(s)
  })
  return link
}

// ---- addresses ----

/**
 * struct ifaddrmsg + IFA_LOCAL + IFA_ADDRESS (the same address: a point-to-point peer is not used),
 * with `flags` (IFA_F_*) both in ifa_flags and as IFA_FLAGS, as iproute2 sends them.
 */
export function addressMessage(family: IpFamily, prefixLength: number, index: number, address: Buffer, flags = 0): Buffer {
  const head = Buffer.alloc(8)
  head.writeUInt8(afOf(family), 0)
  head.writeUInt8(prefixLength, 1)
  head.writeUInt8(flags & 0xff, 2)
  head.writeUInt32LE(index, 4)
  const attrs = [nlattr(IFA_LOCAL, address), nlattr(IFA_ADDRESS, address)]
  if (flags !== 0) attrs.push(nlattr(IFA_FLAGS, u32(flags)))
  return Buffer.concat([head, ...attrs])
}

/** An empty ifaddrmsg: a dump of every family's addresses. */
export const addressDumpMessage = (): Buffer => Buffer.alloc(8)

export function parseAddress(buf: Buffer): AddressInfo | undefined {
  const family: IpFamily = buf.readUInt8(0) === afOf(6) ? 6 : 4
  let local: Buffer | undefined
  let address: Buffer | undefined
  let flags = buf.readUInt8(2)
  eachAttr(buf, 8, buf.length, (t, s, e) => {
    if (t === IFA_LOCAL) local = buf.subarray(s, e)
    else if (t === IFA_ADDRESS) address = buf.subarray(s, e)
    else if (t === IFA_FLAGS && e - s >= 4) flags = buf.readUInt32LE(s)
  })
  const bytes = local ?? address
  if (!bytes) return undefined
  return { index: buf.readUInt32LE(4), family, address: bytesToIp(bytes), prefixLength: buf.readUInt8(1), flags }
}

// ---- routes ----

export interface RouteHeader {
  family: IpFamily
  dstLength: number
  table: number
  protocol: number
  scope: number
  type: number
  flags: number
}

/** struct rtmsg + RTA_TABLE, RTA_DST, RTA_GATEWAY, RTA_OIF (each when given). */
export function routeMessage(h: RouteHeader, a: { table: number; dst: Buffer; gateway?: Buffer; oif?: number }): Buffer {
  const head = Buffer.alloc(12)
  head.writeUInt8(afOf(h.family), 0)
  head.writeUInt8(h.dstLength, 1)
  head.writeUInt8(h.table, 4)
  head.writeUInt8(h.protocol, 5)
  head.writeUInt8(h.scope, 6)
  head.writeUInt8(h.type, 7)
  head.writeUInt32LE(h.flags, 8)
  const attrs = [nlattr(RTA_TABLE, u32(a.table)), nlattr(RTA_DST, a.dst)]
  if (a.gateway) attrs.push(nlattr(RTA_GATEWAY, a.gateway))
  if (a.oif) attrs.push(nlattr(RTA_OIF, u32(a.oif)))
  return Buffer.concat([head, ...attrs])
}

/** rtm_flags of a route get: answer with the FIB entry that matched, not a route cache clone. */
export const RTM_F_FIB_MATCH = 0x2000

/** An rtmsg naming only the family: a dump of its routes in every table. */
export function routeDumpMessage(family: IpFamily): Buffer {
  const head = Buffer.alloc(12)
  head.writeUInt8(afOf(family), 0)
  return head
}

export function parseRoute(buf: Buffer): RouteInfo {
  const family: IpFamily = buf.readUInt8(0) === afOf(6) ? 6 : 4
  const route: RouteInfo = {
    family,
    dst: family === 4 ? '0.0.0.0' : '::',
    dstLength: buf.readUInt8(1),
    table: buf.readUInt8(4),
    protocol: buf.readUInt8(5),
    scope: buf.readUInt8(6),
    type: buf.readUInt8(7),
    priority: 0,
  }
  eachAttr(buf, 12, buf.length, (t, s, e) => {
    if (t === RTA_DST) route.dst = bytesToIp(buf.subarray(s, e))
    else if (t === RTA_GATEWAY) route.gateway = bytesToIp(buf.subarray(s, e))
    else if (t === RTA_OIF) route.oif = buf.readUInt32LE(s)
    else if (t === RTA_PRIORITY) route.priority = buf.readUInt32LE(s)
    else if (t === RTA_TABLE) route.table = buf.readUInt32LE(s)
  })
  return route
}
