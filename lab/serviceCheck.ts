// The Services section of `lab check` (shown when the lab has Services): what kube-proxy and
// CoreDNS promise a cluster's pods, proven with real connections through each node's service proxy:
// - pod → ClusterIP: every connection is answered by an endpoint, and together they reach every
//   endpoint (the proxy spreads the load);
// - node → ClusterIP (node-originated traffic goes through the proxy too);
// - outside → NodePort on every node's address;
// - hairpin: an endpoint reaching its own Service is answered, by itself too;
// - names: `<svc>.<ns>` resolves, through the pod's resolv.conf and the cluster DNS, to the
//   Service's cluster IPs;
// - a Service without endpoints refuses a connection at once (a reject, not a drop).
// Judgement (evaluateServices) is a pure function of the observations, tested without a lab.
import type { IPod, IService } from 'kubernetes-models/v1'
import { serviceModels } from '../daemon/services/endpoints.js'
import type { ServiceModel } from '../daemon/services/model.js'
import type { IpFamily } from '../ipam/cidr.js'
import { run } from './exec.js'
import { DEFAULT_POD_NAMESPACE } from './podSpec.js'

export const SERVICE_REQUIREMENTS = [
  { id: 'svc-pod-clusterip', title: 'pod → ClusterIP reaches every endpoint' },
  { id: 'svc-node-clusterip', title: 'node → ClusterIP' },
  { id: 'svc-outside-nodeport', title: "outside → every node's NodePort" },
  { id: 'svc-hairpin', title: 'pod → its own Service (hairpin)' },
  { id: 'svc-dns', title: 'Service names resolve through the cluster DNS' },
  { id: 'svc-no-endpoints', title: 'a Service without endpoints refuses at once' },
] as const

export type ServiceRequirementId = (typeof SERVICE_REQUIREMENTS)[number]['id']

/** A Service the check exercises: one TCP port of it, and the pods behind that port (`[ns/]name`, as the lab names pods). */
export interface CheckedService {
  ref: string
  type: string
  clusterIPs: string[]
  port: number
  nodePort?: number
  endpoints: string[]
  /** `sessionAffinity: ClientIP`: a client sticks to one endpoint, so neither the spread nor a hairpin to itself is expected. */
  affinity?: boolean
}

export interface ServiceProbeRecord {
  requirement: ServiceRequirementId
  family: IpFamily
  from: string
  service: string
  /** `address:port` connected to, or the name looked up. */
  target: string
  ok: boolean
  /** The pod whose responder answered. */
  answeredBy?: string
  /** The addresses a name resolved to. */
  resolved?: string[]
  error?: string
  /** How long the connection attempt took (for the refusal: at once, not a timeout). */
  ms?: number
}

export interface ServiceObservations {
  families: IpFamily[]
  services: CheckedService[]
  probes: ServiceProbeRecord[]
  /** Why the no-endpoint Service could not be tried (e.g. its apply failed); the row then fails. */
  noEndpointsError?: string
}

export interface ServiceRequirementResult {
  id: ServiceRequirementId
  title: string
  ok: boolean
  passed: number
  total: number
  note?: string
  failures: Array<{ from: string; to?: string; detail: string }>
}

/** A refusal slower than this is a dropped packet's timeout in disguise. */
export const REFUSED_WITHIN_MS = 1000

/** The lab's name of a pod from `namespace/name` (podSpec.ts podRef: the default namespace is left out). */
function labRef(key: string): string {
  return key.startsWith(`${DEFAULT_POD_NAMESPACE}/`) ? key.slice(DEFAULT_POD_NAMESPACE.length + 1) : key
}

/** The Services to check: proxied ones with a TCP port and at least one ready endpoint on it. */
export function checkedServices(services: readonly IService[], pods: readonly IPod[]): CheckedService[] {
  const out: CheckedService[] = []
  for (const m of serviceModels({ services, pods, source: 'pods' }) as ServiceModel[]) {
    const port = m.ports.find((p) => p.protocol === 'TCP' && p.endpoints.some((e) => e.ready && e.pod))
    if (!port) continue
    const endpoints = [...new Set(port.endpoints.filter((e) => e.ready && e.pod).map((e) => labRef(e.pod!)))].sort()
    out.push({
      ref: `${m.namespace}/${m.name}`,
      type: m.type,
      clusterIPs: [...m.clusterIPs],
      port: port.port,
      ...(port.nodePort ? { nodePort: port.nodePort } : {}),
      endpoints,
      ...(m.sessionAffinityTimeoutSeconds !== undefined ? { affinity: true } : {}),
    })
  }
  return out
}

export function evaluateServices(obs: ServiceObservations): ServiceRequirementResult[] {
  const rows = new Map<ServiceRequirementId, ServiceRequirementResult>(SERVICE_REQUIREMENTS.map((r) => [r.id, { id: r.id, title: r.title, ok: true, passed: 0, total: 0, failures: [] }]))
  const count = (id: ServiceRequirementId, pass: boolean, failure: { from: string; to?: string; detail: string }) => {
    const r = rows.get(id)!
    r.total++
    if (pass) r.passed++
    else r.failures.push(failure)
  }
  const byService = new Map(obs.services.map((s) => [s.ref, s]))
  const describe = (p: ServiceProbeRecord) => (p.ok ? `answered by ${p.answeredBy}` : (p.error ?? 'failed'))
  const fromEndpoint = (p: ServiceProbeRecord) => !!p.answeredBy && !!byService.get(p.service)?.endpoints.includes(p.answeredBy)

  // One instance per client and Service and family: every connection answered by an endpoint.
  const groups = new Map<string, ServiceProbeRecord[]>()
  for (const p of obs.probes) {
    if (p.requirement === 'svc-no-endpoints' || p.requirement === 'svc-dns' || p.requirement === 'svc-hairpin') continue
    const k = `${p.requirement}|${p.family}|${p.from}|${p.service}|${p.target}`
    groups.set(k, [...(groups.get(k) ?? []), p])
  }
  for (const list of groups.values()) {
    const first = list[0]!
    const bad = list.filter((p) => !p.ok || !fromEndpoint(p))
    count(first.requirement, bad.length === 0, {
      from: first.from,
      to: `${first.service} (${first.target})`,
      detail: bad.length ? `${bad.length} of ${list.length} connections: ${[...new Set(bad.map(describe))].join('; ')}` : '',
    })
  }
  // Spread: the pods' connections to one Service, together, reached every endpoint.
  for (const s of obs.services) {
    if (s.affinity) continue
    for (const family of obs.families) {
      const seen = new Set(obs.probes.filter((p) => p.requirement === 'svc-pod-clusterip' && p.service === s.ref && p.family === family && p.ok).map((p) => p.answeredBy))
      if (!obs.probes.some((p) => p.requirement === 'svc-pod-clusterip' && p.service === s.ref && p.family === family)) continue
      const missing = s.endpoints.filter((e) => !seen.has(e))
      count('svc-pod-clusterip', missing.length === 0, { from: 'pods', to: s.ref, detail: `no connection reached ${missing.join(', ')} of ${s.endpoints.length} endpoints` })
    }
  }
  for (const p of obs.probes.filter((x) => x.requirement === 'svc-hairpin')) {
    count('svc-hairpin', p.ok && p.answeredBy === p.from, { from: p.from, to: `${p.service} (${p.target})`, detail: p.ok ? `never answered by itself (last: ${p.answeredBy})` : describe(p) })
  }
  for (const p of obs.probes.filter((x) => x.requirement === 'svc-dns')) {
    const want = [...(byService.get(p.service)?.clusterIPs ?? [])].sort()
    const got = [...(p.resolved ?? [])].sort()
    count('svc-dns', p.ok && got.join() === want.join(), {
      from: p.from,
      to: p.target,
      detail: p.ok ? `resolved to ${got.join(', ') || 'nothing'}, the Service has ${want.join(', ')}` : (p.error ?? 'not resolved'),
    })
  }
  for (const p of obs.probes.filter((x) => x.requirement === 'svc-no-endpoints')) {
    const refused = !p.ok && p.error === 'ECONNREFUSED' && (p.ms ?? Infinity) < REFUSED_WITHIN_MS
    count('svc-no-endpoints', refused, { from: p.from, to: p.target, detail: p.ok ? `answered by ${p.answeredBy}` : `${p.error} after ${p.ms} ms (want ECONNREFUSED within ${REFUSED_WITHIN_MS} ms)` })
  }
  if (obs.noEndpointsError) count('svc-no-endpoints', false, { from: 'lab check', detail: obs.noEndpointsError })

  const list = [...rows.values()]
  for (const r of list) {
    r.ok = r.failures.length === 0
    if (r.total === 0) {
      r.note =
        r.id === 'svc-outside-nodeport'
          ? 'needs a NodePort Service'
          : r.id === 'svc-hairpin'
            ? 'needs a Service whose endpoint can be probed'
            : r.id === 'svc-no-endpoints'
              ? 'not tried'
              : r.id === 'svc-dns'
                ? 'needs the cluster DNS'
                : 'needs a Service with endpoints'
    }
  }
  return list
}

/** The addresses `getent ahosts NAME` prints inside `netns` (glibc, the pod's resolv.conf). */
export async function resolveInNetns(netns: string, name: string): Promise<{ ok: true; addresses: string[] } | { ok: false; error: string }> {
  const r = await run(['ip', 'netns', 'exec', netns, 'getent', 'ahosts', name], { timeoutMs: 15_000 })
  if (r.code === 2) return { ok: false, error: `${name} not found` }
  if (r.code !== 0) return { ok: false, error: `getent ahosts ${name}: ${r.timedOut ? 'timed out' : `exit ${r.code}`} ${r.stderr.trim()}` }
  return {
    ok: true,
    addresses: [
      ...new Set(
        r.stdout
          .split('\n')
          .map((l) => l.split(/\s+/)[0]!)
          .filter(Boolean),
      ),
    ],
  }
}
