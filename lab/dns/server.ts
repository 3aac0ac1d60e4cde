// The lab's cluster DNS server: answers the zone of ./zone.ts over UDP and TCP (RFC 1035 4.2: the
// same messages, TCP ones framed by a 2-byte length; glibc retries over TCP when a UDP answer
// is truncated, and `getent ahosts` of a headless Service with many pods can be). The wire
// format is dns-packet's; what to answer is zone.ts's.
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { createServer, type Server, type Socket } from 'node:net'
import dnsPacket from 'dns-packet'
import { answer, RECORD_TTL_SECONDS, type Answer, type Zone } from './zone.js'

const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const
/** A UDP answer larger than this (RFC 1035's limit without EDNS) is truncated: the client asks again over TCP. */
const UDP_ANSWER_LIMIT = 512

/** Builds the response to one query message; undefined for a message that is no query at all. */
export function respond(zone: Zone, query: Buffer, overUdp: boolean): Buffer | undefined {
  let q: dnsPacket.DecodedPacket
  try {
    q = dnsPacket.decode(query)
  } catch {
    return undefined // not DNS: say nothing, as servers do with garbage
  }
  if (q.type !== 'query') return undefined
  const question = q.questions?.[0]
  const base = { type: 'response' as const, id: q.id, questions: q.questions ?? [] }
  const rd = (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED
  const opcode = ((q.flags ?? 0) >> 11) & 0xf
  if (opcode !== 0 || !question || q.questions!.length !== 1) return dnsPacket.encode({ ...base, flags: rd | RCODE.NOTIMP, answers: [] })
  const a: Answer = answer(zone, question.name, question.type)
  const answers = a.rcode === 'NOERROR' ? a.records.map((r) => ({ name: r.name, type: r.type, class: 'IN' as const, ttl: RECORD_TTL_SECONDS, data: r.data })) : []
  const authoritative = a.rcode === 'REFUSED' ? 0 : dnsPacket.AUTHORITATIVE_ANSWER
  // NXDOMAIN and NODATA carry the zone's SOA so resolvers may cache the negative answer (RFC 2308).
  const soa =
    a.rcode === 'NXDOMAIN' || (a.rcode === 'NOERROR' && answers.length === 0)
      ? [
          {
            name: zone.domain,
            type: 'SOA' as const,
            class: 'IN' as const,
            ttl: RECORD_TTL_SECONDS,
            data: { mname: `ns.dns.${zone.domain}`, rname: `hostmaster.${zone.domain}`, serial: 1, refresh: 7200, retry: 1800, expire: 86400, minimum: RECORD_TTL_SECONDS },
          },
        ]
      : []
  const flags = authoritative | rd | RCODE[a.rcode]
  const full = dnsPacket.encode({ ...base, flags, answers, authorities: soa })
  if (!overUdp || full.length <= UDP_ANSWER_LIMIT) return full
  return dnsPacket.encode({ ...base, flags: flags | (1 << 9) /* TC */, answers: [] })
}

export interface DnsServer {
  /** The zone answered from now on (the caller rebuilds it when Services or Pods change). */
  setZone(zone: Zone): void
  close(): Promise<void>
}

function serveTcpClient(socket: Socket, zone: () => Zone): void {
  let buffered = Buffer.alloc(0)
  socket.on('error', () => {})
  socket.setTimeout(10_000, () => socket.destroy())
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    while (buffered.length >= 2) {
      const length = buffered.readUInt16BE(0)
      if (buffered.length < 2 + length) return
      const message = buffered.subarray(2, 2 + length)
      buffered = buffered.subarray(2 + length)
      const reply = respond(zone(), message, false)
      if (!reply) return void socket.destroy()
      const framed = Buffer.alloc(2 + reply.length)
      framed.writeUInt16BE(reply.length, 0)
      reply.copy(framed, 2)
      socket.write(framed)
    }
  })
}

/**
 * Listens on port `port` of every address of this namespace (`::` with IPv4 mapped, or 0.0.0.0
 * where the namespace has no IPv6), UDP and TCP, and answers from the zone given last.
 */
export async function startDnsServer(initial: Zone, port = 53): Promise<DnsServer> {
  let zone = initial
  const current = () => zone
  const udp = await bindUdp(port, current)
  const tcp = await listenTcp(port, current)
  return {
    setZone: (z) => {
      zone = z
    },
    close: async () => {
      udp.close()
      await new Promise<void>((resolve) => tcp.close(() => resolve()))
    },
  }
}

function bindUdp(port: number, zone: () => Zone): Promise<UdpSocket> {
  const bind = (type: 'udp4' | 'udp6', host: string) =>
    new Promise<UdpSocket>((resolve, reject) => {
      const socket = createSocket({ type, ipv6Only: false })
      socket.once('error', reject)
      socket.on('message', (msg, rinfo) => {
        const reply = respond(zone(), msg, true)
        if (reply) socket.send(reply, rinfo.port, rinfo.address)
      })
      socket.bind(port, host, () => {
        socket.removeListener('error', reject)
        socket.on('error', () => {})
        resolve(socket)
      })
    })
  return bind('udp6', '::').catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EAFNOSUPPORT' && err.code !== 'EADDRNOTAVAIL') throw new Error(`cluster DNS: listen on UDP ${port}: ${err.code ?? err.message}`)
    return bind('udp4', '0.0.0.0')
  })
}

function listenTcp(port: number, zone: () => Zone): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => serveTcpClient(socket, zone))
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EAFNOSUPPORT' && err.code !== 'EADDRNOTAVAIL') return reject(new Error(`cluster DNS: listen on TCP ${port}: ${err.code ?? err.message}`))
      server.once('error', (e2: NodeJS.ErrnoException) => reject(new Error(`cluster DNS: listen on TCP ${port}: ${e2.code ?? e2.message}`)))
      server.listen(port, '0.0.0.0', () => resolve(server))
    })
    server.listen({ port, host: '::', ipv6Only: false }, () => resolve(server))
  })
}
