// Routes by the thousand: many RTM_NEWROUTE/RTM_DELROUTE requests packed into one datagram, and
// route dumps parsed straight into RouteInfo. The `netlink` package builds a tree of objects and
// promises per message, which is fine for a pod's handful of routes but, for thousands of peers,
// is most of the daemon's time and memory. The kernel reads every message of a datagram in turn
// and acks each one by its sequence number (an error in one does not stop the others), so a batch
// keeps one answer, and one named error, per route.
import { constants as osConstants, endianness } from 'node:os'
import { RawNetlinkSocket } from 'netlink/dist/raw.js'
import { afOf, ipToBytes, type IpFamily } from './ipbytes.js'
import { withNetns, type NetnsHandle } from './netns.js'
import type { RouteInfo, RouteSpec } from './rtnl.js'
import { parseRoute } from './rtnlCodec.js'

const NETLINK_ROUTE = 0
const NLMSG_ERROR = 2
const NLMSG_DONE = 3
const RTM_NEWROUTE = 24
const RTM_DELROUTE = 25
const RTM_GETROUTE = 26
const NLM_F_REQUEST = 0x1
const NLM_F_ACK = 0x4
const NLM_F_DUMP = 0x300
const NLM_F_REPLACE = 0x100
const NLM_F_EXCL = 0x200
const NLM_F_CREATE = 0x400
const RTA_DST = 1
const RTA_OIF = 4
const RTA_GATEWAY = 5
const RTA_TABLE = 15
const RT_TABLE_MAIN = 254
const RTN_UNICAST = 1
const SCOPE = { universe: 0, link: 253, host: 254 } as const
const SCOPE_NOWHERE = 255
const PROTO_BOOT = 3

/** Messages per datagram: their acks (~1 KB of receive buffer each) must fit the buffer. */
const BATCH = 256
const RECEIVE_BUFFER_BYTES = 4 << 20

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([name, n]) => [n, name]))

export interface RouteOperation {
  op: 'add' | 'replace' | 'delete'
  route: RouteSpec
}

/** The kernel's answer to one operation: undefined when it succeeded, else the errno name (`EEXIST`, …). */
export type RouteOutcome = string | undefined

function align4(n: number): number {
  return (n + 3) & ~3
}

/** Encodes one route request (nlmsghdr + rtmsg + attributes) at `off` of `buf`; returns the new offset. */
function encodeRoute(buf: Buffer, off: number, seq: number, o: RouteOperation): number {
  const r = o.route
  const dst = ipToBytes(r.dst)
  const gw = r.gateway ? ipToBytes(r.gateway) : undefined
  const start = off
  const del = o.op === 'delete'
  const type = del ? RTM_DELROUTE : RTM_NEWROUTE
  const flags = NLM_F_REQUEST | NLM_F_ACK | (o.op === 'add' ? NLM_F_CREATE | NLM_F_EXCL : o.op === 'replace' ? NLM_F_CREATE | NLM_F_REPLACE : 0)
  const table = r.table ?? RT_TABLE_MAIN
  off += 16 // nlmsghdr, length written last
  buf.writeUInt8(afOf(r.family), off)
  buf.writeUInt8(r.dstLength, off + 1)
  buf.writeUInt8(0, off + 2) // src_len
  buf.writeUInt8(0, off + 3) // tos
  buf.writeUInt8(table > 255 ? 252 : table, off + 4)
  // A delete names the protocol only when asked (see rtnl.ts), and scope NOWHERE matches any scope.
  buf.writeUInt8(del ? (r.protocol ?? 0) : (r.protocol ?? PROTO_BOOT), off + 5)
  buf.writeUInt8(del ? SCOPE_NOWHERE : SCOPE[r.scope ?? (r.gateway ? 'universe' : 'link')], off + 6)
  buf.writeUInt8(RTN_UNICAST, off + 7)
  buf.writeUInt32LE(r.onlink ? 4 : 0, off + 8)
  off += 12
  const attr = (t: number, payload: Buffer | number) => {
    const len = 4 + (typeof payload === 'number' ? 4 : payload.length)
    buf.writeUInt16LE(len, off)
    buf.writeUInt16LE(t, off + 2)
    if (typeof payload === 'number') buf.writeUInt32LE(payload, off + 4)
    else payload.copy(buf, off + 4)
    buf.fill(0, off + len, off + align4(len))
    off += align4(len)
  }
  attr(RTA_TABLE, table)
  attr(RTA_DST, dst)
  if (gw) attr(RTA_GATEWAY, gw)
  if (r.oif) attr(RTA_OIF, r.oif)
  buf.writeUInt32LE(off - start, start)
  buf.writeUInt16LE(type, start + 4)
  buf.writeUInt16LE(flags, start + 6)
  buf.writeUInt32LE(seq, start + 8)
  buf.writeUInt32LE(0, start + 12) // port: the kernel fills in ours
  return off
}

/** Upper bound of one encoded IPv6 route request. */
const MAX_ROUTE_MESSAGE = 16 + 12 + 8 + 20 + 20 + 8

interface Dump {
  seq: number
  routes: RouteInfo[]
  done(err?: Error): void
}

export class RouteBatchSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff)
  private readonly pending = new Map<number, (errno: number) => void>()
  private dump: Dump | undefined
  /** Dumps take turns: the kernel answers one dump per socket at a time, and two reconcilers share this socket. */
  private dumpTurn: Promise<unknown> = Promise.resolve()
  private failure: Error | undefined

  private constructor(
    private readonly raw: RawNetlinkSocket,
    onError: (e: Error) => void,
  ) {
    raw.on('message', (msg) => this.receive(msg))
    // ENOBUFS here means the kernel dropped answers: those requests run into their deadline.
    raw.on('error', (e) => onError(new Error(`route batch socket: ${e.code ?? e.message}`)))
    raw.unref()
  }

  /** Opens the socket in the current namespace, or inside `ns`. */
  static open(onError: (e: Error) => void, ns?: NetnsHandle): RouteBatchSocket {
    if (endianness() !== 'LE') throw new Error('route batch socket: netlink messages are encoded little-endian only')
    const create = () => new RawNetlinkSocket(NETLINK_ROUTE, { recvBufferSize: RECEIVE_BUFFER_BYTES, sendBufferSize: RECEIVE_BUFFER_BYTES })
    return new RouteBatchSocket(ns ? withNetns(ns, create) : create(), onError)
  }

  close(): void {
    this.failure = new Error('route batch socket closed')
    for (const resolve of this.pending.values()) resolve(-osConstants.errno.ECANCELED)
    this.pending.clear()
    this.dump?.done(this.failure)
    this.raw.close()
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0 || 1
    return this.seq
  }

  private receive(msg: Buffer): void {
    for (let off = 0; off + 16 <= msg.length;) {
      const len = msg.readUInt32LE(off)
      if (len < 16 || off + len > msg.length) break
      const type = msg.readUInt16LE(off + 4)
      const seq = msg.readUInt32LE(off + 8)
      const dump = this.dump
      if (dump && seq === dump.seq) {
        if (type === RTM_NEWROUTE) dump.routes.push(parseRoute(msg.subarray(off + 16, off + len)))
        else if (type === NLMSG_DONE) dump.done()
        else if (type === NLMSG_ERROR) {
          const errno = -msg.readInt32LE(off + 16)
          dump.done(new Error(`dump routes: ${errnoNames.get(errno) ?? `errno ${errno}`}`))
        }
      } else if (type === NLMSG_ERROR) {
        const resolve = this.pending.get(seq)
        if (resolve) {
          this.pending.delete(seq)
          resolve(-msg.readInt32LE(off + 16))
        }
      }
      off += align4(len)
    }
  }

  private send(buf: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.raw.send(buf, { port: 0 }, (e) => (e ? reject(new Error(`send to netlink: ${e.code ?? e.message}`)) : resolve())))
  }

  /**
   * Sends the operations in batches and returns each one's outcome, in order. An operation the
   * kernel did not answer within timeoutMs gets 'ETIMEDOUT'.
   */
  async apply(ops: readonly RouteOperation[], timeoutMs = 10_000): Promise<RouteOutcome[]> {
    if (this.failure) throw this.failure
    const outcomes: RouteOutcome[] = new Array(ops.length)
    this.raw.ref()
    try {
      for (let first = 0; first < ops.length; first += BATCH) {
        const chunk = ops.slice(first, first + BATCH)
        const buf = Buffer.allocUnsafe(chunk.length * MAX_ROUTE_MESSAGE)
        let off = 0
        const answers: Array<Promise<number>> = []
        const seqs: number[] = []
        for (const o of chunk) {
          const seq = this.nextSeq()
          seqs.push(seq)
          off = encodeRoute(buf, off, seq, o)
          answers.push(new Promise<number>((resolve) => this.pending.set(seq, resolve)))
        }
        const timer = setTimeout(() => {
          for (const s of seqs) this.pending.get(s)?.(-osConstants.errno.ETIMEDOUT)
          for (const s of seqs) this.pending.delete(s)
        }, timeoutMs)
        try {
          await this.send(buf.subarray(0, off))
          const errnos = await Promise.all(answers)
          errnos.forEach((e, i) => (outcomes[first + i] = e === 0 ? undefined : (errnoNames.get(e) ?? `errno ${e}`)))
        } catch (e) {
          for (const s of seqs) this.pending.delete(s)
          throw e
        } finally {
          clearTimeout(timer)
        }
      }
    } finally {
      if (this.pending.size === 0) this.raw.unref()
    }
    return outcomes
  }

  /**
   * Every unicast route of one family in one table (main by default), parsed without intermediate
   * objects. A dump asked while another runs waits for it (the routes and the VXLAN reconcilers
   * share this socket and may sync at the same moment).
   */
  listRoutes(family: IpFamily, table = RT_TABLE_MAIN, timeoutMs = 15_000): Promise<RouteInfo[]> {
    const turn = this.dumpTurn.then(
      () => this.listRoutesNow(family, table, timeoutMs),
      () => this.listRoutesNow(family, table, timeoutMs),
    )
    this.dumpTurn = turn.catch(() => undefined)
    return turn
  }

  private async listRoutesNow(family: IpFamily, table: number, timeoutMs: number): Promise<RouteInfo[]> {
    if (this.failure) throw this.failure
    if (this.dump) throw new Error('dump routes: another dump is in progress on this socket')
    const seq = this.nextSeq()
    const req = Buffer.alloc(16 + 12)
    req.writeUInt32LE(req.length, 0)
    req.writeUInt16LE(RTM_GETROUTE, 4)
    req.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6)
    req.writeUInt32LE(seq, 8)
    req.writeUInt8(afOf(family), 16)
    this.raw.ref()
    try {
      const routes = await new Promise<RouteInfo[]>((resolve, reject) => {
        const timer = setTimeout(() => dump.done(new Error(`dump routes: no answer within ${timeoutMs} ms`)), timeoutMs)
        const dump: Dump = {
          seq,
          routes: [],
          done: (err) => {
            clearTimeout(timer)
            if (this.dump === dump) this.dump = undefined
            if (err) reject(err)
            else resolve(dump.routes)
          },
        }
        this.dump = dump
        this.send(req).catch((e: Error) => dump.done(e))
      })
      return routes.filter((r) => r.table === table && r.type === RTN_UNICAST)
    } finally {
      if (this.pending.size === 0) this.raw.unref()
    }
  }
}
