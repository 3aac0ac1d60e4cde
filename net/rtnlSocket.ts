// Request/answer over a raw netlink socket (NETLINK_ROUTE unless told otherwise; conntrack.ts uses
// NETLINK_NETFILTER): sequence numbers, acks, errors and multipart dumps, for the hand-encoded
// messages of rtnlCodec.ts and conntrack.ts. Only the `netlink` package's lowest layer
// (the native socket) is used; its message layers are generic and costly to load.
import { endianness } from 'node:os'
import { RawNetlinkSocket } from 'netlink/dist/raw.js'
import { NetlinkError } from './netlinkError.js'

const NETLINK_ROUTE = 0
const NLMSG_ERROR = 2
const NLMSG_DONE = 3
const NLM_F_REQUEST = 0x1
const NLM_F_ACK = 0x4
const NLM_F_DUMP = 0x300

interface Pending {
  dump: boolean
  replies: Buffer[]
  resolve(replies: Buffer[]): void
  reject(e: Error): void
}

export class RtnlSocket {
  /** The native socket; listen to its 'error' event to learn of dropped answers (ENOBUFS). */
  readonly socket: RawNetlinkSocket
  private seq = 0
  private readonly pending = new Map<number, Pending>()
  /** The last dump asked: the next one waits for it (see request). */
  private dumpTurn: Promise<unknown> = Promise.resolve()

  constructor(protocol = NETLINK_ROUTE) {
    if (endianness() !== 'LE') throw new Error('rtnetlink: messages are encoded little-endian only')
    this.socket = new RawNetlinkSocket(protocol)
    this.socket.on('message', (msg: Buffer) => this.receive(msg))
    // Held referenced only while a request waits, so an idle socket never keeps a process alive.
    this.socket.unref()
  }

  close(): void {
    this.socket.close()
  }

  /**
   * Sends one request (REQUEST|ACK plus `flags`) and resolves the payloads of its answers: the
   * reply of a get, every part of a dump, nothing for an acknowledged change. A refusal rejects
   * with a NetlinkError (errno and its name); no answer within timeoutMs with 'Timeout has been reached'.
   * Dumps take turns: the kernel refuses a dump on a socket in the middle of another (EBUSY), and
   * the daemon's reconcilers share one socket and may dump at the same moment.
   */
  request(type: number, payload: Buffer, flags = 0, timeoutMs?: number): Promise<Buffer[]> {
    if ((flags & NLM_F_DUMP) !== NLM_F_DUMP) return this.send(type, payload, flags, timeoutMs)
    const turn = this.dumpTurn.then(() => this.send(type, payload, flags, timeoutMs))
    this.dumpTurn = turn.catch(() => undefined)
    return turn
  }

  private send(type: number, payload: Buffer, flags: number, timeoutMs?: number): Promise<Buffer[]> {
    const seq = (this.seq = (this.seq % 0xffffffff) + 1)
    const header = Buffer.alloc(16)
    header.writeUInt32LE(16 + payload.length, 0)
    header.writeUInt16LE(type, 4)
    header.writeUInt16LE(flags | NLM_F_REQUEST | NLM_F_ACK, 6)
    header.writeUInt32LE(seq, 8)
    // port 0: the kernel fills in ours
    return new Promise<Buffer[]>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const done = () => {
        if (timer) clearTimeout(timer)
        this.pending.delete(seq)
        if (this.pending.size === 0) this.socket.unref()
      }
      this.pending.set(seq, {
        dump: (flags & NLM_F_DUMP) === NLM_F_DUMP,
        replies: [],
        resolve: (r) => {
          done()
          resolve(r)
        },
        reject: (e) => {
          done()
          reject(e)
        },
      })
      if (this.pending.size === 1) this.socket.ref()
      if (timeoutMs) timer = setTimeout(() => this.pending.get(seq)?.reject(new Error('Timeout has been reached')), timeoutMs)
      this.socket.send(Buffer.concat([header, payload]), { port: 0 }, (e) => {
        if (e) this.pending.get(seq)?.reject(e)
      })
    })
  }

  private receive(msg: Buffer): void {
    for (let off = 0; off + 16 <= msg.length;) {
      const len = msg.readUInt32LE(off)
      if (len < 16 || off + len > msg.length) break
      const p = this.pending.get(msg.readUInt32LE(off + 8))
      if (p) {
        const type = msg.readUInt16LE(off + 4)
        if (type === NLMSG_ERROR) {
          const errno = msg.readInt32LE(off + 16)
          if (errno === 0) p.resolve(p.replies)
          else p.reject(new NetlinkError(-errno, 'netlink request'))
        } else if (type === NLMSG_DONE) {
          p.resolve(p.replies)
        } else {
          // A copy: the datagram's buffer is the native layer's to reuse.
          p.replies.push(Buffer.from(msg.subarray(off + 16, off + len)))
          // A get's single reply is all there is; its ack follows and finds nothing pending.
          if (!p.dump) p.resolve(p.replies)
        }
      }
      off += (len + 3) & ~3
    }
  }
}
