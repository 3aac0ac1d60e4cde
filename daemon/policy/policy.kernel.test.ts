// NetworkPolicy enforced by the real kernel: the policy reconciler programs `inet flatnet-policy`
// in a test node namespace (testing/topology.ts: pods behind fn… veths, another node's pods behind
// lan0) and real TCP/UDP connections, IPv4 and IPv6, succeed or are refused. One test per group of
// NETPOL.md points; the reconciler's own duties (one transaction, read-back repair, remove, drop
// counters, nothing flushed when inputs are missing) are judged on the kernel's table.
import t, { type Test } from 'tap'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import type { IPod } from 'kubernetes-models/v1'
import { testNamespaces } from '../../e2e/helpers/index.js'
import { createLogger } from '../log.js'
import { DaemonMetrics } from '../metrics.js'
import type { InputKind } from '../reconcile/contract.js'
import { PolicyReconciler, type PolicyView } from '../reconcilers/policy.js'
import { namespace, pod, policy } from './testing/cluster.js'
import { buildTopology, LOCAL_SUBNETS, NODE_ADDRESS, nftIn, type Topology } from './testing/topology.js'

const REMOTE = { ya: '10.244.2.10', ya6: 'fd00:10:244:2::a', zc: '10.244.2.12' }
let topo: Topology
let view: FakeView

class FakeView implements PolicyView {
  pods_: IPod[] = []
  policies_: INetworkPolicy[] = []
  listed = true
  synced(_kind: InputKind): boolean {
    return this.listed
  }
  namespaces() {
    return this.listed ? [namespace('x', { team: 'x' }), namespace('y', { team: 'y' }), namespace('z')] : undefined
  }
  pods() {
    return this.listed ? this.pods_ : undefined
  }
  networkPolicies() {
    return this.listed ? this.policies_ : undefined
  }
  self() {
    return { name: 'n1', nodeIP: NODE_ADDRESS, subnet: LOCAL_SUBNETS[0]!, subnets: LOCAL_SUBNETS, owner: 'test', updatedAt: new Date(0).toISOString() }
  }
}

const metrics = new DaemonMetrics()
let reconciler: PolicyReconciler
const full = { full: true, changed: new Set<InputKind>() }
const partial = { full: false, changed: new Set<InputKind>(['networkpolicies']) }

t.before(async () => {
  const namespaces = testNamespaces(t, 'polk')
  topo = await buildTopology(namespaces, { 'x/a': 10, 'x/b': 11, 'y/b': 12, 'x/new': 13 }, [REMOTE.ya, REMOTE.ya6, REMOTE.zc], [80, 81])
  t.teardown(() => topo.stop())
  view = new FakeView()
  view.pods_ = [
    pod('x', 'a', [topo.pods.get('x/a')!.v4, topo.pods.get('x/a')!.v6], { pod: 'a' }, [{ name: 'web', containerPort: 81 }]),
    pod('x', 'b', [topo.pods.get('x/b')!.v4, topo.pods.get('x/b')!.v6], { pod: 'b' }),
    pod('y', 'b', [topo.pods.get('y/b')!.v4], { pod: 'b' }),
    pod('y', 'a', [REMOTE.ya, REMOTE.ya6], { pod: 'a' }, [{ name: 'web', containerPort: 80 }]),
    pod('z', 'c', [REMOTE.zc], { pod: 'c' }),
  ]
  reconciler = new PolicyReconciler(createLogger('fatal'), metrics, nftIn(topo.node))
})

/** Connects from a local pod (by name), the remote namespace (with a source address) or the node itself. */
async function probe(from: string, to: string, port: number, proto: 'tcp' | 'udp' = 'tcp'): Promise<boolean> {
  const host = to.includes('.') || to.includes(':') ? to : topo.pods.get(to)!.v4
  if (from === 'node') return (await topo.nodeAgent.request({ proto, host, port })).ok
  if (from.startsWith('remote:')) return (await topo.remoteAgent.request({ proto, host, port, source: from.slice(7) })).ok
  const p = topo.pods.get(from)!
  return (await p.agent.request({ proto, host, port, source: host.includes(':') ? p.v6 : p.v4 })).ok
}

async function apply(policies: INetworkPolicy[], req = partial): Promise<void> {
  view.policies_ = policies
  const r = await reconciler.sync(view, req)
  if (r.problems.length) throw new Error(r.problems.join('; '))
}

async function matrix(t: Test, cases: Array<[string, string, number, boolean, ('tcp' | 'udp')?]>): Promise<void> {
  for (const [from, to, port, want, proto] of cases) t.equal(await probe(from, to, port, proto ?? 'tcp'), want, `${from} → ${to} ${proto ?? 'tcp'}/${port}: ${want ? 'connects' : 'refused'}`)
}

t.test('inputs not fully listed: nothing is programmed, and an existing table is never flushed', async (t) => {
  view.listed = false
  t.same(await reconciler.sync(view, full), { changed: false, problems: [] })
  t.equal((await nftIn(topo.node).run(['list', 'table', 'inet', 'flatnet-policy'])).code, 1, 'no table')
  view.listed = true
})

t.test('no policy: every pod reaches every pod, both families, and the table isolates nothing', async (t) => {
  await apply([], full)
  await matrix(t, [
    ['x/b', 'x/a', 80, true],
    ['remote:' + REMOTE.zc, 'x/a', 81, true],
    ['x/a', REMOTE.ya, 80, true, 'udp'],
    ['x/b', topo.pods.get('x/a')!.v6, 80, true],
  ])
})

t.test('ingress isolation with selector peers and ports: only what a rule allows gets in', async (t) => {
  await apply([policy('x', 'a-from-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }], ports: [{ port: 80 }] }] })])
  await matrix(t, [
    ['x/b', 'x/a', 80, true],
    ['x/b', 'x/a', 81, false],
    ['x/b', 'x/a', 80, false, 'udp'],
    ['y/b', 'x/a', 80, false], // pod=b of another namespace
    ['remote:' + REMOTE.ya, 'x/a', 80, false],
    ['x/a', 'x/b', 80, true], // x/b is not selected
    ['x/b', topo.pods.get('x/a')!.v6, 80, true], // IPv6 of the same pods
    ['remote:' + REMOTE.ya6, topo.pods.get('x/a')!.v6, 80, false],
  ])
})

t.test("the pod's own node always reaches it (kubelet probes), and replies of allowed connections pass", async (t) => {
  await apply([policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })])
  await matrix(t, [
    ['node', 'x/a', 80, true],
    ['node', 'x/b', 81, true, 'udp'],
    ['x/a', 'x/b', 80, false],
    ['x/a', NODE_ADDRESS, 80, false], // egress to the node's own address is egress too (ipBlock allows it)
  ])
})

t.test('namespaceSelector AND podSelector in one peer; ipBlock with except; egress to a named port on the destination', async (t) => {
  await apply([
    policy('x', 'a-in', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'y' } }, podSelector: { matchLabels: { pod: 'a' } } }] }] }),
    policy('x', 'b-in', { podSelector: { matchLabels: { pod: 'b' } }, ingress: [{ from: [{ ipBlock: { cidr: '10.244.2.0/24', except: ['10.244.2.12/32'] } }] }] }),
    policy('x', 'b-out', { podSelector: { matchLabels: { pod: 'b' } }, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'web' }] }] }),
  ])
  await matrix(t, [
    ['remote:' + REMOTE.ya, 'x/a', 80, true],
    ['y/b', 'x/a', 80, false], // team=y but pod=b
    ['remote:' + REMOTE.ya, 'x/b', 81, true],
    ['remote:' + REMOTE.zc, 'x/b', 81, false],
    ['x/b', REMOTE.ya, 80, true], // y/a's "web" is 80
    ['x/b', REMOTE.ya, 81, false],
    ['x/b', 'y/b', 80, false], // y/b has no "web"
  ])
})

t.test('a pod the view does not know is isolated once a policy isolates; known from its CNI attachment', async (t) => {
  await apply([policy('y', 'isolate-y', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }] }] })])
  await matrix(t, [
    ['remote:' + REMOTE.ya, 'x/new', 80, false],
    ['remote:' + REMOTE.ya, 'x/a', 80, true],
  ])
  view.pods_ = [...view.pods_, pod('x', 'new', [], { pod: 'new' })]
  reconciler.noteAttachment('x', 'new', [topo.pods.get('x/new')!.v4])
  await apply(view.policies_)
  await matrix(t, [['remote:' + REMOTE.ya, 'x/new', 80, true]])
})

t.test('established connections survive a policy that starts denying them; new ones are refused', async (t) => {
  await apply([])
  const xb = topo.pods.get('x/b')!
  const opened = await xb.agent.request({ op: 'open', proto: 'tcp', host: topo.pods.get('x/a')!.v4, port: 80, source: xb.v4 })
  t.ok(opened.ok, 'connection open')
  await apply([policy('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] })])
  t.ok((await xb.agent.request({ op: 'send', conn: opened.id })).ok, 'the established connection still carries data')
  t.notOk(await probe('x/b', 'x/a', 80), 'a new connection is refused')
})

t.test('the reconciler: one transaction, read-back repair of hand edits, refusal counters, remove()', async (t) => {
  const nft = nftIn(topo.node)
  await apply([policy('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] })], full)
  t.same(await reconciler.sync(view, full), { changed: false, problems: [] }, 'a full sync of an unchanged table writes nothing')
  await nft.run(['flush', 'chain', 'inet', 'flatnet-policy', 'ingress'])
  t.ok(await probe('remote:' + REMOTE.ya, 'x/a', 80), 'hand edit let traffic in')
  t.same(await reconciler.sync(view, partial), { changed: false, problems: [] }, 'a partial sync trusts what it wrote')
  t.same(await reconciler.sync(view, full), { changed: true, problems: [] }, 'a full sync finds the edit and rewrites')
  t.notOk(await probe('remote:' + REMOTE.ya, 'x/a', 80), 'refused again')
  await reconciler.sync(view, full)
  t.ok((metrics.policyDrops.get({ direction: 'ingress' }) ?? 0) >= 1, 'refusals counted per direction')
  t.equal(metrics.policyPolicies.get(), 1)
  t.equal(metrics.policyPodsSelected.get(), 3, 'x/a, x/b and x/new')
  t.match(await reconciler.remove(), /removed/)
  t.equal((await nft.run(['list', 'table', 'inet', 'flatnet-policy'])).code, 1, 'table gone')
  t.ok(await probe('remote:' + REMOTE.ya, 'x/a', 80), 'nothing enforced without the table')
})
