// The bytes between flatnet's native CNI entry (plugin/entry/flatnet.c) and flatnetd's CNI
// socket. Pure functions over buffers; the socket, the descriptors and the call live in
// cniServer.ts. All integers little-endian.
//   request body  = "FNC1", i32 netns state, u32 count, count x (u32 len, "KEY=VALUE"), u32 len, stdin
//                   netns state: -1 no CNI_NETNS; 0 its descriptor is attached; > 0 the errno with
//                   which the entry's open(CNI_NETNS) failed
//   response body = u32 exit code, then the document bytes the entry prints as they are;
//                   exit code DECLINED: not served here, the entry runs the Node plugin itself;
//                   exit code with STDERR_FOLLOWS set: u32 length and the call's stderr bytes
//                   come before the document (only to an entry that sent ENTRY_TAKES_STDERR)
// Both travel behind a u32 body length (the addon's receiveFrame reads the request's).
import { constants } from 'node:os'

export const REQUEST_MAGIC = 'FNC1'
/** The daemon will not hold more than this of one request in memory. */
export const MAX_REQUEST_BYTES = 4 << 20
export const DECLINED = 0xffffffff
/**
 * The request variable by which an entry says it reads a stderr section. A variable (not a new
 * magic) because a daemon of the previous version passes an unknown FLATNET_* variable along
 * harmlessly and answers the old way, and an entry of the previous version never sends it: any
 * entry works with any daemon during an upgrade.
 */
export const ENTRY_TAKES_STDERR = 'FLATNET_ENTRY_STDERR'
/** Set in the exit code word when a stderr section follows (exit codes are 0 or 1 otherwise). */
export const STDERR_FOLLOWS = 0x40000000
/** The most stderr of one call sent back; more is cut with a note (a runtime logs it, no more). */
export const MAX_STDERR_BYTES = 64 << 10

export type NetnsState = { kind: 'none' } | { kind: 'descriptor' } | { kind: 'open-failed'; code: string }

export interface CniRequest {
  env: Record<string, string>
  stdin: Buffer
  netns: NetnsState
}

export class WireError extends Error {}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]))

/** Decodes one request body; throws WireError naming what is malformed. */
export function decodeCniRequest(body: Buffer): CniRequest {
  let at = 0
  const need = (n: number, what: string) => {
    if (at + n > body.length) throw new WireError(`decode CNI request: truncated at ${what} (byte ${at} of ${body.length})`)
  }
  need(4, 'magic')
  if (body.toString('latin1', 0, 4) !== REQUEST_MAGIC) throw new WireError('decode CNI request: not a flatnet CNI request (bad magic)')
  at = 4
  need(8, 'header')
  const state = body.readInt32LE(at)
  const count = body.readUInt32LE(at + 4)
  at += 8
  const env: Record<string, string> = {}
  for (let i = 0; i < count; i++) {
    need(4, `variable ${i} length`)
    const len = body.readUInt32LE(at)
    at += 4
    need(len, `variable ${i}`)
    const text = body.toString('utf8', at, at + len)
    at += len
    const eq = text.indexOf('=')
    if (eq <= 0) throw new WireError(`decode CNI request: variable ${i} is not KEY=VALUE`)
    const key = text.slice(0, eq)
    // Only what the entry forwards: anything else is not a CNI call's parameter.
    if (!key.startsWith('CNI_') && !key.startsWith('FLATNET_')) throw new WireError(`decode CNI request: variable ${key.slice(0, 40)} is neither CNI_* nor FLATNET_*`)
    env[key] = text.slice(eq + 1)
  }
  need(4, 'stdin length')
  const stdinLen = body.readUInt32LE(at)
  at += 4
  need(stdinLen, 'stdin')
  const stdin = body.subarray(at, at + stdinLen)
  at += stdinLen
  if (at !== body.length) throw new WireError(`decode CNI request: ${body.length - at} bytes after the end`)
  const netns: NetnsState =
    state === -1 ? { kind: 'none' } : state === 0 ? { kind: 'descriptor' } : state > 0 ? { kind: 'open-failed', code: errnoNames.get(state) ?? `errno ${state}` } : invalidState(state)
  return { env, stdin, netns }
}

function invalidState(state: number): never {
  throw new WireError(`decode CNI request: netns state ${state} is not -1, 0 or an errno`)
}

/** The request the native entry sends, for tests and benchmarks that speak the protocol from Node. */
export function encodeCniRequest(req: CniRequest): Buffer {
  const state = req.netns.kind === 'none' ? -1 : req.netns.kind === 'descriptor' ? 0 : Number(constants.errno[req.netns.code as keyof typeof constants.errno] ?? 5)
  const parts: Buffer[] = []
  const u32 = (v: number) => {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(v)
    parts.push(b)
  }
  parts.push(Buffer.from(REQUEST_MAGIC, 'latin1'))
  const s = Buffer.alloc(4)
  s.writeInt32LE(state)
  parts.push(s)
  const vars = Object.entries(req.env)
  u32(vars.length)
  for (const [k, v] of vars) {
    const b = Buffer.from(`${k}=${v}`)
    u32(b.length)
    parts.push(b)
  }
  u32(req.stdin.length)
  parts.push(req.stdin)
  const body = Buffer.concat(parts)
  const len = Buffer.alloc(4)
  len.writeUInt32LE(body.length)
  return Buffer.concat([len, body])
}

/** A whole response frame: the length, the exit code, [the stderr section,] the document bytes. */
export function encodeCniResponse(exitCode: number, document: Buffer, stderr?: Buffer): Buffer {
  const head = Buffer.alloc(stderr ? 12 : 8)
  head.writeUInt32LE(head.length - 4 + (stderr?.length ?? 0) + document.length, 0)
  head.writeUInt32LE((stderr ? exitCode | STDERR_FOLLOWS : exitCode) >>> 0, 4)
  if (stderr) head.writeUInt32LE(stderr.length, 8)
  return Buffer.concat(stderr ? [head, stderr, document] : [head, document])
}

/** Decodes a whole response frame (tests and the benchmark's client). */
export function decodeCniResponse(frame: Buffer): { exitCode: number; document: Buffer; stderr?: Buffer } {
  if (frame.length < 8 || frame.readUInt32LE(0) !== frame.length - 4) throw new WireError(`decode CNI response: ${frame.length} bytes is not one whole frame`)
  const word = frame.readUInt32LE(4)
  if (word === DECLINED || !(word & STDERR_FOLLOWS)) return { exitCode: word, document: frame.subarray(8) }
  if (frame.length < 12 || 12 + frame.readUInt32LE(8) > frame.length) throw new WireError(`decode CNI response: the stderr section overruns the ${frame.length}-byte frame`)
  const end = 12 + frame.readUInt32LE(8)
  return { exitCode: word & ~STDERR_FOLLOWS, stderr: frame.subarray(12, end), document: frame.subarray(end) }
}
