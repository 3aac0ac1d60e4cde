// 200 random mutations of pod labels, namespace labels and NetworkPolicies, each synced by the
// policy reconciler into a test node's kernel (testing/topology.ts); after each, sampled TCP
// connections must succeed or be refused exactly as the semantics predict — the predicate of
// testing/oracle.ts, written from NETPOL.md independently of the compiler. Every 50 mutations the
// whole matrix is probed. Pods hold an IPv4 and an IPv6 address and every probe picks a family, so
// selectors are checked in both and ipBlocks (IPv4 and IPv6 CIDRs) only in their own. The seed is
// printed (and taken from FLATNET_NETPOL_SEED) to replay a run.
//
// While each sync runs, probes keep going (issue 10: "200 random policy mutations while probing →
// every observed verdict consistent with either the old or the new policy"): a connection opened
// during a sync must be judged by the policy before the mutation or by the one after it, never by
// a half-installed table — an allowed-before-and-after connection refused mid-sync, or a
// denied-before-and-after one let through, is a mismatch. Their choices come from a second seeded
// stream, so the mutations replay from the seed whatever the probes' timing.
import t from 'tap'
import type { INamespace, IPod } from 'kubernetes-models/v1'
import type { INetworkPolicy, INetworkPolicyPeer, INetworkPolicyPort, INetworkPolicySpec } from 'kubernetes-models/networking.k8s.io/v1'
import { testNamespaces } from '../../e2e/helpers/index.js'
import { createLogger } from '../log.js'
import type { InputKind } from '../reconcile/contract.js'
import { PolicyReconciler, type PolicyView } from '../reconcilers/policy.js'
import { namespace, pod, policy } from './testing/cluster.js'
import { connectionAllowed, type End } from './testing/oracle.js'
import { buildTopology, LOCAL_SUBNETS, NODE_ADDRESS, nftIn, type Topology } from './testing/topology.js'

const MUTATIONS = 200
const seed = Number(process.env.FLATNET_NETPOL_SEED ?? Date.now() % 1_000_000)

/** mulberry32: a small seeded generator, so a failing run can be replayed. */
function generator(s: number): () => number {
  return () => {
    s = (s + 0x6d2b79f5) | 0
    let x = Math.imul(s ^ (s >>> 15), 1 | s)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}
const random = generator(seed)
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!
const probeRandom = generator(seed ^ 0x5bd1e995)
const probePick = <T>(items: readonly T[]): T => items[Math.floor(probeRandom() * items.length)]!
/** Probe loops running while a sync does (each one connection at a time). */
const PROBERS_DURING_SYNC = 3

// The ends: three pods on this node, two behind the other node (addresses on the remote namespace).
const LOCAL = ['x/a', 'x/b', 'y/b'] as const
const REMOTE: Record<string, [string, string]> = { 'y/a': ['10.244.2.10', 'fd00:10:244:2::a'], 'z/c': ['10.244.2.12', 'fd00:10:244:2::c'] }
type Family = 4 | 6
const ENDS = [...LOCAL, ...Object.keys(REMOTE)]

class RandomView implements PolicyView {
  namespaces_: INamespace[] = [namespace('x'), namespace('y'), namespace('z')]
  pods_: IPod[] = []
  policies_: INetworkPolicy[] = []
  synced(_kind: InputKind): boolean {
    return true
  }
  namespaces() {
    return this.namespaces_
  }
  pods() {
    return this.pods_
  }
  networkPolicies() {
    return this.policies_
  }
  self() {
    return { name: 'n1', nodeIP: NODE_ADDRESS, subnet: LOCAL_SUBNETS[0]!, subnets: LOCAL_SUBNETS, owner: 'test', updatedAt: new Date(0).toISOString() }
  }
}

const labelsOf = () => ({ pod: pick(['a', 'b', 'c']), ...(random() < 0.6 ? { role: pick(['web', 'db']) } : {}) })

function randomSelector() {
  return pick([
    () => ({}),
    () => ({ matchLabels: { pod: pick(['a', 'b', 'c']) } }),
    () => ({ matchExpressions: [{ key: 'role', operator: pick(['In', 'NotIn']), values: [pick(['web', 'db'])] }] }),
    () => ({ matchExpressions: [{ key: 'role', operator: pick(['Exists', 'DoesNotExist']) }] }),
  ])()
}

function randomPeer(): INetworkPolicyPeer {
  return pick<() => INetworkPolicyPeer>([
    () => ({ podSelector: randomSelector() }),
    () => ({ namespaceSelector: { matchLabels: { team: pick(['red', 'blue']) } } }),
    () => ({ namespaceSelector: pick([{}, { matchLabels: { 'kubernetes.io/metadata.name': pick(['x', 'y', 'z']) } }]), podSelector: randomSelector() }),
    () => ({ ipBlock: { cidr: '10.244.2.0/24', except: ['10.244.2.12/32'] } }),
    () => ({ ipBlock: { cidr: pick(['10.244.1.0/24', '10.244.0.0/16']) } }),
    () => ({ ipBlock: { cidr: 'fd00:10:244:2::/64', except: ['fd00:10:244:2::c/128'] } }),
    () => ({ ipBlock: { cidr: pick(['fd00:10:244:1::/64', 'fd00:10:244::/48']) } }),
  ])()
}

function randomPorts(): INetworkPolicyPort[] | undefined {
  return pick<() => INetworkPolicyPort[] | undefined>([
    () => undefined,
    () => [{ port: pick([80, 81]) }],
    () => [{ port: 80, protocol: 'UDP' }],
    () => [{ port: 80, endPort: 81 }],
    () => [{ port: 'web' }],
  ])()
}

function randomRules(): Array<{ peers?: INetworkPolicyPeer[]; ports?: INetworkPolicyPort[] }> | undefined {
  return pick([
    () => undefined,
    () => [],
    () => [{}],
    () =>
      Array.from({ length: 1 + Math.floor(random() * 2) }, () => {
        const peers = pick([undefined, [randomPeer()], [randomPeer(), randomPeer()]])
        const ports = randomPorts()
        return { ...(peers ? { peers } : {}), ...(ports ? { ports } : {}) }
      }),
  ])()
}

function randomPolicy(ns: string, name: string): INetworkPolicy {
  const spec: INetworkPolicySpec = { podSelector: randomSelector() }
  const types = pick([undefined, ['Ingress'], ['Egress'], ['Ingress', 'Egress']] as const)
  if (types) spec.policyTypes = [...types]
  const ingress = randomRules()
  const egress = randomRules()
  if (ingress) spec.ingress = ingress.map((r) => ({ ...(r.peers ? { from: r.peers } : {}), ...(r.ports ? { ports: r.ports } : {}) }))
  if (egress) spec.egress = egress.map((r) => ({ ...(r.peers ? { to: r.peers } : {}), ...(r.ports ? { ports: r.ports } : {}) }))
  return policy(ns, name, spec)
}

t.test(`${MUTATIONS} random mutations: the kernel's verdicts equal the semantics' after each (seed ${seed})`, async (t) => {
  const namespaces = testNamespaces(t, 'npfix')
  const topo: Topology = await buildTopology(namespaces, { 'x/a': 10, 'x/b': 11, 'y/b': 12 }, Object.values(REMOTE).flat(), [80, 81])
  t.teardown(() => topo.stop())
  const nft = nftIn(topo.node)
  const reconciler = new PolicyReconciler(createLogger('fatal'), undefined, nft)
  t.teardown(async () => {
    await reconciler.remove()
  })
  const view = new RandomView()
  const addressOf = (ref: string, family: Family) => {
    const remote = REMOTE[ref]
    if (remote) return remote[family === 4 ? 0 : 1]
    const local = topo.pods.get(ref)!
    return family === 4 ? local.v4 : local.v6
  }
  // y/a names its port 80 "web", x/a its port 81: one name, different numbers.
  const webPort: Record<string, number> = { 'y/a': 80, 'x/a': 81 }
  const labels = new Map(ENDS.map((ref) => [ref, labelsOf()]))
  const buildPods = () =>
    ENDS.map((ref) => {
      const [ns, name] = ref.split('/') as [string, string]
      return pod(ns, name, [addressOf(ref, 4), addressOf(ref, 6)], labels.get(ref)!, webPort[ref] ? [{ name: 'web', containerPort: webPort[ref]! }] : [])
    })
  view.pods_ = buildPods()

  const mismatches: string[] = []
  let probes = 0
  type Objects = { namespaces: INamespace[]; pods: IPod[]; policies: INetworkPolicy[] }
  const objectsNow = (): Objects => ({ namespaces: view.namespaces_, pods: view.pods_, policies: view.policies_ })
  /** What the semantics say of `from` → `to` under `objects` (only this node's sides enforced). */
  const allowed = (objects: Objects, from: string, to: string, port: number, family: Family) => {
    const end = (ref: string): End => ({ pod: objects.pods.find((p) => `${p.metadata!.namespace}/${p.metadata!.name}` === ref)!, address: addressOf(ref, family) })
    return connectionAllowed(objects, end(from), end(to), 'TCP', port, { egress: isLocal(from), ingress: isLocal(to) })
  }
  const connect = async (from: string, to: string, port: number, family: Family) => {
    const agent = REMOTE[from] ? topo.remoteAgent : topo.pods.get(from)!.agent
    const r = await agent.request({ proto: 'tcp', host: addressOf(to, family), port, source: addressOf(from, family), timeoutMs: 3000 })
    probes++
    return r
  }
  const check = async (mutation: number, from: string, to: string, port: number, family: Family) => {
    const want = allowed(objectsNow(), from, to, port, family)
    const got = (await connect(from, to, port, family)).ok
    if (got !== want) mismatches.push(`mutation ${mutation}: ${from} → ${to} tcp/${port} IPv${family}: ${got ? 'connected' : 'refused'}, semantics say ${want ? 'allowed' : 'denied'}`)
  }
  /** Probes random pairs until `done()`, each verdict checked against the policy before and after the mutation. */
  let probesDuringSyncs = 0
  let changedDuringSyncs = 0
  const probeAcross = async (mutation: number, before: Objects, after: Objects, done: () => boolean) => {
    while (!done()) {
      const [from, to] = probePick(pairs)
      const port = probePick([80, 81])
      const family = probePick([4, 6] as const)
      const [old, now] = [allowed(before, from, to, port, family), allowed(after, from, to, port, family)]
      const r = await connect(from, to, port, family)
      probesDuringSyncs++
      if (old !== now) changedDuringSyncs++
      if (r.ok !== old && r.ok !== now)
        mismatches.push(
          `during the sync of mutation ${mutation}: ${from} → ${to} tcp/${port} IPv${family}: ${r.ok ? 'connected' : `refused (${r.error})`}, ${old ? 'allowed' : 'denied'} before and after it`,
        )
    }
  }
  // Only this node's side is enforced here: the egress of a local source, the ingress of a local destination.
  const isLocal = (r: string) => !REMOTE[r]
  const pairs = ENDS.flatMap((from) => ENDS.filter((to) => to !== from && !(REMOTE[from] && REMOTE[to])).map((to) => [from, to] as const))

  const mutationsDone: Record<string, number> = {}
  for (let m = 1; m <= MUTATIONS; m++) {
    const before = objectsNow()
    const kind = pick(['pod labels', 'namespace labels', 'policy', 'policy', 'delete policy'] as const)
    mutationsDone[kind] = (mutationsDone[kind] ?? 0) + 1
    if (kind === 'pod labels') {
      labels.set(pick(ENDS), labelsOf())
      view.pods_ = buildPods()
    } else if (kind === 'namespace labels') {
      const ns = pick(['x', 'y', 'z'])
      view.namespaces_ = view.namespaces_.map((n) => (n.metadata!.name === ns ? namespace(ns, random() < 0.7 ? { team: pick(['red', 'blue']) } : {}) : n))
    } else if (kind === 'policy') {
      const p = randomPolicy(pick(['x', 'y']), pick(['p0', 'p1', 'p2']))
      view.policies_ = [...view.policies_.filter((q) => !(q.metadata!.namespace === p.metadata!.namespace && q.metadata!.name === p.metadata!.name)), p]
    } else if (view.policies_.length) {
      view.policies_ = view.policies_.filter((q) => q !== pick(view.policies_))
    }
    let syncing = true
    const probing = Array.from({ length: PROBERS_DURING_SYNC }, () => probeAcross(m, before, objectsNow(), () => !syncing))
    const r = await reconciler.sync(view, { full: m % 50 === 0, changed: new Set<InputKind>(['pods', 'namespaces', 'networkpolicies']) }).finally(() => (syncing = false))
    await Promise.all(probing)
    if (r.problems.length) mismatches.push(`mutation ${m}: sync failed: ${r.problems.join('; ')}`)
    const sample =
      m % 50 === 0
        ? pairs.flatMap(([f, to]) => [80, 81].flatMap((port) => ([4, 6] as const).map((family) => [f, to, port, family] as const)))
        : [0, 1].map(() => [...pick(pairs), pick([80, 81]), pick([4, 6] as const)] as const)
    for (const [from, to, port, family] of sample) await check(m, from, to, port, family)
    if (mismatches.length) break // the state below is the one that disagreed
  }
  t.same(
    mismatches,
    [],
    `${MUTATIONS} mutations (${JSON.stringify(mutationsDone)}), ${probes} probes (${probesDuringSyncs} while a sync ran, ${changedDuringSyncs} of them on a connection the mutation changed), ${view.policies_.length} policies at the end`,
  )
  // The probes during syncs must have happened, or the check above proved nothing of them.
  t.ok(probesDuringSyncs >= MUTATIONS, `${probesDuringSyncs} probes while a sync ran (at least one per mutation on average)`)
  if (mismatches.length) t.comment(JSON.stringify({ seed, namespaces: view.namespaces_, pods: view.pods_, policies: view.policies_ }))
})
