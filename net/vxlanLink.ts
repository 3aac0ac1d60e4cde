// VXLAN devices over rtnetlink, encoded by hand (rtnlCodec.ts): created with their
// IFLA_VXLAN_* attributes (VNI, local address, UDP port, learning off), and read back with them so
// a reconciler can tell a device that drifted from its configuration. Layouts: linux/if_link.h.
import { familyOf, ipToBytes, bytesToIp, type IpFamily } from './ipbytes.js'
import { describe, isNetlinkErrno, type Rtnl } from './rtnl.js'
import {
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  NLA_F_NESTED,
  NLM_F_CREATE,
  NLM_F_EXCL,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTM_SETLINK,
  be16,
  cstr,
  ifnameAttr,
  linkMessage,
  linkinfoAttr,
  mtuAttr,
  nlattr,
  parseLink,
  u32,
  type LinkInfo,
} from './rtnlCodec.js'

const IFLA_ADDRESS = 1
const IFLA_LINKINFO = 18
const IFLA_VXLAN_ID = 1
const IFLA_VXLAN_LOCAL = 4
const IFLA_VXLAN_LEARNING = 7
const IFLA_VXLAN_PORT = 15
const IFLA_VXLAN_LOCAL6 = 17
const RTM_DELADDR = 21

export interface VxlanSpec {
  name: string
  vni: number
  /** The underlay address packets leave from (its family is the device's underlay family). */
  local: string
  /** UDP destination and listening port. */
  port: number
  mac: string
  mtu: number
}

/** A VXLAN device as the kernel reports it. */
export interface VxlanLink extends LinkInfo {
  vni?: number
  local?: string
  port?: number
  learning?: boolean
}

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((p) => parseInt(p, 16)))
}

/** Creates a VXLAN device (down; learning off: the FDB holds only what the reconciler puts there). */
export async function createVxlan(s: Rtnl, v: VxlanSpec): Promise<void> {
  const family: IpFamily = familyOf(v.local)
  const data = Buffer.concat([
    nlattr(IFLA_VXLAN_ID, u32(v.vni)),
    nlattr(family === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, ipToBytes(v.local)),
    nlattr(IFLA_VXLAN_PORT, be16(v.port)),
    nlattr(IFLA_VXLAN_LEARNING, Buffer.from([0])),
  ])
  const linkinfo = Buffer.concat([nlattr(IFLA_INFO_KIND, cstr('vxlan')), nlattr(IFLA_INFO_DATA | NLA_F_NESTED, data)])
  try {
    await s.request(RTM_NEWLINK, linkMessage({}, [ifnameAttr(v.name), mtuAttr(v.mtu), nlattr(IFLA_ADDRESS, macBytes(v.mac)), linkinfoAttr(linkinfo)]), NLM_F_CREATE | NLM_F_EXCL)
  } catch (e) {
    throw describe(`create vxlan device ${v.name} (vni ${v.vni}, local ${v.local}, port ${v.port})`, e)
  }
}

/** Walks attributes in buf[from, to). */
function eachAttr(buf: Buffer, from: number, to: number, fn: (type: number, start: number, end: number) => void): void {
  for (let off = from; off + 4 <= to;) {
    const len = buf.readUInt16LE(off)
    if (len < 4 || off + len > to) break
    fn(buf.readUInt16LE(off + 2) & 0x3fff, off + 4, off + len)
    off += (len + 3) & ~3
  }
}

/** Parses an RTM_NEWLINK payload, with the VXLAN attributes when it is a VXLAN device. */
export function parseVxlanLink(buf: Buffer): VxlanLink {
  const link: VxlanLink = parseLink(buf)
  eachAttr(buf, 16, buf.length, (t, s, e) => {
    if (t !== IFLA_LINKINFO) return
    eachAttr(buf, s, e, (it, is, ie) => {
      if (it !== IFLA_INFO_DATA) return
      eachAttr(buf, is, ie, (vt, vs, ve) => {
        if (vt === IFLA_VXLAN_ID) link.vni = buf.readUInt32LE(vs)
        else if (vt === IFLA_VXLAN_LOCAL || vt === IFLA_VXLAN_LOCAL6) link.local = bytesToIp(buf.subarray(vs, ve))
        else if (vt === IFLA_VXLAN_PORT) link.port = buf.readUInt16BE(vs)
        else if (vt === IFLA_VXLAN_LEARNING) link.learning = buf.readUInt8(vs) !== 0
      })
    })
  })
  return link
}

/** A device by name with its VXLAN attributes; undefined when there is none. */
export async function vxlanByName(s: Rtnl, name: string): Promise<VxlanLink | undefined> {
  try {
    const [reply] = await s.request(RTM_GETLINK, linkMessage({}, [ifnameAttr(name)]))
    return reply ? parseVxlanLink(reply) : undefined
  } catch (e) {
    if (isNetlinkErrno(e, 'ENODEV')) return undefined
    throw describe(`get link ${name}`, e)
  }
}

export async function setLinkMtu(s: Rtnl, index: number, mtu: number, name = `#${index}`): Promise<void> {
  try {
    await s.request(RTM_SETLINK, linkMessage({ index }, [mtuAttr(mtu)]))
  } catch (e) {
    throw describe(`set mtu ${mtu} of link ${name}`, e)
  }
}

/** Deletes an address of a device; false when it was not there. */
export async function deleteAddress(s: Rtnl, a: { index: number; family: IpFamily; address: string; prefixLength: number; linkName?: string }): Promise<boolean> {
  const head = Buffer.alloc(8)
  head.writeUInt8(a.family === 4 ? 2 : 10, 0)
  head.writeUInt8(a.prefixLength, 1)
  head.writeUInt32LE(a.index, 4)
  const IFA_LOCAL = 2
  const IFA_ADDRESS = 1
  const bytes = ipToBytes(a.address)
  try {
    await s.request(RTM_DELADDR, Buffer.concat([head, nlattr(IFA_LOCAL, bytes), nlattr(IFA_ADDRESS, bytes)]))
    return true
  } catch (e) {
    if (isNetlinkErrno(e, 'EADDRNOTAVAIL') || isNetlinkErrno(e, 'ENODEV')) return false
    throw describe(`delete address ${a.address}/${a.prefixLength} from ${a.linkName ?? `link #${a.index}`}`, e)
  }
}
