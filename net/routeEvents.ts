// Route change notifications from the kernel (rtnetlink's IPv4 and IPv6 route multicast groups),
// narrowed to one route protocol: flatnetd learns that the plugin added or deleted a pod's host
// route (protocol 201) the moment it happens, whether the call came through flatnetd's CNI socket
// or the plugin ran alone. Only the fact is reported, not the route: the listener re-reads what
// it needs, so a burst of changes costs one read, and a lost notification (the kernel drops them
// when the receive buffer is full: ENOBUFS) is reported as a change too.
import { RawNetlinkSocket } from 'netlink/dist/raw.js'
import { withNetns, type NetnsHandle } from './netns.js'

const NETLINK_ROUTE = 0
const RTNLGRP_IPV4_ROUTE = 7
const RTNLGRP_IPV6_ROUTE = 11
const RTM_NEWROUTE = 24
const RTM_DELROUTE = 25
/** struct rtmsg after the 16-byte header: family, dst_len, src_len, tos, table, protocol, … */
const RTM_PROTOCOL_OFFSET = 16 + 5

export class RouteEvents {
  private readonly raw: RawNetlinkSocket

  /**
   * Listens in the current namespace (or inside `ns`) and calls `onChange` once per datagram
   * that adds or deletes a route of `protocol`, or when notifications were lost.
   */
  constructor(protocol: number, onChange: (why: string) => void, ns?: NetnsHandle) {
    const create = () => new RawNetlinkSocket(NETLINK_ROUTE, { recvBufferSize: 1 << 20, sendBufferSize: 1 << 16 })
    this.raw = ns ? withNetns(ns, create) : create()
    try {
      this.raw.addMembership(RTNLGRP_IPV4_ROUTE)
      this.raw.addMembership(RTNLGRP_IPV6_ROUTE)
    } catch (e) {
      this.raw.close()
      throw new Error(`listen for route changes: ${(e as Error).message}`)
    }
    this.raw.on('message', (msg: Buffer) => {
      if (carriesProtocol(msg, protocol)) onChange('route changed')
    })
    this.raw.on('error', (e) => onChange(`route notifications lost (${e.code ?? e.message})`))
    // Never what keeps a process alive.
    this.raw.unref()
  }

  close(): void {
    this.raw.close()
  }
}

/** Whether a datagram of route notifications adds or deletes a route of `protocol`. */
export function carriesProtocol(msg: Buffer, protocol: number): boolean {
  for (let off = 0; off + 16 <= msg.length;) {
    const len = msg.readUInt32LE(off)
    if (len < 16 || off + len > msg.length) break
    const type = msg.readUInt16LE(off + 4)
    if ((type === RTM_NEWROUTE || type === RTM_DELROUTE) && len > RTM_PROTOCOL_OFFSET && msg[off + RTM_PROTOCOL_OFFSET] === protocol) return true
    off += (len + 3) & ~3
  }
  return false
}
