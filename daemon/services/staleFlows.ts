// Which UDP conntrack entries a change of Services leaves pointing at the wrong place: the flows
// NATed to an endpoint that no longer serves that address and port. TCP needs nothing of the
// kind (a connection to a gone backend ends with a reset or a timeout, and the client reconnects
// through the Service); a UDP flow has no end the kernel can see, so a client that keeps sending
// from one port (a resolver to its DNS Service) would keep its dead or not-ready backend for as
// long as it sends. kube-proxy clears the same entries. Pure; the services reconciler deletes
// them after the tables changed (net/conntrack.ts).
import type { ConntrackFilter } from '../../net/conntrack.js'
import { familyOf } from './compile.js'
import type { ServiceModel, ServicePortModel } from './model.js'

const endpointKey = (address: string, port: number) => `${address}/${port}`

/** The ready `addr/port` endpoints of a UDP port, or none. */
function serving(p: ServicePortModel | undefined): Set<string> {
  return new Set((p?.endpoints ?? []).filter((e) => e.ready).map((e) => endpointKey(e.address, e.port)))
}

/**
 * The filters of the UDP flows `old` sent somewhere `now` (undefined: the Service is gone) no
 * longer does: per UDP port and per address clients send to (cluster, external and load-balancer
 * IPs; node ports on any address), each endpoint that served it before and does not now.
 */
export function staleUdpFlows(old: ServiceModel | undefined, now: ServiceModel | undefined): ConntrackFilter[] {
  if (!old) return []
  const out: ConntrackFilter[] = []
  const addressesOf = (s: ServiceModel | undefined) => new Set(s ? [...s.clusterIPs, ...s.externalIPs, ...s.loadBalancerIPs] : [])
  const nowAddresses = addressesOf(now)
  for (const p of old.ports) {
    if (p.protocol !== 'UDP') continue
    const q = now?.ports.find((x) => x.protocol === 'UDP' && x.port === p.port)
    const before = p.endpoints.filter((e) => e.ready)
    const still = serving(q)
    for (const ip of addressesOf(old)) {
      const kept = nowAddresses.has(ip) ? still : new Set<string>()
      for (const e of before)
        if (familyOf(e.address) === familyOf(ip) && !kept.has(endpointKey(e.address, e.port))) out.push({ protocol: 'udp', origDst: ip, origDstPort: p.port, replySrc: e.address })
    }
    if (p.nodePort !== undefined) {
      const kept = q?.nodePort === p.nodePort ? still : new Set<string>()
      for (const e of before) if (!kept.has(endpointKey(e.address, e.port))) out.push({ protocol: 'udp', origDstPort: p.nodePort, replySrc: e.address })
    }
  }
  return out
}
