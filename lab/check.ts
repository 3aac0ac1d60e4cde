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
import { DAEMON_HEALTH_URL } from './daemon.js'
import { errorText } from './exec.js'
import { PROBE_PORT } from './layout.js'
import { httpGetInNetns, probeOnce, startProbeAgents, stopProbeAgents, type HttpAnswer, type ProbeAgent, type ProbeResult } from './probeAgent.js'
import { readLabState, type LabState } from './state.js'
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
  address: string
  /** For a pod: its node; for a node: itself. */
  node?: string
}

export interface ProbeRecord {
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
  title: string
  /** Every instance holds (a requirement with no instance, e.g. across nodes with one node, holds vacuously). */
  ok: boolean
  passed: number
  total: number
  /** Why it has no instance, when total is 0. */
  note?: string
  failures: Failure[]
}

export interface CheckReport {
  lab: string
  ok: boolean
  nodes: Array<{ name: string; address: string; subnet?: string; daemon?: DaemonReadiness }>
  pods: Array<{ name: string; node: string; address: string }>
  outside: string
  requirements: RequirementResult[]
  probes: ProbeRecord[]
  durationMs: number
}

/** What the check observed, before judging it. */
export interface Observations {
  endpoints: Endpoint[]
  probes: ProbeRecord[]
  /** Per pod: IPv4 addresses of its interface as a process inside the pod sees them. */
  podInterfaceAddresses: Record<string, string[]>
  /** Per pod: the second process's connection to 127.0.0.1. */
  localhost: Record<string, ProbeResult>
  /** Per node: what its flatnetd's /readyz answered, asked from inside the node's namespace. */
  readyz: Record<string, HttpAnswer>
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

/** Every probe the check makes, by requirement-independent pair: who connects to whom. */
export function plannedProbes(endpoints: readonly Endpoint[]): Array<{ from: Endpoint; to: Endpoint }> {
  const pods = endpoints.filter((e) => e.kind === 'pod')
  const nodes = endpoints.filter((e) => e.kind === 'node')
  const outside = endpoints.filter((e) => e.kind === 'outside')
  const pairs: Array<{ from: Endpoint; to: Endpoint }> = []
  for (const from of pods) for (const to of pods) if (from !== to) pairs.push({ from, to })
  for (const from of nodes) for (const to of pods) pairs.push({ from, to })
  for (const from of pods) for (const to of [...nodes, ...outside]) pairs.push({ from, to })
  return pairs
}

function describeProbe(p: ProbeRecord): string {
  return p.ok ? `answered, saw source ${p.sourceSeen}` : (p.error ?? 'failed')
}

/** Judges the observations requirement by requirement. Pure: no lab needed. */
export function evaluateCheck(obs: Observations): RequirementResult[] {
  const byName = new Map(obs.endpoints.map((e) => [e.name, e]))
  const pods = obs.endpoints.filter((e) => e.kind === 'pod')
  const nodes = obs.endpoints.filter((e) => e.kind === 'node')
  const find = (from: string, to: string) => obs.probes.find((p) => p.from === from && p.to === to)
  const results = new Map<RequirementId, RequirementResult>()
  for (const r of REQUIREMENTS) results.set(r.id, { id: r.id, title: r.title, ok: true, passed: 0, total: 0, failures: [] })
  const count = (id: RequirementId, pass: boolean, failure: Failure) => {
    const r = results.get(id)!
    r.total++
    if (pass) r.passed++
    else r.failures.push(failure)
  }
  const reach = (id: RequirementId, from: string, to: string) => {
    const p = find(from, to)
    const target = byName.get(to)
    count(id, !!p?.ok, { from, to, detail: p ? `connect to ${target?.address}:${PROBE_PORT}: ${describeProbe(p)}` : 'not probed' })
    return p
  }

  for (const a of pods) {
    for (const b of pods) {
      if (a === b) continue
      const p = reach(a.node === b.node ? 'pod-pod-same-node' : 'pod-pod-across-nodes', a.name, b.name)
      // The receiver must see the sender's own pod IP: no NAT between pods, on any node.
      count('source-preserved', !!p?.ok && p.sourceSeen === a.address, {
        from: a.name,
        to: b.name,
        detail: p?.ok ? `${b.name} saw source ${p.sourceSeen}, ${a.name} is ${a.address}` : `no connection (${p ? describeProbe(p) : 'not probed'})`,
      })
    }
  }
  for (const n of nodes) {
    const daemon = judgeReadyz(obs.readyz[n.name])
    count('daemons-ready', daemon.ready, { from: n.name, detail: daemon.detail })
  }
  for (const n of nodes) for (const pod of pods) reach('node-pod', n.name, pod.name)
  for (const pod of pods) for (const n of nodes) reach('pod-node', pod.name, n.name)

  for (const pod of pods) {
    // Its own view (the address on its interface), the address its connections leave with, and
    // what peers that receive them without NAT (other pods, its own node) report: all the same.
    const problems: string[] = []
    const onInterface = obs.podInterfaceAddresses[pod.name] ?? []
    if (!onInterface.includes(`${pod.address}/32`)) problems.push(`${POD_IFNAME} inside the pod has ${onInterface.join(', ') || 'no IPv4 address'}, the plugin assigned ${pod.address}/32`)
    const unNatted = obs.probes.filter((p) => p.from === pod.name && p.ok && (byName.get(p.to)?.kind === 'pod' || p.to === pod.node))
    if (unNatted.length === 0) problems.push('no connection from this pod reached a peer that could report its address')
    for (const p of unNatted) {
      if (p.sourceUsed !== pod.address) problems.push(`its connection to ${p.to} left from ${p.sourceUsed}`)
      if (p.sourceSeen !== pod.address) problems.push(`${p.to} saw it as ${p.sourceSeen}`)
    }
    count('own-ip', problems.length === 0, { from: pod.name, detail: problems.join('; ') })

    const local = obs.localhost[pod.name]
    const localOk = !!local?.ok && local.reply.peer === '127.0.0.1' && local.reply.pid !== local.pid
    count('localhost', localOk, {
      from: pod.name,
      detail: !local ? 'not probed' : local.ok ? `answered by pid ${local.reply.pid} to pid ${local.pid}, peer ${local.reply.peer}` : `connect to 127.0.0.1:${PROBE_PORT}: ${local.error}`,
    })

    const outside = obs.endpoints.find((e) => e.kind === 'outside')
    if (outside) {
      const p = find(pod.name, outside.name)
      const nodeAddress = byName.get(pod.node ?? '')?.address
      count('masquerade', !!p?.ok && p.sourceSeen === nodeAddress, {
        from: pod.name,
        to: outside.name,
        detail: p?.ok ? `the outside saw source ${p.sourceSeen}, ${pod.node} is ${nodeAddress}` : `connect to ${outside.address}:${PROBE_PORT}: ${p ? describeProbe(p) : 'not probed'}`,
      })
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

export function endpointsOf(state: LabState): Endpoint[] {
  return [
    ...state.pods.map((p): Endpoint => ({ name: podRef(p), kind: 'pod', netns: p.netns, address: p.address, node: p.node })),
    ...state.nodes.map((n): Endpoint => ({ name: n.name, kind: 'node', netns: n.netns, address: n.address, node: n.name })),
    { name: 'outside', kind: 'outside', netns: state.network.outsideNetns, address: state.network.outsideAddress },
  ]
}

/** Runs every probe from its sender's agent, a bounded number at a time per agent. */
async function runProbes(endpoints: Endpoint[], agents: Map<string, ProbeAgent>): Promise<ProbeRecord[]> {
  const perSender = new Map<string, Array<{ from: Endpoint; to: Endpoint }>>()
  for (const pair of plannedProbes(endpoints)) {
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
          const result = await agents.get(pair.from.netns)!.probe(pair.to.address, PROBE_PORT)
          records.push(
            result.ok
              ? { from: pair.from.name, to: pair.to.name, toAddress: pair.to.address, ok: true, sourceSeen: result.reply.peer, sourceUsed: result.local }
              : { from: pair.from.name, to: pair.to.name, toAddress: pair.to.address, ok: false, error: result.error },
          )
        }
      }
      await Promise.all(Array.from({ length: 16 }, worker))
    }),
  )
  const order = new Map(endpoints.map((e, i) => [e.name, i]))
  return records.sort((a, b) => order.get(a.from)! - order.get(b.from)! || order.get(a.to)! - order.get(b.to)!)
}

/** Observes the lab with real traffic; every process started here is stopped before returning. */
export async function observeLab(state: LabState): Promise<Observations> {
  const endpoints = endpointsOf(state)
  const agents = await startProbeAgents(
    endpoints.map((e) => e.netns),
    PROBE_PORT,
  )
  try {
    const [probes, localEntries, readyzEntries] = await Promise.all([
      runProbes(endpoints, agents),
      Promise.all(state.pods.map(async (p) => [podRef(p), await probeOnce(p.netns, '127.0.0.1', PROBE_PORT)] as const)),
      Promise.all(state.nodes.map(async (n) => [n.name, await httpGetInNetns(n.netns, `${DAEMON_HEALTH_URL}/readyz`)] as const)),
    ])
    const podInterfaceAddresses: Record<string, string[]> = {}
    for (const p of state.pods) podInterfaceAddresses[podRef(p)] = agents.get(p.netns)!.addresses[p.ifname] ?? []
    return { endpoints, probes, podInterfaceAddresses, localhost: Object.fromEntries(localEntries), readyz: Object.fromEntries(readyzEntries) }
  } finally {
    await stopProbeAgents(agents)
  }
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
  return {
    lab: state.name,
    ok: requirements.every((r) => r.ok),
    nodes: state.nodes.map((n) => ({ name: n.name, address: n.address, subnet: n.subnet, daemon: judgeReadyz(obs.readyz[n.name]) })),
    pods: state.pods.map((p) => ({ name: podRef(p), node: p.node, address: p.address })),
    outside: state.network.outsideAddress,
    requirements,
    probes: obs.probes,
    durationMs: Date.now() - started,
  }
}
