// NetworkPolicy semantics (the checklist of issue 10), judged on the compiled plan by evaluating
// connections against it (testing/evaluate.ts), and every table shape checked by the kernel's own
// parser (`nft -c`, inside a throw-away namespace). policy.kernel.test.ts sends real packets.
import t, { type Test } from 'tap'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { inNetns, testNamespaces, type Netns } from '../../e2e/helpers/index.js'
import { NftTransaction } from '../../net/nft.js'
import { compilePolicies, policyTable, type PolicyInputs, type PolicyPlan } from './index.js'
import { namespace, pod, policy } from './testing/cluster.js'
import { verdict, type Connection } from './testing/evaluate.js'

// This node holds 10.244.1.0/24 and fd00:10:244:1::/64; 10.244.2.0/24 is another node's.
const NODE_SUBNETS = ['10.244.1.0/24', 'fd00:10:244:1::/64']
const A = { x: '10.244.1.10', x6: 'fd00:10:244:1::10', xb: '10.244.1.11', yb: '10.244.1.12', ya: '10.244.2.10', zc: '10.244.2.12', outside: '192.0.2.7', node: '172.18.0.2' }
const cluster = {
  namespaces: [namespace('x', { team: 'x' }), namespace('y', { team: 'y', env: 'prod' }), namespace('z', { env: 'dev' })],
  pods: [
    pod('x', 'a', [A.x, A.x6], { pod: 'a', app: 'web' }, [
      { name: 'http', containerPort: 8080 },
      { name: 'dns', containerPort: 5353, protocol: 'UDP' },
    ]),
    pod('x', 'b', [A.xb], { pod: 'b' }, [{ name: 'http', containerPort: 9090 }]),
    pod('y', 'b', [A.yb], { pod: 'b' }),
    pod('y', 'a', [A.ya], { pod: 'a' }, [{ name: 'http', containerPort: 7070 }]),
    pod('z', 'c', [A.zc], { pod: 'c', tier: 'db' }),
  ],
}

let ns: Netns
t.before(async () => {
  ns = await testNamespaces(t, 'polc').create()
})

const shapes: PolicyPlan[] = []
function compile(policies: INetworkPolicy[], extra: Partial<PolicyInputs> = {}): PolicyPlan {
  const plan = compilePolicies({ ...cluster, policies, nodeSubnets: NODE_SUBNETS, ...extra })
  shapes.push(plan)
  return plan
}
const tcp = (from: string, to: string, port = 80, more: Partial<Connection> = {}): Connection => ({ from, to, protocol: 'tcp', port, ...more })
const udp = (from: string, to: string, port: number): Connection => ({ from, to, protocol: 'udp', port })

function expect(t: Test, plan: PolicyPlan, cases: Array<[Connection, 'accept' | 'refuse']>): void {
  for (const [c, want] of cases) t.equal(verdict(plan, c), want, `${c.from} → ${c.to} ${c.protocol}/${c.port}${c.hook ? ` (${c.hook})` : ''}: ${want}`)
}

t.test('no policy: nothing is isolated, not even a pod the view does not know yet', async (t) => {
  const plan = compile([])
  t.same(plan.isolated, { ingress: { 4: [], 6: [] }, egress: { 4: [], 6: [] } })
  t.same(plan.unknownIsolated, { ingress: false, egress: false })
  expect(t, plan, [
    [tcp(A.ya, A.x), 'accept'],
    [tcp(A.x, A.outside), 'accept'],
    [tcp(A.ya, '10.244.1.99'), 'accept'],
  ])
})

t.test('isolation is per direction: a deny-all ingress cuts what comes in, not what goes out', async (t) => {
  const plan = compile([policy('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] })])
  t.same(plan.isolated.ingress[4], [A.x, A.xb])
  t.same(plan.isolated.egress[4], [])
  expect(t, plan, [
    [tcp(A.ya, A.x), 'refuse'],
    [tcp(A.yb, A.xb), 'refuse'],
    [tcp(A.x, A.xb), 'refuse'],
    [tcp(A.x, A.ya), 'accept'],
    [tcp(A.x, A.outside), 'accept'],
    // Pods of other namespaces are not touched.
    [tcp(A.x, A.yb), 'accept'],
    [tcp('fd00:10:244:2::5', A.x6), 'refuse'],
  ])
})

t.test('egress isolation: the source node refuses, to pods, outside and its own addresses', async (t) => {
  const plan = compile([policy('x', 'deny-out', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'] })])
  expect(t, plan, [
    [tcp(A.x, A.ya), 'refuse'],
    [tcp(A.x, A.outside), 'refuse'],
    [tcp(A.x, A.node, 10250, { hook: 'input' }), 'refuse'],
    [tcp(A.x6, 'fd00:10:244:2::5'), 'refuse'],
    [tcp(A.xb, A.ya), 'accept'],
    [tcp(A.ya, A.x), 'accept'],
  ])
})

t.test('policyTypes defaulting: [Ingress], plus Egress when egress rules exist', async (t) => {
  const onlyEgressRules = compile([policy('x', 'p', { podSelector: {}, egress: [{ to: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] })])
  t.same(onlyEgressRules.isolated.ingress[4], [A.x, A.xb], 'no policyTypes: ingress isolated')
  t.same(onlyEgressRules.isolated.egress[4], [A.x, A.xb], 'egress rules present: egress isolated too')
  expect(t, onlyEgressRules, [
    [tcp(A.x, A.xb), 'refuse'], // egress allowed to pod=b, but x/b's ingress is isolated with no rule
    [tcp(A.x, A.ya), 'refuse'],
  ])
  const emptyEgress = compile([policy('x', 'p', { podSelector: {}, egress: [] })])
  t.same(emptyEgress.isolated.egress[4], [], 'egress: [] without policyTypes does not isolate egress')
})

t.test('policies add up: the union of every rule of every policy selecting the pod', async (t) => {
  const plan = compile([
    policy('x', 'from-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }),
    policy('x', 'from-y', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'y' } } }] }] }),
  ])
  expect(t, plan, [
    [tcp(A.xb, A.x), 'accept'],
    [tcp(A.ya, A.x), 'accept'],
    [tcp(A.yb, A.x), 'accept'],
    [tcp(A.zc, A.x), 'refuse'],
    [tcp(A.outside, A.x), 'refuse'],
  ])
})

t.test('empty and missing: ingress [{}] allows all, [] only isolates; from [] and ports [] mean any', async (t) => {
  expect(t, compile([policy('x', 'all', { podSelector: {}, ingress: [{}] })]), [
    [tcp(A.outside, A.x), 'accept'],
    [udp(A.zc, A.x, 53), 'accept'],
  ])
  expect(t, compile([policy('x', 'none', { podSelector: {}, ingress: [] })]), [[tcp(A.xb, A.x), 'refuse']])
  expect(t, compile([policy('x', 'empty-lists', { podSelector: {}, ingress: [{ from: [], ports: [] }] })]), [
    [tcp(A.outside, A.x, 1), 'accept'],
    [{ from: A.zc, to: A.x, protocol: 'sctp', port: 9 }, 'accept'],
  ])
})

t.test('peers: namespaceSelector and podSelector in one peer is AND; in two peers it is OR', async (t) => {
  const and = compile([policy('x', 'and', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'y' } }, podSelector: { matchLabels: { pod: 'a' } } }] }] })])
  expect(t, and, [
    [tcp(A.ya, A.x), 'accept'],
    [tcp(A.yb, A.x), 'refuse'],
    [tcp(A.xb, A.x), 'refuse'],
  ])
  const or = compile([policy('x', 'or', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'y' } } }, { podSelector: { matchLabels: { pod: 'a' } } }] }] })])
  expect(t, or, [
    [tcp(A.ya, A.x), 'accept'],
    [tcp(A.yb, A.x), 'accept'],
    [tcp(A.x, A.xb), 'accept'], // x/a matches the podSelector peer (policy's own namespace)
    [tcp(A.zc, A.x), 'refuse'],
  ])
  const podOnly = compile([policy('x', 'pod-only', { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] })])
  expect(t, podOnly, [
    [tcp(A.xb, A.x), 'accept'],
    [tcp(A.yb, A.x), 'refuse'], // pod=b, but in another namespace
  ])
  const everyNs = compile([policy('x', 'all-ns', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }] }] })])
  expect(t, everyNs, [
    [tcp(A.zc, A.x), 'accept'],
    [tcp(A.outside, A.x), 'refuse'], // selector peers match pods only
  ])
})

t.test('the namespace name label selects a namespace by name, also when its object lacks the label', async (t) => {
  const plan = compilePolicies({
    namespaces: [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'y' } }],
    pods: cluster.pods,
    nodeSubnets: NODE_SUBNETS,
    policies: [policy('x', 'by-name', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'z' } } }] }] })],
  })
  expect(t, plan, [
    [tcp(A.zc, A.x), 'accept'],
    [tcp(A.ya, A.x), 'refuse'],
  ])
})

t.test('matchExpressions: In, NotIn (matches a missing key), Exists, DoesNotExist, ANDed with matchLabels', async (t) => {
  const sel = (matchExpressions: NonNullable<NonNullable<INetworkPolicy['spec']>['podSelector']>['matchExpressions'], matchLabels?: Record<string, string>) =>
    compile([policy('x', 'expr', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchExpressions, matchLabels } }] }] })])
  expect(t, sel([{ key: 'pod', operator: 'In', values: ['b', 'c'] }]), [
    [tcp(A.yb, A.x), 'accept'],
    [tcp(A.zc, A.x), 'accept'],
    [tcp(A.ya, A.x), 'refuse'],
  ])
  expect(t, sel([{ key: 'tier', operator: 'NotIn', values: ['db'] }]), [
    [tcp(A.ya, A.x), 'accept'], // no tier label at all
    [tcp(A.zc, A.x), 'refuse'],
  ])
  expect(t, sel([{ key: 'tier', operator: 'Exists' }]), [
    [tcp(A.zc, A.x), 'accept'],
    [tcp(A.ya, A.x), 'refuse'],
  ])
  expect(t, sel([{ key: 'tier', operator: 'DoesNotExist' }], { pod: 'b' }), [
    [tcp(A.yb, A.x), 'accept'],
    [tcp(A.ya, A.x), 'refuse'], // DoesNotExist holds, matchLabels does not
  ])
})

t.test('ipBlock: cidr minus except, per family; pod addresses match it too', async (t) => {
  const plan = compile([
    policy('x', 'blocks', {
      podSelector: {},
      ingress: [
        {
          from: [
            { ipBlock: { cidr: '10.244.2.0/24', except: ['10.244.2.12/32'] } },
            { ipBlock: { cidr: '192.0.2.0/24' } },
            { ipBlock: { cidr: 'fd00:10:244:2::/64', except: ['fd00:10:244:2::/120'] } },
          ],
        },
      ],
    }),
  ])
  expect(t, plan, [
    [tcp(A.ya, A.x), 'accept'],
    [tcp(A.zc, A.x), 'refuse'],
    [tcp(A.outside, A.x), 'accept'],
    [tcp('198.51.100.1', A.x), 'refuse'],
    [tcp('fd00:10:244:2::1:5', A.x6), 'accept'],
    [tcp('fd00:10:244:2::5', A.x6), 'refuse'],
  ])
})

t.test('ports: TCP by default, UDP and SCTP apart, endPort ranges inclusive', async (t) => {
  const plan = compile([
    policy('x', 'ports', {
      podSelector: {},
      ingress: [{ ports: [{ port: 80 }, { protocol: 'UDP', port: 53 }, { protocol: 'SCTP', port: 9000, endPort: 9010 }, { protocol: 'TCP', port: 30000, endPort: 30002 }] }],
    }),
  ])
  expect(t, plan, [
    [tcp(A.ya, A.x, 80), 'accept'],
    [udp(A.ya, A.x, 80), 'refuse'],
    [udp(A.ya, A.x, 53), 'accept'],
    [tcp(A.ya, A.x, 53), 'refuse'],
    [{ from: A.ya, to: A.x, protocol: 'sctp', port: 9010 }, 'accept'],
    [{ from: A.ya, to: A.x, protocol: 'sctp', port: 9011 }, 'refuse'],
    [tcp(A.ya, A.x, 9005), 'refuse'], // SCTP is never TCP
    [tcp(A.ya, A.x, 30002), 'accept'],
    [tcp(A.ya, A.x, 30003), 'refuse'],
  ])
  const protoOnly = compile([policy('x', 'udp-any', { podSelector: {}, ingress: [{ ports: [{ protocol: 'UDP' }] }] })])
  expect(t, protoOnly, [
    [udp(A.ya, A.x, 12345), 'accept'],
    [tcp(A.ya, A.x, 12345), 'refuse'],
  ])
})

t.test('named ports resolve on the destination pod: per pod for ingress, per peer for egress', async (t) => {
  const ingress = compile([policy('x', 'http-in', { podSelector: {}, ingress: [{ ports: [{ port: 'http' }, { protocol: 'UDP', port: 'dns' }] }] })])
  expect(t, ingress, [
    [tcp(A.ya, A.x, 8080), 'accept'],
    [tcp(A.ya, A.x, 9090), 'refuse'],
    [tcp(A.ya, A.xb, 9090), 'accept'],
    [tcp(A.ya, A.xb, 8080), 'refuse'],
    [udp(A.ya, A.x, 5353), 'accept'],
    [tcp(A.ya, A.x, 5353), 'refuse'], // dns is a UDP port
    [tcp(A.ya, A.x6, 8080), 'refuse'], // an IPv4 peer never reaches an IPv6 address; same family below
    [tcp('fd00:10:244:2::9', A.x6, 8080), 'accept'],
  ])
  const egress = compile([policy('x', 'http-out', { podSelector: { matchLabels: { pod: 'b' } }, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'http' }] }] })])
  expect(t, egress, [
    [tcp(A.xb, A.ya, 7070), 'accept'], // y/a's http
    [tcp(A.xb, A.x, 8080), 'accept'], // x/a's http
    [tcp(A.xb, A.ya, 8080), 'refuse'],
    [tcp(A.xb, A.outside, 8080), 'refuse'], // no pod there owns "http"
  ])
})

t.test('a connection needs the egress of the source and the ingress of the destination', async (t) => {
  const plan = compile([
    policy('x', 'a-out-to-b', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [{ to: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }),
    policy('x', 'b-in-from-nobody', { podSelector: { matchLabels: { pod: 'b' } }, policyTypes: ['Ingress'] }),
  ])
  expect(t, plan, [
    [tcp(A.x, A.xb), 'refuse'],
    [tcp(A.x, A.ya), 'refuse'],
  ])
  const both = compile([
    policy('x', 'a-out-to-b', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [{ to: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }),
    policy('x', 'b-in-from-a', { podSelector: { matchLabels: { pod: 'b' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'a' } } }] }] }),
  ])
  expect(t, both, [[tcp(A.x, A.xb), 'accept']])
})

t.test('a pod the view does not know yet is isolated once any policy isolates; its CNI attachment makes it known', async (t) => {
  const newPod = pod('x', 'new', [], { pod: 'b' })
  const policies = [policy('x', 'from-a', { podSelector: { matchLabels: { pod: 'b' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'a' } } }] }] })]
  const unknown = compilePolicies({ ...cluster, pods: [...cluster.pods, newPod], policies, nodeSubnets: NODE_SUBNETS })
  expect(t, unknown, [
    [tcp(A.x, '10.244.1.50'), 'refuse'],
    [tcp('10.244.1.50', A.ya), 'accept'], // no policy isolates egress anywhere
    [tcp(A.x, A.yb), 'accept'], // a known pod of an unselected namespace
  ])
  const known = compilePolicies({ ...cluster, pods: [...cluster.pods, newPod], policies, nodeSubnets: NODE_SUBNETS, attachments: new Map([['x/new', ['10.244.1.50']]]) })
  expect(t, known, [
    [tcp(A.x, '10.244.1.50'), 'accept'],
    [tcp(A.ya, '10.244.1.50'), 'refuse'],
  ])
})

t.test('host-network and finished pods are neither selected nor peers', async (t) => {
  const plan = compilePolicies({
    ...cluster,
    pods: [...cluster.pods, pod('x', 'host', [A.node], { pod: 'a' }, [], { hostNetwork: true }), pod('x', 'done', ['10.244.1.77'], { pod: 'a' }, [], { phase: 'Succeeded' })],
    nodeSubnets: NODE_SUBNETS,
    policies: [policy('x', 'from-a', { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'a' } } }] }] })],
  })
  t.notOk(plan.isolated.ingress[4].includes('10.244.1.77'))
  expect(t, plan, [
    [tcp(A.node, A.xb), 'refuse'],
    [tcp(A.x, A.xb), 'accept'],
  ])
})

t.test('equal selectors share one set; sets grow with pods and policies, not their product', async (t) => {
  const many = Array.from({ length: 50 }, (_, i) => policy('x', `p${i}`, { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: 80 }] }] }))
  const plan = compile(many)
  t.equal(plan.addressSets.length, 3, 'one local set and one peer set per family (v4, v6 local), shared by all 50')
  t.equal(plan.portSets.length, 1)
  t.equal(plan.stats.policies, 50)
  t.equal(plan.stats.podsSelected, 2)
})

t.test('every table shape above passes the kernel nft parser (nft -c)', async (t) => {
  for (const plan of shapes) {
    const script = new NftTransaction().replaceTable(policyTable(plan)).text()
    const r = await inNetns(ns, ['nft', '-c', '-f', '-'], { input: script })
    t.equal(r.code, 0, r.stderr || 'ok')
  }
})
