// Deleting conntrack entries by filter over ctnetlink (NETLINK_NETFILTER), hand-encoded like
// rtnlCodec.ts: the service proxy forgets the UDP "connections" it NATed to an endpoint that left
// its Service. A UDP flow has no end the kernel can see, so without this a client that keeps
// sending (a resolver to its DNS Service) keeps its entry — and its dead or not-ready backend —
// for as long as it sends (kube-proxy does the same clean-up).
//
// One IPCTNL_MSG_CT_DELETE carrying an original and/or reply tuple plus CTA_FILTER (which fields of
// them to match) deletes every entry that matches, in the socket's network namespace (kernel 6.18
// here takes the filter; without CTA_FILTER a tuple names one exact entry).
import { afOf, familyOf, ipToBytes } from './ipbytes.js'
import { isNetlinkErrno } from './netlinkError.js'
import { NLA_F_NESTED, be16, nlattr, u32 } from './rtnlCodec.js'
import { RtnlSocket } from './rtnlSocket.js'

const NETLINK_NETFILTER = 12
const NFNL_SUBSYS_CTNETLINK = 1
const IPCTNL_MSG_CT_DELETE = 2

const CTA_TUPLE_ORIG = 1
const CTA_TUPLE_REPLY = 2
const CTA_FILTER = 25
const CTA_FILTER_ORIG_FLAGS = 1
const CTA_FILTER_REPLY_FLAGS = 2
const CTA_TUPLE_IP = 1
const CTA_TUPLE_PROTO = 2
const CTA_IP_V4_SRC = 1
const CTA_IP_V4_DST = 2
const CTA_IP_V6_SRC = 3
const CTA_IP_V6_DST = 4
const CTA_PROTO_NUM = 1
const CTA_PROTO_DST_PORT = 3

const FLAG_IP_SRC = 1 << 0
const FLAG_IP_DST = 1 << 1
const FLAG_PROTO_NUM = 1 << 3
const FLAG_PROTO_DST_PORT = 1 << 5

const PROTOCOL_NUMBERS = { tcp: 6, udp: 17, sctp: 132 } as const

/** Which entries to delete: every given field must match. */
export interface ConntrackFilter {
  protocol: keyof typeof PROTOCOL_NUMBERS
  /** The address the client sent to (a cluster IP, an external IP, a node address). */
  origDst?: string
  /** The port the client sent to (the Service port, a node port). */
  origDstPort?: number
  /** Who answers: the endpoint the entry was NATed to. */
  replySrc: string
}

const nested = (type: number, attrs: Buffer[]) => nlattr(type | NLA_F_NESTED, Buffer.concat(attrs))

/** The message body: nfgenmsg (family, version 0, resource id 0), then the tuples and the filter. */
export function conntrackDeleteMessage(f: ConntrackFilter): Buffer {
  const family = familyOf(f.replySrc)
  if (f.origDst !== undefined && familyOf(f.origDst) !== family) throw new Error(`conntrack filter: ${f.origDst} and ${f.replySrc} are not one family`)
  const v4 = family === 4
  const proto = (port?: number) =>
    nested(CTA_TUPLE_PROTO, [nlattr(CTA_PROTO_NUM, Buffer.from([PROTOCOL_NUMBERS[f.protocol]])), ...(port !== undefined ? [nlattr(CTA_PROTO_DST_PORT, be16(port))] : [])])
  let origFlags = FLAG_PROTO_NUM
  const orig: Buffer[] = []
  if (f.origDst !== undefined) {
    orig.push(nested(CTA_TUPLE_IP, [nlattr(v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, ipToBytes(f.origDst))]))
    origFlags |= FLAG_IP_DST
  }
  orig.push(proto(f.origDstPort))
  if (f.origDstPort !== undefined) origFlags |= FLAG_PROTO_DST_PORT
  const reply = [nested(CTA_TUPLE_IP, [nlattr(v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, ipToBytes(f.replySrc))]), proto()]
  const header = Buffer.from([afOf(family), 0, 0, 0])
  return Buffer.concat([
    header,
    nested(CTA_TUPLE_ORIG, orig),
    nested(CTA_TUPLE_REPLY, reply),
    nested(CTA_FILTER, [nlattr(CTA_FILTER_ORIG_FLAGS, u32(origFlags)), nlattr(CTA_FILTER_REPLY_FLAGS, u32(FLAG_IP_SRC | FLAG_PROTO_NUM))]),
  ])
}

/** A ctnetlink socket of the calling thread's network namespace (create it inside one to act there). */
export class ConntrackSocket {
  private readonly socket = new RtnlSocket(NETLINK_NETFILTER)

  /** Deletes every entry matching `f`; none matching is no error. */
  async delete(f: ConntrackFilter): Promise<void> {
    try {
      await this.socket.request((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, conntrackDeleteMessage(f), 0, 5000)
    } catch (e) {
      // ENOENT: nothing matched.
      if (isNetlinkErrno(e, 'ENOENT')) return
      throw new Error(`delete conntrack entries (${f.protocol}${f.origDst ? ` to ${f.origDst}` : ''}${f.origDstPort ? `:${f.origDstPort}` : ''} answered by ${f.replySrc}): ${(e as Error).message}`)
    }
  }

  close(): void {
    this.socket.close()
  }
}
