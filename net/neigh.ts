// Neighbour and forwarding-database (FDB) entries over rtnetlink, encoded by hand like the rest of
// net/ (rtnlCodec.ts): the VXLAN backend's per-peer state. A neighbour entry (RTM_NEWNEIGH, family
// AF_INET/AF_INET6) maps a peer's VTEP address to its MAC so the kernel never resolves it; an FDB
// entry (RTM_NEWNEIGH, family AF_BRIDGE, NTF_SELF: the VXLAN device's own table, not a bridge's)
// maps that MAC to the peer node's underlay address. Layouts: linux/neighbour.h (struct ndmsg, NDA_*).
import { afOf, bytesToIp, ipToBytes, type IpFamily } from './ipbytes.js'
import { describe, isNetlinkErrno, type Rtnl } from './rtnl.js'
import { NLM_F_CREATE, NLM_F_REPLACE, nlattr } from './rtnlCodec.js'

const RTM_NEWNEIGH = 28
const RTM_DELNEIGH = 29
const RTM_GETNEIGH = 30
const NLM_F_DUMP = 0x300
const AF_BRIDGE = 7
const NDA_DST = 1
const NDA_LLADDR = 2
/** A static entry: never probed, never expires, never replaced by what the kernel learns. */
export const NUD_PERMANENT = 0x80
/** The entry belongs to the device itself (the VXLAN driver's FDB), not to a bridge it is a port of. */
const NTF_SELF = 0x02

/** One neighbour entry of a device: the L3 address, its MAC (absent while unresolved), its NUD_* state. */
export interface NeighbourInfo {
  family: IpFamily
  index: number
  address: string
  mac?: string
  state: number
}

/** One FDB entry of a device: a MAC and, on a VXLAN device, the remote it is sent to. */
export interface FdbInfo {
  index: number
  mac: string
  /** The VXLAN remote (underlay address); absent on the device's own address entries. */
  dst?: string
  state: number
  flags: number
}

function macToBytes(mac: string): Buffer {
  const parts = mac.split(':')
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`not a MAC address: ${JSON.stringify(mac)}`)
  return Buffer.from(parts.map((p) => parseInt(p, 16)))
}

function bytesToMac(b: Buffer): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':')
}

/** struct ndmsg: family, 3 pad bytes, ifindex, state, flags, type. */
function ndmsg(family: number, index: number, state: number, flags: number, attrs: Buffer[] = []): Buffer {
  const head = Buffer.alloc(12)
  head.writeUInt8(family, 0)
  head.writeInt32LE(index, 4)
  head.writeUInt16LE(state, 8)
  head.writeUInt8(flags, 10)
  return attrs.length ? Buffer.concat([head, ...attrs]) : head
}

/** Calls fn(type, payload) for each attribute after the ndmsg. */
function eachAttr(buf: Buffer, fn: (type: number, payload: Buffer) => void): void {
  for (let off = 12; off + 4 <= buf.length;) {
    const len = buf.readUInt16LE(off)
    if (len < 4 || off + len > buf.length) break
    fn(buf.readUInt16LE(off + 2) & 0x3fff, buf.subarray(off + 4, off + len))
    off += (len + 3) & ~3
  }
}

function parseNeighbour(buf: Buffer): NeighbourInfo | undefined {
  const af = buf.readUInt8(0)
  if (af !== afOf(4) && af !== afOf(6)) return undefined
  const n: NeighbourInfo = { family: af === afOf(6) ? 6 : 4, index: buf.readInt32LE(4), address: '', state: buf.readUInt16LE(8) }
  eachAttr(buf, (t, p) => {
    if (t === NDA_DST) n.address = bytesToIp(p)
    else if (t === NDA_LLADDR && p.length === 6) n.mac = bytesToMac(p)
  })
  return n.address ? n : undefined
}

function parseFdb(buf: Buffer): FdbInfo | undefined {
  if (buf.readUInt8(0) !== AF_BRIDGE) return undefined
  const f: FdbInfo = { index: buf.readInt32LE(4), mac: '', state: buf.readUInt16LE(8), flags: buf.readUInt8(10) }
  eachAttr(buf, (t, p) => {
    if (t === NDA_LLADDR && p.length === 6) f.mac = bytesToMac(p)
    else if (t === NDA_DST && (p.length === 4 || p.length === 16)) f.dst = bytesToIp(p)
  })
  return f.mac ? f : undefined
}

export interface NeighbourSpec {
  family: IpFamily
  index: number
  address: string
  mac: string
  /** The device's name, for error messages. */
  linkName?: string
}

/** Sets a permanent neighbour entry (created, or replaced in place when the address has one). */
export async function setNeighbour(s: Rtnl, n: NeighbourSpec): Promise<void> {
  try {
    await s.request(RTM_NEWNEIGH, ndmsg(afOf(n.family), n.index, NUD_PERMANENT, 0, [nlattr(NDA_DST, ipToBytes(n.address)), nlattr(NDA_LLADDR, macToBytes(n.mac))]), NLM_F_CREATE | NLM_F_REPLACE)
  } catch (e) {
    throw describe(`set neighbour ${n.address} lladdr ${n.mac} on ${n.linkName ?? `link #${n.index}`}`, e)
  }
}

/** Deletes a neighbour entry; false when there was none. */
export async function deleteNeighbour(s: Rtnl, n: Omit<NeighbourSpec, 'mac'>): Promise<boolean> {
  try {
    await s.request(RTM_DELNEIGH, ndmsg(afOf(n.family), n.index, 0, 0, [nlattr(NDA_DST, ipToBytes(n.address))]))
    return true
  } catch (e) {
    if (isNetlinkErrno(e, 'ENOENT') || isNetlinkErrno(e, 'ENODEV')) return false
    throw describe(`delete neighbour ${n.address} on ${n.linkName ?? `link #${n.index}`}`, e)
  }
}

/** The neighbour entries of one family, of one device when `index` is given. */
export async function listNeighbours(s: Rtnl, family: IpFamily, index?: number, timeoutMs?: number): Promise<NeighbourInfo[]> {
  try {
    const replies = await s.request(RTM_GETNEIGH, ndmsg(afOf(family), 0, 0, 0), NLM_F_DUMP, timeoutMs)
    const out: NeighbourInfo[] = []
    for (const r of replies) {
      const n = parseNeighbour(r)
      if (n && (index === undefined || n.index === index)) out.push(n)
    }
    return out
  } catch (e) {
    throw describe(`list IPv${family} neighbours`, e)
  }
}

export interface FdbSpec {
  index: number
  mac: string
  /** The VXLAN remote: where frames to `mac` are tunnelled. */
  dst: string
  linkName?: string
}

/**
 * Sets a permanent FDB entry of a VXLAN device: frames to `mac` go to `dst`. With REPLACE the
 * kernel changes the entry's remote in place (`bridge fdb replace`), so a peer that moved to
 * another underlay address never has two remotes.
 */
export async function setFdb(s: Rtnl, f: FdbSpec): Promise<void> {
  try {
    await s.request(RTM_NEWNEIGH, ndmsg(AF_BRIDGE, f.index, NUD_PERMANENT, NTF_SELF, [nlattr(NDA_LLADDR, macToBytes(f.mac)), nlattr(NDA_DST, ipToBytes(f.dst))]), NLM_F_CREATE | NLM_F_REPLACE)
  } catch (e) {
    throw describe(`set fdb ${f.mac} dst ${f.dst} on ${f.linkName ?? `link #${f.index}`}`, e)
  }
}

/** Deletes an FDB entry of a VXLAN device (its remote `dst`); false when there was none. */
export async function deleteFdb(s: Rtnl, f: FdbSpec): Promise<boolean> {
  try {
    await s.request(RTM_DELNEIGH, ndmsg(AF_BRIDGE, f.index, 0, NTF_SELF, [nlattr(NDA_LLADDR, macToBytes(f.mac)), nlattr(NDA_DST, ipToBytes(f.dst))]))
    return true
  } catch (e) {
    if (isNetlinkErrno(e, 'ENOENT') || isNetlinkErrno(e, 'ENODEV')) return false
    throw describe(`delete fdb ${f.mac} dst ${f.dst} on ${f.linkName ?? `link #${f.index}`}`, e)
  }
}

/** The FDB entries of every device (bridges and VXLAN devices), of one device when `index` is given. */
export async function listFdb(s: Rtnl, index?: number, timeoutMs?: number): Promise<FdbInfo[]> {
  try {
    const replies = await s.request(RTM_GETNEIGH, ndmsg(AF_BRIDGE, 0, 0, 0), NLM_F_DUMP, timeoutMs)
    const out: FdbInfo[] = []
    for (const r of replies) {
      const f = parseFdb(r)
      if (f && (index === undefined || f.index === index)) out.push(f)
    }
    return out
  } catch (e) {
    throw describe('list fdb entries', e)
  }
}
