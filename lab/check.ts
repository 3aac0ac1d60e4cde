// `lab check`: proves the Kubernetes network model on the running lab, requirement by
// requirement, with real traffic between real processes in the lab's namespaces:
// - every pod, every node and the outside run a probe agent (a TCP service that reports the
//   source address it saw, and a prober);
// - pod→pod (same node, across nodes), node→pod, pod→node and pod→outside connections are
//   made, and what each end saw is compared with the addresses the plugin handed out;
// - a second process in each pod talks to the first over localhost;
// - each node's flatnetd is asked whether it is ready (/readyz inside the node's namespace):
//   traffic alone cannot tell a dead daemon, whose routes and masquerade stay in the kernel until
//   the cluster changes.
// Requirements and their evaluation are plain data and functions (evaluateCheck), so the matrix
// logic is tested without a lab.
import type { IService } from 'kubernetes-models/v1'
import { formatAddress, parseAddress, type IpFamily } from '../ipam/cidr.js'
import { DAEMON_HEALTH_URL } from './daemon.js'
import { backendOfRoute, flatnetRoutes, type PeerBackend, type PeerRoute } from './kernelView.js'
import { effectiveBackend, expectedBackend, onLink } from './nodes.js'
import type { LabBackend, LabTopology } from './layout.js'
import { errorText } from './exec.js'
import { PROBE_PORT, familiesOf } from './layout.js'
import { httpGetInNetns, probeOnce, startProbeAgents, stopProbeAgents, type HttpAnswer, type ProbeAgent, type ProbeResult } from './probeAgent.js'
import { readLabState, type LabState } from './state.js'
import { openLabObjects } from './objectStore.js'
import {
  checkedServices,
  evaluateServices,
  REFUSED_WITHIN_MS,
  resolveInNetns,
  type ServiceObservations,
  type ServiceProbeRecord,
  type ServiceRequirementId,
  type ServiceRequirementResult,
} from './serviceCheck.js'
import { layoutOf, type LabRef } from './lab.js'
import { POD_IFNAME } from './pods.js'
import { podRef } from './podSpec.js'

export const REQUIREMENTS = [
  { id: 'daemons-ready', title: "every node's flatnetd is ready" },
  { id: 'pod-pod-same-node', title: 'pod → pod on the same node' },
  { id: 'pod-pod-across-nodes', title: 'pod → pod across nodes' },
  { id: 'node-pod', title: 'node → pod' },
  { id: 'pod-node', title: 'pod → node' },
  { id: 'source-preserved', title: 'source address preserved pod → pod (no NAT)' },
  { id: 'own-ip', title: 'pod sees its own IP as others see it' },
  { id: 'localhost', title: 'two processes of one pod talk over localhost' },
  { id: 'masquerade', title: "pod → outside the cluster leaves as its node's IP" },
] as const

export type RequirementId = (typeof REQUIREMENTS)[number]['id']

export type EndpointKind = 'pod' | 'node' | 'outside'

export interface Endpoint {
  name: string
  kind: EndpointKind
  netns: string
  /** Its addresses, one per family it has, primary first (canonical text). */
  addresses: string[]
  /** For a pod: its node; for a node: itself. */
  node?: string
}

export interface ProbeRecord {
  /** Which family the connection used (both ends' addresses of that family). */
  family: IpFamily
  from: string
  to: string
  toAddress: string
  /** The connection was made and the service answered. */
  ok: boolean
  /** The source address the receiving service saw. */
  sourceSeen?: string
  /** The local address the sender's connection used, as the sender saw it. */
  sourceUsed?: string
  error?: string
}

export interface Failure {
  /** The pod or node the failure is about, and the peer where there is one. */
  from: string
  to?: string
  detail: string
}

export interface RequirementResult {
  id: RequirementId
  /** The family this row proves; absent for a requirement about the lab as a whole (daemons-ready). */
  family?: IpFamily
  title: string
  /** Every instance holds (a requirement with no instance, e.g. across nodes with one node, holds vacuously). */
  ok: boolean
  passed: number
  total: number
  /** Why it has no instance, when total is 0. */
  note?: string
  failures: Failure[]
}

/** How one node reaches one peer's subnet of one family, as read from the node's kernel. */
export interface PairBackend {
  family: IpFamily
  from: string
  to: string
  /** What `from` programmed: a route via the peer's node IP (host-gw), by flatnet's VXLAN device, or none. */
  backend: PeerBackend
  /** What the lab's --backend and the pair's placement imply (on-link: same segment). */
  expected: PeerBackend
  /** The route as the kernel lists it, when there is one. */
  route?: PeerRoute
}

export interface CheckReport {
  lab: string
  /** Every requirement holds and every node pair uses the backend the lab expects. */
  ok: boolean
  topology: LabTopology
  backend: LabBackend
  /** Per node pair and family (ordered pairs, family first): the backend each node uses to reach each peer. */
  backends: PairBackend[]
  /** The lab's families, primary first: every requirement but daemons-ready has one row per family. */
  families: IpFamily[]
  nodes: Array<{ name: string; address: string; addresses: string[]; subnet?: string; subnets?: string[]; daemon?: DaemonReadiness }>
  pods: Array<{ name: string; node: string; address: string; addresses: string[] }>
  outside: string
  outsideAddresses: string[]
  requirements: RequirementResult[]
  probes: ProbeRecord[]
  /** The Services section (serviceCheck.ts): present when the lab has Services. */
  services?: { checked: ServiceObservations['services']; requirements: ServiceRequirementResult[]; probes: ServiceProbeRecord[] }
  durationMs: number
}

/** What the check observed, before judging it. */
export interface Observations {
  /** The lab's families, primary first. */
  families: IpFamily[]
  endpoints: Endpoint[]
  probes: ProbeRecord[]
  /** Per pod: addresses (`address/len`, both families, no link-local) of its interface as a process inside the pod sees them. */
  podInterfaceAddresses: Record<string, string[]>
  /** Per pod and family: the second process's connection to 127.0.0.1 or ::1. */
  localhost: Record<string, Partial<Record<IpFamily, ProbeResult>>>
  /** Per node: what its flatnetd's /readyz answered, asked from inside the node's namespace. */
  readyz: Record<string, HttpAnswer>
  /** Per node: the routes to peer subnets flatnetd programmed (`proto 200`), as the kernel lists them. */
  routes?: Record<string, PeerRoute[]>
  /** Through the lab's Services, when it has any. */
  services?: ServiceObservations
}

/** A node as peerBackends needs it: its segment (absent: 0) and its subnets, one per family. */
export interface BackendNode {
  name: string
  segment?: number
  subnets?: string[]
}

/** CIDRs compared in one spelling (the kernel and the daemon may write IPv6 differently). */
function sameCidr(a: string, b: string): boolean {
  const [aa, al] = a.split('/')
  const [ba, bl] = b.split('/')
  return al === bl && canonicalAddress(aa) === canonicalAddress(ba)
}

/**
 * The backend every node uses for every peer, per family: which of the node's flatnet routes
 * leads to the peer's subnet, classified by backendOfRoute, beside what the lab expects for the
 * pair. Pure: no lab needed.
 */
export function peerBackends(nodes: readonly BackendNode[], routes: Record<string, readonly PeerRoute[]>, families: readonly IpFamily[], backend: LabBackend): PairBackend[] {
  const pairs: PairBackend[] = []
  for (const family of families) {
    for (const from of nodes) {
      for (const to of nodes) {
        if (from === to) continue
        const subnet = (to.subnets ?? []).find((s) => familyOfAddress(s) === family)
        if (!subnet) continue
        const route = (routes[from.name] ?? []).find((r) => sameCidr(r.dst, subnet))
        pairs.push({ family, from: from.name, to: to.name, backend: backendOfRoute(route), expected: expectedBackend(backend, onLink(from, to)), ...(route ? { route } : {}) })
      }
    }
  }
  return pairs
}

export interface DaemonReadiness {
  ready: boolean
  /** "ready", or why not: no answer (and the error), or the daemon's own reasons. */
  detail: string
}

/**
 * Judges one /readyz answer: ready only on 200 with `ready: true`. Reads only `ready` and
 * `reasons` of the body, so fields added to it later change nothing here.
 */
export function judgeReadyz(answer: HttpAnswer | undefined): DaemonReadiness {
  if (!answer) return { ready: false, detail: 'not asked' }
  if (answer.error || answer.status === 0) return { ready: false, detail: `flatnetd not answering on ${DAEMON_HEALTH_URL}/readyz: ${answer.error ?? 'no answer'}` }
  let body: { ready?: unknown; reasons?: unknown } = {}
  try {
    const doc: unknown = JSON.parse(answer.body)
    if (doc && typeof doc === 'object') body = doc as typeof body
  } catch {
    // not JSON: judged on the status, the raw body quoted below
  }
  if (answer.status === 200 && body.ready === true) return { ready: true, detail: 'ready' }
  const reasons = Array.isArray(body.reasons) ? body.reasons.filter((r): r is string => typeof r === 'string') : []
  const why = reasons.length ? reasons.join('; ') : `body ${JSON.stringify(answer.body.trim().slice(0, 200))}`
  return { ready: false, detail: `flatnetd not ready (/readyz ${answer.status}): ${why}` }
}

export function familyOfAddress(address: string): IpFamily {
  return address.includes(':') ? 6 : 4
}

/** The endpoint's address of one family, if it has one. */
export function addressOf(e: { addresses: readonly string[] }, family: IpFamily): string | undefined {
  return e.addresses.find((a) => familyOfAddress(a) === family)
}

/** The loopback address a pod's second process uses in each family. */
export const LOOPBACK: Record<IpFamily, string> = { 4: '127.0.0.1', 6: '::1' }

/** Where the plugin puts a pod's address: a host route's worth, /32 or /128. */
const HOST_PREFIX: Record<IpFamily, number> = { 4: 32, 6: 128 }

/**
 * Every probe the check makes, per family, by requirement-independent pair: who connects to whom.
 * A pair is probed in a family when both ends have an address of it.
 */
export function plannedProbes(endpoints: readonly Endpoint[], families: readonly IpFamily[] = [4]): Array<{ from: Endpoint; to: Endpoint; family: IpFamily }> {
  const pods = endpoints.filter((e) => e.kind === 'pod')
  const nodes = endpoints.filter((e) => e.kind === 'node')
  const outside = endpoints.filter((e) => e.kind === 'outside')
  const pairs: Array<{ from: Endpoint; to: Endpoint; family: IpFamily }> = []
  for (const family of families) {
    const has = (e: Endpoint) => addressOf(e, family) !== undefined
    const add = (from: Endpoint, to: Endpoint) => {
      if (has(from) && has(to)) pairs.push({ from, to, family })
    }
    for (const from of pods) for (const to of pods) if (from !== to) add(from, to)
    for (const from of nodes) for (const to of pods) add(from, to)
    for (const from of pods) for (const to of [...nodes, ...outside]) add(from, to)
  }
  return pairs
}

/** `10.244.0.3:7300`, `[fd00:10:244::3]:7300`. */
function hostPort(address: string | undefined, port: number): string {
  return address?.includes(':') ? `[${address}]:${port}` : `${address}:${port}`
}

function describeProbe(p: ProbeRecord): string {
  return p.ok ? `answered, saw source ${p.sourceSeen}` : (p.error ?? 'failed')
}

const key = (id: RequirementId, family: IpFamily | undefined) => `${id}/${family ?? ''}`

/**
 * Judges the observations requirement by requirement, each (but the daemons' readiness) once per
 * family of the lab, rows in requirement order with the families side by side. A pod without an
 * address of a lab family fails every row of that family it takes part in. Pure: no lab needed.
 */
export function evaluateCheck(obs: Observations): RequirementResult[] {
  const byName = new Map(obs.endpoints.map((e) => [e.name, e]))
  const pods = obs.endpoints.filter((e) => e.kind === 'pod')
  const nodes = obs.endpoints.filter((e) => e.kind === 'node')
  const outside = obs.endpoints.find((e) => e.kind === 'outside')
  const results = new Map<string, RequirementResult>()
  for (const r of REQUIREMENTS) {
    for (const family of r.id === 'daemons-ready' ? [undefined] : obs.families) {
      results.set(key(r.id, family), { id: r.id, ...(family ? { family } : {}), title: r.title, ok: true, passed: 0, total: 0, failures: [] })
    }
  }
  const count = (id: RequirementId, family: IpFamily | undefined, pass: boolean, failure: Failure) => {
    const r = results.get(key(id, family))!
    r.total++
    if (pass) r.passed++
    else r.failures.push(failure)
  }

  for (const n of nodes) {
    const daemon = judgeReadyz(obs.readyz[n.name])
    count('daemons-ready', undefined, daemon.ready, { from: n.name, detail: daemon.detail })
  }

  for (const family of obs.families) {
    const ipv = `IPv${family}`
    const addr = (e: Endpoint | undefined) => (e ? addressOf(e, family) : undefined)
    const probes = obs.probes.filter((p) => p.family === family)
    const find = (from: string, to: string) => probes.find((p) => p.from === from && p.to === to)
    /** Why a pair was not probed: an end without an address of this family, else "not probed". */
    const unprobed = (from: string, to: string) => {
      const missing = [from, to].filter((n) => !addr(byName.get(n)))
      return missing.length ? `${missing.join(' and ')} ha${missing.length === 1 ? 's' : 've'} no ${ipv} address` : 'not probed'
    }
    const reach = (id: RequirementId, from: string, to: string) => {
      const p = find(from, to)
      count(id, family, !!p?.ok, { from, to, detail: p ? `connect to ${hostPort(p.toAddress, PROBE_PORT)}: ${describeProbe(p)}` : unprobed(from, to) })
      return p
    }

    for (const a of pods) {
      for (const b of pods) {
        if (a === b) continue
        const p = reach(a.node === b.node ? 'pod-pod-same-node' : 'pod-pod-across-nodes', a.name, b.name)
        // The receiver must see the sender's own pod IP: no NAT between pods, on any node.
        count('source-preserved', family, !!p?.ok && p.sourceSeen === addr(a), {
          from: a.name,
          to: b.name,
          detail: p?.ok ? `${b.name} saw source ${p.sourceSeen}, ${a.name} is ${addr(a)}` : `no connection (${p ? describeProbe(p) : unprobed(a.name, b.name)})`,
        })
      }
    }
    for (const n of nodes) for (const pod of pods) reach('node-pod', n.name, pod.name)
    for (const pod of pods) for (const n of nodes) reach('pod-node', pod.name, n.name)

    for (const pod of pods) {
      const own = addr(pod)
      // Its own view (the address on its interface), the address its connections leave with, and
      // what peers that receive them without NAT (other pods, its own node) report: all the same.
      const problems: string[] = []
      const onInterface = (obs.podInterfaceAddresses[pod.name] ?? []).filter((a) => familyOfAddress(a) === family)
      if (!own) problems.push(`the plugin assigned no ${ipv} address (${POD_IFNAME} has ${onInterface.join(', ') || `no ${ipv} address`})`)
      else if (!onInterface.includes(`${own}/${HOST_PREFIX[family]}`)) {
        problems.push(`${POD_IFNAME} inside the pod has ${onInterface.join(', ') || `no ${ipv} address`}, the plugin assigned ${own}/${HOST_PREFIX[family]}`)
      }
      const unNatted = probes.filter((p) => p.from === pod.name && p.ok && (byName.get(p.to)?.kind === 'pod' || p.to === pod.node))
      if (own && unNatted.length === 0) problems.push('no connection from this pod reached a peer that could report its address')
      for (const p of unNatted) {
        if (p.sourceUsed !== own) problems.push(`its connection to ${p.to} left from ${p.sourceUsed}`)
        if (p.sourceSeen !== own) problems.push(`${p.to} saw it as ${p.sourceSeen}`)
      }
      count('own-ip', family, problems.length === 0, { from: pod.name, detail: problems.join('; ') })

      const local = obs.localhost[pod.name]?.[family]
      const loopback = LOOPBACK[family]
      const localOk = !!local?.ok && local.reply.peer === loopback && local.reply.pid !== local.pid
      count('localhost', family, localOk, {
        from: pod.name,
        detail: !local ? 'not probed' : local.ok ? `answered by pid ${local.reply.pid} to pid ${local.pid}, peer ${local.reply.peer}` : `connect to ${hostPort(loopback, PROBE_PORT)}: ${local.error}`,
      })

      if (outside) {
        const p = find(pod.name, outside.name)
        const nodeAddress = addr(byName.get(pod.node ?? ''))
        count('masquerade', family, !!p?.ok && p.sourceSeen === nodeAddress, {
          from: pod.name,
          to: outside.name,
          detail: p?.ok
            ? `the outside saw source ${p.sourceSeen}, ${pod.node} is ${nodeAddress}`
            : p
              ? `connect to ${hostPort(p.toAddress, PROBE_PORT)}: ${describeProbe(p)}`
              : unprobed(pod.name, outside.name),
        })
      }
    }
  }

  const list = [...results.values()]
  for (const r of list) {
    r.ok = r.failures.length === 0
    if (r.total === 0) {
      if (r.id === 'pod-pod-across-nodes') r.note = 'needs pods on at least two nodes'
      else if (r.id === 'pod-pod-same-node') r.note = 'needs two pods on one node'
      else if (r.id === 'daemons-ready') r.note = 'needs nodes'
      else r.note = 'needs pods'
    }
  }
  return list
}

/**
 * One text per address: the kernel, Node and the plugin may each spell an IPv6 address their own
 * way (`fd00:10:244:1:0:0:0:2`, `fd00:10:244:1::2`); compared as text, they must agree first.
 */
export function canonicalAddress(text: string | undefined): string | undefined {
  if (text === undefined || !text.includes(':')) return text
  try {
    return formatAddress(6, parseAddress(text).value)
  } catch {
    return text
  }
}

export function endpointsOf(state: LabState): Endpoint[] {
  const canonical = (list: readonly string[]) => list.map((a) => canonicalAddress(a)!)
  return [
    ...state.pods.map((p): Endpoint => ({ name: podRef(p), kind: 'pod', netns: p.netns, addresses: canonical(p.addresses), node: p.node })),
    ...state.nodes.map((n): Endpoint => ({ name: n.name, kind: 'node', netns: n.netns, addresses: canonical(n.addresses), node: n.name })),
    { name: 'outside', kind: 'outside', netns: state.network.outsideNetns, addresses: canonical(state.network.outsideAddresses) },
  ]
}

/** Runs every probe from its sender's agent, a bounded number at a time per agent. */
async function runProbes(endpoints: Endpoint[], families: readonly IpFamily[], agents: Map<string, ProbeAgent>): Promise<ProbeRecord[]> {
  const perSender = new Map<string, Array<{ from: Endpoint; to: Endpoint; family: IpFamily }>>()
  for (const pair of plannedProbes(endpoints, families)) {
    const list = perSender.get(pair.from.name) ?? []
    list.push(pair)
    perSender.set(pair.from.name, list)
  }
  const records: ProbeRecord[] = []
  await Promise.all(
    [...perSender.values()].map(async (pairs) => {
      const queue = [...pairs]
      const worker = async () => {
        for (let pair = queue.shift(); pair; pair = queue.shift()) {
          const toAddress = addressOf(pair.to, pair.family)!
          const result = await agents.get(pair.from.netns)!.probe(toAddress, PROBE_PORT)
          const common = { family: pair.family, from: pair.from.name, to: pair.to.name, toAddress }
          records.push(result.ok ? { ...common, ok: true, sourceSeen: canonicalAddress(result.reply.peer), sourceUsed: canonicalAddress(result.local) } : { ...common, ok: false, error: result.error })
        }
      }
      await Promise.all(Array.from({ length: 16 }, worker))
    }),
  )
  const order = new Map(endpoints.map((e, i) => [e.name, i]))
  return records.sort((a, b) => a.family - b.family || order.get(a.from)! - order.get(b.from)! || order.get(a.to)! - order.get(b.to)!)
}

/** Observes the lab with real traffic; every process started here is stopped before returning. */
export async function observeLab(state: LabState): Promise<Observations> {
  const endpoints = endpointsOf(state)
  const families = familiesOf(state.ipFamily)
  const agents = await startProbeAgents(
    endpoints.map((e) => e.netns),
    PROBE_PORT,
  )
  try {
    const [probes, localEntries, readyzEntries, routeEntries] = await Promise.all([
      runProbes(endpoints, families, agents),
      Promise.all(
        state.pods.map(async (p) => {
          const perFamily = await Promise.all(families.map(async (f) => [f, await probeOnce(p.netns, LOOPBACK[f], PROBE_PORT)] as const))
          return [podRef(p), Object.fromEntries(perFamily) as Partial<Record<IpFamily, ProbeResult>>] as const
        }),
      ),
      Promise.all(state.nodes.map(async (n) => [n.name, await httpGetInNetns(n.netns, `${DAEMON_HEALTH_URL}/readyz`)] as const)),
      Promise.all(state.nodes.map(async (n) => [n.name, await flatnetRoutes(n.netns)] as const)),
    ])
    // After the matrix, not beside it: both load the same agents and the machine's two cores.
    const services = await observeServices(state, families, agents)
    const podInterfaceAddresses: Record<string, string[]> = {}
    for (const p of state.pods) podInterfaceAddresses[podRef(p)] = (agents.get(p.netns)!.addresses[p.ifname] ?? []).map(canonicalCidr)
    return {
      families,
      endpoints,
      probes,
      podInterfaceAddresses,
      localhost: Object.fromEntries(localEntries),
      readyz: Object.fromEntries(readyzEntries),
      routes: Object.fromEntries(routeEntries),
      ...(services ? { services } : {}),
    }
  } finally {
    await stopProbeAgents(agents)
  }
}

/** A Service with no endpoint, made by the check for the refusal row and deleted after it. */
const NO_ENDPOINTS_SERVICE = { namespace: 'default', name: 'lab-check-no-endpoints' }
/** How many connections a hairpin probe may take to be answered by its own pod (the proxy picks endpoints at random). */
const HAIRPIN_TRIES = 48

/** Probes through every Service of the lab (serviceCheck.ts); undefined when the lab has none. */
async function observeServices(state: LabState, families: IpFamily[], agents: Map<string, ProbeAgent>): Promise<ServiceObservations | undefined> {
  if (state.datastore.kind !== 'file') return undefined
  const store = await openLabObjects(state)
  try {
    const services = (await store.list('Service')).filter((s) => !(s.metadata?.namespace === NO_ENDPOINTS_SERVICE.namespace && s.metadata?.name === NO_ENDPOINTS_SERVICE.name))
    if (services.length === 0) return undefined
    const all = checkedServices(services, await store.list('Pod'))
    // Connections only to Services backed by lab pods: their responders say who answered (the
    // cluster DNS pod speaks DNS only; its Service is proven by the name lookups).
    const checked = all.filter((s) => s.endpoints.every((e) => state.pods.some((p) => podRef(p) === e)))
    const probes: ServiceProbeRecord[] = []
    const connect = async (
      requirement: ServiceRequirementId,
      family: IpFamily,
      from: string,
      netns: string,
      service: string,
      host: string,
      port: number,
      timeoutMs = 2000,
    ): Promise<ServiceProbeRecord> => {
      const started = Date.now()
      const r = await agents.get(netns)!.probe(host, port, timeoutMs)
      const common = { requirement, family, from, service, target: hostPort(host, port), ms: Date.now() - started }
      return r.ok ? { ...common, ok: true, answeredBy: (r.reply as unknown as { pod?: string }).pod } : { ...common, ok: false, error: r.error }
    }
    const record = async (p: Promise<ServiceProbeRecord>) => void probes.push(await p)
    for (const s of all) {
      if (!checked.includes(s)) continue
      for (const family of families) {
        const ip = s.clusterIPs.find((a) => familyOfAddress(a) === family)
        const work: Array<Promise<void>> = []
        if (ip) {
          // Twice as many connections per pod as endpoints: together they should meet every one.
          const tries = Math.max(4, 2 * s.endpoints.length)
          // All at once: each is a new connection (a new source port), and the endpoint's
          // responder answers the agent's silent connection only after its 150 ms wait.
          for (const p of state.pods) for (let i = 0; i < tries; i++) work.push(record(connect('svc-pod-clusterip', family, podRef(p), p.netns, s.ref, ip, s.port)))
          for (const n of state.nodes) work.push(record(connect('svc-node-clusterip', family, n.name, n.netns, s.ref, ip, s.port)))
          for (const ref of s.affinity ? [] : s.endpoints) {
            const pod = state.pods.find((p) => podRef(p) === ref)
            if (!pod) continue
            work.push(
              (async () => {
                let last: ServiceProbeRecord | undefined
                for (let i = 0; i < HAIRPIN_TRIES && (!last || (last.ok && last.answeredBy !== ref)); i++) last = await connect('svc-hairpin', family, ref, pod.netns, s.ref, ip, s.port)
                probes.push(last!)
              })(),
            )
          }
        }
        if (s.nodePort) {
          for (const n of state.nodes) {
            const address = n.addresses.find((a) => familyOfAddress(a) === family)
            if (address) work.push(record(connect('svc-outside-nodeport', family, 'outside', state.network.outsideNetns, s.ref, address, s.nodePort)))
          }
        }
        await Promise.all(work)
      }
    }
    for (const s of all) {
      if (state.clusterDns) {
        const [ns, name] = s.ref.split('/') as [string, string]
        await Promise.all(
          state.pods.map(async (p) => {
            const r = await resolveInNetns(p.netns, `${name}.${ns}`)
            const common = { requirement: 'svc-dns' as const, family: families[0]!, from: podRef(p), service: s.ref, target: `${name}.${ns}` }
            probes.push(r.ok ? { ...common, ok: true, resolved: r.addresses.map((a) => canonicalAddress(a)!) } : { ...common, ok: false, error: r.error })
          }),
        )
      }
    }
    const obs: ServiceObservations = { families, services: all, probes }
    const client = state.pods[0]
    if (client) {
      try {
        probes.push(await probeNoEndpoints(state, client, families, connect))
      } catch (err) {
        obs.noEndpointsError = `a Service without endpoints: ${errorText(err)}`
      }
    }
    return obs
  } finally {
    await store.close()
  }
}

/**
 * Makes a Service that selects nothing, waits (a few seconds at most) for the proxy to refuse
 * connections to it, and records the last attempt; the Service is deleted again either way.
 */
async function probeNoEndpoints(
  state: LabState,
  client: LabState['pods'][number],
  families: IpFamily[],
  connect: (requirement: ServiceRequirementId, family: IpFamily, from: string, netns: string, service: string, host: string, port: number, timeoutMs?: number) => Promise<ServiceProbeRecord>,
): Promise<ServiceProbeRecord> {
  const store = await openLabObjects(state)
  const key = { kind: 'Service' as const, ...NO_ENDPOINTS_SERVICE }
  try {
    const { object } = await store.apply<IService>({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { ...NO_ENDPOINTS_SERVICE },
      spec: { selector: { 'flatnet.io/lab-check': 'no-endpoints' }, ports: [{ port: 80, protocol: 'TCP' }] },
    })
    const ip = object.spec?.clusterIP
    if (!ip || ip === 'None') throw new Error(`Service ${NO_ENDPOINTS_SERVICE.namespace}/${NO_ENDPOINTS_SERVICE.name} got no cluster IP`)
    const family = families.find((f) => familyOfAddress(ip) === f) ?? families[0]!
    const ref = `${NO_ENDPOINTS_SERVICE.namespace}/${NO_ENDPOINTS_SERVICE.name}`
    const deadline = Date.now() + 8000
    for (;;) {
      const p = await connect('svc-no-endpoints', family, podRef(client), client.netns, ref, ip, 80, 1000)
      // Until the Service is programmed the first SYN goes unanswered and only its retransmission,
      // a second later, meets the reject: a late refusal says "not yet programmed", so probe again.
      if ((!p.ok && p.error === 'ECONNREFUSED' && (p.ms ?? Infinity) < REFUSED_WITHIN_MS) || Date.now() > deadline) return p
      await new Promise((r) => setTimeout(r, 200))
    }
  } finally {
    await store.delete(key).catch(() => undefined)
    await store.close()
  }
}

function canonicalCidr(cidr: string): string {
  const [address, length] = cidr.split('/')
  return `${canonicalAddress(address)}/${length}`
}

export async function labCheck(ref: LabRef): Promise<CheckReport> {
  const started = Date.now()
  const lab = layoutOf(ref)
  const state = await readLabState(lab)
  let obs: Observations
  try {
    obs = await observeLab(state)
  } catch (err) {
    throw new Error(`lab check ${lab.name}: ${errorText(err)}`)
  }
  const requirements = evaluateCheck(obs)
  const backend = effectiveBackend(state)
  const backends = peerBackends(state.nodes, obs.routes ?? {}, obs.families, backend)
  const services = obs.services ? { checked: obs.services.services, requirements: evaluateServices(obs.services), probes: obs.services.probes } : undefined
  return {
    lab: state.name,
    ok: requirements.every((r) => r.ok) && backends.every((b) => b.backend === b.expected) && (services?.requirements.every((r) => r.ok) ?? true),
    topology: state.topology,
    backend,
    backends,
    ...(services ? { services } : {}),
    families: obs.families,
    nodes: obs.endpoints
      .filter((e) => e.kind === 'node')
      .map((e) => {
        const n = state.nodes.find((x) => x.name === e.name)!
        return { name: n.name, address: e.addresses[0]!, addresses: e.addresses, subnet: n.subnet, subnets: n.subnets, daemon: judgeReadyz(obs.readyz[n.name]) }
      }),
    pods: obs.endpoints.filter((e) => e.kind === 'pod').map((e) => ({ name: e.name, node: e.node!, address: e.addresses[0]!, addresses: e.addresses })),
    outside: state.network.outsideAddress,
    outsideAddresses: state.network.outsideAddresses,
    requirements,
    probes: obs.probes,
    durationMs: Date.now() - started,
  }
}
