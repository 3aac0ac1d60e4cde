// The lab's LoadBalancer controller, as cloud-provider-kind is for kind: every Service of type
// LoadBalancer gets one address per family of the Service from the pool at the top of the node
// network (layout.ts LOAD_BALANCER_POOL), written to `status.loadBalancer.ingress`; the service
// proxy of every node DNATs it, and the outside namespace routes the pool to the nodes.
// Pure: which status each Service should have; loadBalancerController.ts writes it.
import type { IService } from 'kubernetes-models/v1'
import type { IpFamily } from '../ipam/cidr.js'
import { LOAD_BALANCER_POOL, labAddress } from './layout.js'

/** The pool's addresses of one family, in order (172.30.0.240 … 172.30.0.254). */
export function poolAddresses(family: IpFamily): string[] {
  const out: string[] = []
  for (let h = LOAD_BALANCER_POOL.firstHost; h <= LOAD_BALANCER_POOL.lastHost; h++) out.push(labAddress(h, family))
  return out
}

export interface IngressChange {
  namespace: string
  name: string
  /** The ingress addresses the Service's status must list (empty: none, the Service is no LoadBalancer any more). */
  ingress: string[]
}

function ingressOf(svc: IService): string[] {
  return (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip).filter((ip): ip is string => !!ip)
}

function familiesOfService(svc: IService): IpFamily[] {
  const fromSpec = (svc.spec?.ipFamilies ?? []).map((f) => (f === 'IPv6' ? 6 : 4) as IpFamily)
  if (fromSpec.length) return fromSpec
  const ips = svc.spec?.clusterIPs?.length ? svc.spec.clusterIPs : svc.spec?.clusterIP ? [svc.spec.clusterIP] : []
  const fams = ips.filter((ip) => ip !== 'None').map((ip) => (ip.includes(':') ? 6 : 4) as IpFamily)
  return fams.length ? fams : [4]
}

/**
 * The status changes that bring every Service in line: a LoadBalancer Service keeps the pool
 * addresses it has (an address never moves while its Service lives) and gets a free one for each
 * family it lacks; a Service that stopped being a LoadBalancer gives its addresses back. Services
 * are served in namespace/name order, so two controllers would agree; `families` limits the pool
 * to the lab's families.
 */
export function loadBalancerChanges(services: readonly IService[], families: readonly IpFamily[]): IngressChange[] {
  const pools = new Map(families.map((f) => [f, poolAddresses(f)]))
  const inPool = (ip: string) => [...pools.values()].some((p) => p.includes(ip))
  const taken = new Set<string>()
  const lbs = services.filter((s) => s.spec?.type === 'LoadBalancer')
  // First every kept address, so a new Service never takes one an older Service holds.
  for (const s of lbs) for (const ip of ingressOf(s)) if (inPool(ip) && !taken.has(ip)) taken.add(ip)
  const changes: IngressChange[] = []
  for (const s of services) {
    const namespace = s.metadata?.namespace ?? 'default'
    const name = s.metadata?.name ?? ''
    const have = ingressOf(s)
    if (s.spec?.type !== 'LoadBalancer') {
      if (have.some(inPool)) changes.push({ namespace, name, ingress: [] })
      continue
    }
    const want: string[] = []
    for (const family of familiesOfService(s)) {
      const pool = pools.get(family)
      if (!pool) continue
      const kept = have.find((ip) => pool.includes(ip))
      const ip = kept ?? pool.find((a) => !taken.has(a))
      if (ip === undefined) continue // the pool is exhausted: the Service stays pending, as upstream
      taken.add(ip)
      want.push(ip)
    }
    if (want.join() !== have.join()) changes.push({ namespace, name, ingress: want })
  }
  return changes
}
