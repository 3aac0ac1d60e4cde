// The NetworkPolicy truth table (issue 10 "Proof"), after upstream's e2e netpol suite: namespaces
// x, y, z (label ns=<name>) with pods a, b, c each (label pod=<name>), every pod serving ports 80
// and 81 over TCP and UDP (named serve-80-tcp, …; z/c swaps the names of its TCP ports, so one
// port name means different numbers on different pods). Each case applies its objects through
// `lab apply` (the lab's object store, which every node's flatnetd watches), probes the whole
// 9 × 9 matrix on every port and protocol and compares it with the matrix written here by hand
// from the semantics (NETPOL.md points in brackets) — never computed by flatnet's policy code.
// One lab for the suite; cases run one after another, each undoing its objects.
import t, { type Test } from 'tap'
import { readFile } from 'node:fs/promises'
import { inNetns, inNetnsOk } from '../helpers/index.js'
import { nodeLayout } from '../../lab/layout.js'
import type { IPod } from 'kubernetes-models/v1'
import type { INetworkPolicy, INetworkPolicySpec } from 'kubernetes-models/networking.k8s.io/v1'
import type { ClusterObject, ObjectKey } from '../../daemon/objects/index.js'
import { labApply, labDelete } from '../../lab/objects.js'
import { labNodeStart, labNodeStop, labUp, layoutOf, ProbeAgent, readLabState } from '../../lab/index.js'
import { podRef } from '../../lab/podSpec.js'
import { PodProber, controlSocketPath } from '../../lab/responder.js'
import { labForTest, labSkipReason } from '../../lab/testing/testLabs.js'
import { Expectation, MatrixProber, renderMatrix, type Target } from '../../lab/testing/truthTable.js'

const NAMESPACES = ['x', 'y', 'z'] as const
const POD_NAMES = ['a', 'b', 'c'] as const
const TARGETS: Target[] = [
  { port: 80, protocol: 'TCP' },
  { port: 81, protocol: 'TCP' },
  { port: 80, protocol: 'UDP' },
  { port: 81, protocol: 'UDP' },
]
const TCP80 = { port: 80, protocol: 'TCP' } as const
const TCP81 = { port: 81, protocol: 'TCP' } as const
const UDP81 = { port: 81, protocol: 'UDP' } as const

function portName(port: number, protocol: string, swapTcp: boolean): string {
  const named = swapTcp && protocol === 'TCP' ? (port === 80 ? 81 : 80) : port
  return `serve-${named}-${protocol.toLowerCase()}`
}

function namespaceObject(name: string, labels: Record<string, string>): ClusterObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } } as ClusterObject
}

function podObject(ns: string, name: string, node: string, labels: Record<string, string>): IPod {
  const swapTcp = ns === 'z' && name === 'c'
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: ns, name, labels },
    spec: {
      nodeName: node,
      containers: [{ name: 'serve', image: 'responder', ports: TARGETS.map((t) => ({ name: portName(t.port, t.protocol, swapTcp), containerPort: t.port, protocol: t.protocol })) }],
    },
  }
}

function policy(ns: string, name: string, spec: INetworkPolicySpec): INetworkPolicy {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: ns, name }, spec }
}

const keyOfPolicy = (p: INetworkPolicy): ObjectKey => ({ kind: 'NetworkPolicy', namespace: p.metadata!.namespace!, name: p.metadata!.name! })

/** The test's own table in a lab node, counting one TCP flow (`from` → `to`) around flatnet's tables. */
const WATCH_TABLE = 'netpol-e2e-watch'

/**
 * Names which node refused an allowed connection `from` → `to`, and where: per node, the flow's SYNs
 * entering forward before policy (priority -5) and leaving it after (5), RSTs the node made itself
 * towards `from` (a reject rule of any table sends them through output), and RSTs bearing `to`'s
 * address crossing forward (on `to`'s own node: sent by the pod's stack; elsewhere they may be
 * another node's reject). Counted in a table of the test's own, which no flatnetd touches, restarts
 * included: a refusal by the policy table of `to`'s node shows as SYNs in > SYNs past policy there,
 * with as many RSTs made by that node.
 */
async function watchFlow(nodes: ReadonlyArray<{ name: string; netns: string }>, from: string, to: string): Promise<{ report(): Promise<string>; remove(): Promise<void> }> {
  const syn = `ip saddr ${from} ip daddr ${to} tcp flags & (syn | ack) == syn`
  const script = `table inet ${WATCH_TABLE} {
  counter syn-in { }
  counter syn-passed { }
  counter rst-made { }
  counter rst-from-dest { }
  chain before { type filter hook forward priority -5; policy accept; ${syn} counter name "syn-in"; ip saddr ${to} ip daddr ${from} tcp flags & rst == rst counter name "rst-from-dest"; }
  chain after { type filter hook forward priority 5; policy accept; ${syn} counter name "syn-passed"; }
  chain out { type filter hook output priority 0; policy accept; ip daddr ${from} tcp flags & rst == rst counter name "rst-made"; }
}
`
  for (const n of nodes) await inNetnsOk(n.netns, ['nft', '-f', '-'], { input: script })
  return {
    async report() {
      const lines: string[] = []
      for (const n of nodes) {
        const r = await inNetns(n.netns, ['nft', '-j', 'list', 'counters', 'table', 'inet', WATCH_TABLE])
        if (r.code !== 0) {
          lines.push(`${n.name}: ${r.stderr.trim()}`)
          continue
        }
        const doc = JSON.parse(r.stdout) as { nftables: Array<{ counter?: { name: string; packets: number } }> }
        const c = Object.fromEntries(doc.nftables.flatMap((x) => (x.counter ? [[x.counter.name, x.counter.packets]] : []))) as Record<string, number>
        lines.push(
          `${n.name}: SYNs ${c['syn-in']} into forward, ${c['syn-passed']} past policy; RSTs made by the node itself ${c['rst-made']}, forwarded from the destination's address ${c['rst-from-dest']}`,
        )
      }
      return lines.join('; ')
    },
    async remove() {
      for (const n of nodes) await inNetns(n.netns, ['nft', 'delete', 'table', 'inet', WATCH_TABLE])
    },
  }
}

const pod = (name: string) => ({ matchLabels: { pod: name } })
const nsLabel = (name: string) => ({ matchLabels: { ns: name } })

let cases = 0
let probes = 0

t.test('NetworkPolicy truth table: namespaces x, y, z × pods a, b, c × ports 80, 81 × TCP, UDP', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'netpol')
  const ref = { name }
  const lab = layoutOf(ref)
  await labUp({ name, nodes: 3, podsPerNode: 0, datastore: 'file' })

  // Pod a of x on node1, b on node2, c on node3; y and z rotate by one, so every namespace spans
  // every node and every pair of nodes carries traffic both ways.
  const nodeOf = (i: number, j: number) => `node${((i + j) % 3) + 1}`
  await labApply(ref, [...NAMESPACES.map((ns) => namespaceObject(ns, { ns })), ...NAMESPACES.flatMap((ns, i) => POD_NAMES.map((p, j) => podObject(ns, p, nodeOf(i, j), { pod: p })))])
  let state = await readLabState(lab)
  const address = (ref: string) => state.pods.find((p) => podRef(p) === ref)!.address
  const prober = await MatrixProber.open(
    lab,
    NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => state.pods.find((x) => podRef(x) === `${ns}/${p}`)!)),
  )
  t.teardown(() => prober.close())
  const all = () => new Expectation(prober.refs, TARGETS, true)

  async function expectMatrix(t: Test, title: string, want: Expectation, deadlineMs = 10_000): Promise<void> {
    cases++
    const report = await prober.check(want, { deadlineMs })
    probes += report.probes
    t.equal(report.mismatches.length, 0, `${title}: ${report.cells.length} cells as expected (${report.probes} probes, ${report.durationMs} ms)`)
    if (report.mismatches.length) t.comment(renderMatrix(want, report))
  }

  /** Applies `objects`, checks the matrix, deletes the policies again. */
  async function withPolicies(t: Test, title: string, policies: INetworkPolicy[], want: Expectation): Promise<void> {
    await labApply(ref, policies)
    try {
      await expectMatrix(t, title, want)
    } finally {
      await labDelete(ref, policies.map(keyOfPolicy))
    }
  }

  await t.test('no policy: every pod reaches every pod on every port, source address preserved (the seed: "pods can communicate with all other pods")', async (t) => {
    await expectMatrix(t, 'no policy', all())
  })

  await t.test('deny-all ingress in x cuts off only x; x still connects out, replies come back [1, 4, 5, 6, 12]', async (t) => {
    // policyTypes omitted: defaulted to [Ingress]; ingress omitted: nothing allowed in.
    await withPolicies(t, 'deny-all ingress in x', [policy('x', 'deny-all', { podSelector: {} })], all().denyIngress('x/*'))
  })

  await t.test('deny-all egress in x: x reaches nothing, everyone still reaches x [1, 4]', async (t) => {
    await withPolicies(t, 'deny-all egress in x', [policy('x', 'deny-egress', { podSelector: {}, policyTypes: ['Egress'] })], all().denyEgress('x/*'))
  })

  await t.test('ingress [{}] allows everything: added to a deny-all, only x/a opens again [2, 6]', async (t) => {
    await withPolicies(
      t,
      'deny-all + allow-all to x/a',
      [policy('x', 'deny-all', { podSelector: {} }), policy('x', 'allow-a', { podSelector: pod('a'), ingress: [{}] })],
      all().denyIngress(['x/b', 'x/c']),
    )
  })

  await t.test('policyTypes defaulting: with egress entries it is [Ingress, Egress] [4]', async (t) => {
    // spec.egress has entries and policyTypes is empty: the default is [Ingress, Egress]. Egress
    // only to y: x/a reaches y only; ingress isolated with no rule: nothing reaches x/a.
    await withPolicies(
      t,
      'defaulted policyTypes with egress',
      [policy('x', 'a-to-y', { podSelector: pod('a'), egress: [{ to: [{ namespaceSelector: nsLabel('y') }] }] })],
      all().denyEgress('x/a').allow('x/a', 'y/*').denyIngress('x/a'),
    )
  })

  await t.test('podSelector peer alone: pods of the policy namespace only [8]', async (t) => {
    // pod=b in x only: y/b and z/b carry the label but live elsewhere.
    await withPolicies(t, 'from podSelector pod=b', [policy('x', 'from-b', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: pod('b') }] }] })], all().denyIngress('x/a').allow('x/b', 'x/a'))
  })

  await t.test('namespaceSelector peer alone: every pod of the selected namespaces [8]', async (t) => {
    await withPolicies(
      t,
      'from namespaceSelector ns=y',
      [policy('x', 'from-y', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: nsLabel('y') }] }] })],
      all().denyIngress('x/a').allow('y/*', 'x/a'),
    )
  })

  await t.test('namespaceSelector {} alone: every pod of every namespace, nothing else [8]', async (t) => {
    await withPolicies(t, 'from namespaceSelector {}', [policy('x', 'from-all-ns', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: {} }] }] })], all())
  })

  await t.test('both selectors in one peer: AND [8]', async (t) => {
    await withPolicies(
      t,
      'from {ns=y AND pod=b}',
      [policy('x', 'from-y-b', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: nsLabel('y'), podSelector: pod('b') }] }] })],
      all().denyIngress('x/a').allow('y/b', 'x/a'),
    )
  })

  await t.test('the selectors in two peers: OR [7, 8]', async (t) => {
    await withPolicies(
      t,
      'from ns=y OR pod=b',
      [policy('x', 'from-y-or-b', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: nsLabel('y') }, { podSelector: pod('b') }] }] })],
      all().denyIngress('x/a').allow(['y/*', 'x/b'], 'x/a'),
    )
  })

  await t.test('the namespace name label kubernetes.io/metadata.name selects a namespace by name [18]', async (t) => {
    await withPolicies(
      t,
      'from kubernetes.io/metadata.name=z',
      [policy('x', 'from-z', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'z' } } }] }] })],
      all().denyIngress('x/a').allow('z/*', 'x/a'),
    )
  })

  await t.test('matchExpressions In, NotIn, Exists, DoesNotExist; matchLabels AND matchExpressions [9]', async (t) => {
    await withPolicies(
      t,
      'matchExpressions',
      [
        // x/a: from pods of any namespace whose pod label is In [b, c] and not in y (NotIn on ns).
        policy('x', 'in-notin', {
          podSelector: pod('a'),
          ingress: [
            {
              from: [
                {
                  namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['y'] }] },
                  podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] },
                },
              ],
            },
          ],
        }),
        // y/*: selected by Exists; from pods lacking the key `team` (DoesNotExist: every pod), in x only,
        // and with matchLabels pod=a ANDed with the expression.
        policy('y', 'exists', {
          podSelector: { matchExpressions: [{ key: 'pod', operator: 'Exists' }] },
          ingress: [{ from: [{ namespaceSelector: nsLabel('x'), podSelector: { matchLabels: { pod: 'a' }, matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] } }] }],
        }),
      ],
      all().denyIngress('x/a').allow(['x/b', 'x/c', 'z/b', 'z/c'], 'x/a').denyIngress('y/*').allow('x/a', 'y/*'),
    )
  })

  await t.test('ipBlock with except: addresses, not pods [10]', async (t) => {
    // The cluster range minus y/b's address: every pod but y/b reaches x/a.
    await withPolicies(
      t,
      'from ipBlock 10.244.0.0/16 except y/b',
      [policy('x', 'ipblock', { podSelector: pod('a'), ingress: [{ from: [{ ipBlock: { cidr: '10.244.0.0/16', except: [`${address('y/b')}/32`] } }] }] })],
      all().denyIngress('x/a').allow('*', 'x/a').deny('y/b', 'x/a'),
    )
  })

  await t.test('egress ipBlock: x/a reaches only y/c, by address [10]', async (t) => {
    await withPolicies(
      t,
      'egress to ipBlock y/c',
      [policy('x', 'egress-ipblock', { podSelector: pod('a'), policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: `${address('y/c')}/32` } }] }] })],
      all().denyEgress('x/a').allow('x/a', 'y/c'),
    )
  })

  await t.test('ports: protocol defaults to TCP; a port without a peer list allows every source on it [7, 11]', async (t) => {
    await withPolicies(
      t,
      'ingress port 80 (TCP by default)',
      [policy('x', 'port-80', { podSelector: pod('a'), ingress: [{ ports: [{ port: 80 }] }] })],
      all().denyIngress('x/a').allow('*', 'x/a', TCP80),
    )
  })

  await t.test('ports: UDP only, and SCTP never stands for TCP [11]', async (t) => {
    await withPolicies(
      t,
      'ingress UDP 81 and SCTP 80',
      [
        policy('x', 'udp-81', {
          podSelector: pod('a'),
          ingress: [
            {
              ports: [
                { protocol: 'UDP', port: 81 },
                { protocol: 'SCTP', port: 80 },
              ],
            },
          ],
        }),
      ],
      all().denyIngress('x/a').allow('*', 'x/a', UDP81),
    )
  })

  await t.test('ports: endPort ranges are inclusive [11]', async (t) => {
    await withPolicies(
      t,
      'ingress TCP 80-81, UDP 81-90',
      [
        policy('x', 'ranges', {
          podSelector: pod('a'),
          ingress: [
            {
              ports: [
                { port: 80, endPort: 81 },
                { protocol: 'UDP', port: 81, endPort: 90 },
              ],
            },
          ],
        }),
      ],
      all().denyIngress('x/a').allow('*', 'x/a', TCP80).allow('*', 'x/a', TCP81).allow('*', 'x/a', UDP81),
    )
  })

  await t.test('named ports resolve on the destination pod, for ingress and egress [11]', async (t) => {
    // In z, serve-80-tcp is 80 on z/a and z/b but 81 on z/c (its TCP names are swapped).
    await withPolicies(
      t,
      'ingress named serve-80-tcp in z; egress named serve-81-tcp from x/a',
      [
        policy('z', 'named-ingress', { podSelector: {}, ingress: [{ ports: [{ port: 'serve-80-tcp' }] }] }),
        policy('x', 'named-egress', { podSelector: pod('a'), policyTypes: ['Egress'], egress: [{ ports: [{ port: 'serve-81-tcp' }] }] }),
      ],
      all()
        .denyIngress('z/*')
        .allow('*', ['z/a', 'z/b'], TCP80)
        .allow('*', 'z/c', TCP81)
        // x/a's egress: only serve-81-tcp of each destination, 81 everywhere but on z/c, where it
        // is 80. Nothing to z: z/a and z/b take only TCP 80, z/c only TCP 81.
        .denyEgress('x/a')
        .allow('x/a', ['x/*', 'y/*'], TCP81),
    )
  })

  await t.test('both ends are checked: the egress of the source and the ingress of the destination [3]', async (t) => {
    await withPolicies(
      t,
      'x/a egress to y only; y/b ingress only from z',
      [
        policy('x', 'a-egress-y', { podSelector: pod('a'), policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: nsLabel('y') }] }] }),
        policy('y', 'b-from-z', { podSelector: pod('b'), ingress: [{ from: [{ namespaceSelector: nsLabel('z') }] }] }),
      ],
      all().denyEgress('x/a').allow('x/a', 'y/*').denyIngress('y/b').allow('z/*', 'y/b'),
    )
  })

  await t.test('a pod always reaches itself, and its node always reaches it [13, 14]', async (t) => {
    const deny = [policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })]
    await labApply(ref, deny)
    try {
      // The diagonal of the matrix is expected connected (Expectation.expected): x/a → x/a included.
      await expectMatrix(t, 'deny-all both ways in x', all().denyIngress('x/*').denyEgress('x/*'))
      const agents = await Promise.all(state.nodes.map((n) => ProbeAgent.start(n.netns, 7399)))
      try {
        for (const ns of ['x/a', 'x/b', 'x/c']) {
          const p = state.pods.find((x) => podRef(x) === ns)!
          const node = agents[state.nodes.findIndex((n) => n.name === p.node)]!
          const r = await node.probe(p.address, 80, 2000)
          t.ok(r.ok, `${p.node} reaches ${ns} on 80/TCP through a deny-all: ${JSON.stringify(r)}`)
          const other = agents[state.nodes.findIndex((n) => n.name !== p.node)]!
          const o = await other.probe(p.address, 80, 500)
          t.notOk(o.ok, `${other.netns} (another node) does not reach ${ns}: ${JSON.stringify(o)}`)
        }
      } finally {
        await Promise.all(agents.map((a) => a.stop()))
      }
    } finally {
      await labDelete(ref, deny.map(keyOfPolicy))
    }
  })

  await t.test('changes take effect for new connections: policy create, update, delete; pod and namespace labels [15]', async (t) => {
    const base = policy('x', 'from-b', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: pod('b') }] }] })
    await labApply(ref, [base])
    try {
      await expectMatrix(t, 'from pod=b', all().denyIngress('x/a').allow('x/b', 'x/a'))
      // A pod's labels change: x/c becomes pod=b.
      await labApply(ref, [podObject('x', 'c', nodeOf(0, 2), { pod: 'b' })])
      await expectMatrix(t, 'x/c relabelled pod=b', all().denyIngress('x/a').allow(['x/b', 'x/c'], 'x/a'))
      await labApply(ref, [podObject('x', 'c', nodeOf(0, 2), { pod: 'c' })])
      // The policy changes: from namespaces labelled team=blue instead.
      await labApply(ref, [policy('x', 'from-b', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'blue' } } }] }] })])
      await expectMatrix(t, 'policy updated to team=blue (no namespace has it)', all().denyIngress('x/a'))
      // A namespace's labels change: z joins team blue, then leaves.
      await labApply(ref, [namespaceObject('z', { ns: 'z', team: 'blue' })])
      await expectMatrix(t, 'z labelled team=blue', all().denyIngress('x/a').allow('z/*', 'x/a'))
      await labApply(ref, [namespaceObject('z', { ns: 'z' })])
      await expectMatrix(t, 'z label removed', all().denyIngress('x/a'))
    } finally {
      await labDelete(ref, [keyOfPolicy(base)])
    }
    await expectMatrix(t, 'policy deleted', all())
  })

  await t.test('a pod deleted and created again with a new address is judged by its new address [15]', async (t) => {
    const p = policy('x', 'from-y-b', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: nsLabel('y'), podSelector: pod('b') }] }] })
    await labApply(ref, [p])
    try {
      const before = address('y/b')
      await labDelete(ref, [{ kind: 'Pod', namespace: 'y', name: 'b' }])
      // Take another address first, so y/b cannot get its old one back.
      await labApply(ref, [podObject('y', 'placeholder', nodeOf(1, 1), { pod: 'placeholder' })])
      await labApply(ref, [podObject('y', 'b', nodeOf(1, 1), { pod: 'b' })])
      state = await readLabState(lab)
      t.not(address('y/b'), before, `y/b came back with a new address (${before} → ${address('y/b')})`)
      await prober.replace(
        lab,
        state.pods.find((x) => podRef(x) === 'y/b')!,
      )
      await expectMatrix(t, 'y/b re-created', all().denyIngress('x/a').allow('y/b', 'x/a'))
    } finally {
      await labDelete(ref, [keyOfPolicy(p), { kind: 'Pod', namespace: 'y', name: 'placeholder' }])
    }
  })

  await t.test('a new pod selected by an isolating policy is isolated from its first packet [17]', async (t) => {
    const isolate = [
      policy('x', 'new-in', { podSelector: pod('new'), ingress: [{ from: [{ podSelector: pod('b') }] }] }),
      policy('x', 'new-out', { podSelector: pod('new'), policyTypes: ['Egress'], egress: [{ to: [{ podSelector: pod('b') }] }] }),
    ]
    await labApply(ref, isolate)
    const created: ObjectKey[] = []
    try {
      for (const i of [1, 2, 3]) {
        const podName = `new${i}`
        await labApply(ref, [podObject('x', podName, `node${i}`, { pod: 'new' })])
        created.push({ kind: 'Pod', namespace: 'x', name: podName })
        state = await readLabState(lab)
        const fresh = state.pods.find((x) => podRef(x) === `x/${podName}`)!
        const own = await PodProber.open(`x/${podName}`, controlSocketPath(lab, fresh.containerId))
        try {
          // The very first packets, both ways, right after the pod exists.
          const [inbound, outbound] = await Promise.all([prober.probeAddress('y/a', fresh.address, TCP80, 300), own.probe({ host: address('y/a'), port: 80, protocol: 'TCP', connectTimeoutMs: 300 })])
          t.notOk(inbound.ok, `first probe y/a → x/${podName} (${fresh.address}) is blocked: ${inbound.ok ? 'connected' : inbound.error}`)
          t.notOk(outbound.ok, `first probe x/${podName} → y/a is blocked: ${outbound.ok ? 'connected' : outbound.error}`)
          // What the policies allow arrives soon after: x/b in, and out to x/b.
          let allowed = { inbound: false, outbound: false }
          for (const end = Date.now() + 5000; Date.now() < end && !(allowed.inbound && allowed.outbound);) {
            const [i, o] = await Promise.all([prober.probeAddress('x/b', fresh.address, TCP80, 300), own.probe({ host: address('x/b'), port: 80, protocol: 'TCP', connectTimeoutMs: 300 })])
            allowed = { inbound: i.ok, outbound: o.ok }
          }
          t.same(allowed, { inbound: true, outbound: true }, `x/${podName} and x/b reach each other, as the policies allow`)
        } finally {
          own.close()
        }
      }
    } finally {
      await labDelete(ref, [...isolate.map(keyOfPolicy), ...created])
    }
  })

  await t.test('flatnetd SIGKILLed and restarted during policy churn: no denied connection ever succeeds, allowed ones keep flowing', async (t) => {
    // y/a → x/a is denied and x/b → x/a allowed throughout; the churn (a policy opening x/a to z,
    // applied and deleted again and again) never changes either verdict. x/a lives on node1.
    const fixed = [policy('x', 'deny-all', { podSelector: {} }), policy('x', 'from-b', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: pod('b') }] }] })]
    const churn = policy('x', 'from-z', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: nsLabel('z') }] }] })
    await labApply(ref, fixed)
    try {
      await expectMatrix(t, 'before the restarts', all().denyIngress('x/*').allow('x/b', 'x/a'))
      // x/b lives on node2: its SYNs cross node2's forward (egress) and node1's (ingress).
      const watch = await watchFlow(
        state.nodes.filter((n) => n.name === 'node1' || n.name === 'node2'),
        address('x/b'),
        address('x/a'),
      )
      t.teardown(() => watch.remove())
      const seen = { denied: { probes: 0, connected: [] as string[] }, allowed: { probes: 0, failed: [] as string[] } }
      let running = true
      const prober1 = (async () => {
        while (running) {
          const [d, a] = await Promise.all([prober.probe('y/a', 'x/a', TCP80, 300), prober.probe('x/b', 'x/a', TCP80, 2500)])
          seen.denied.probes++
          seen.allowed.probes++
          if (d.connected) seen.denied.connected.push(new Date().toISOString())
          if (!a.connected) seen.allowed.failed.push(`${new Date().toISOString()} ${a.detail}`)
        }
      })()
      try {
        for (let round = 0; round < 3; round++) {
          await labApply(ref, [churn])
          await labNodeStop({ ...ref, node: 'node1', kill: true })
          await labDelete(ref, [keyOfPolicy(churn)])
          await labApply(ref, [churn])
          await labNodeStart({ ...ref, node: 'node1' })
          await labDelete(ref, [keyOfPolicy(churn)])
        }
      } finally {
        running = false
        await prober1
      }
      t.same(seen.denied.connected, [], `y/a → x/a (denied): ${seen.denied.probes} probes across 3 SIGKILL + restart rounds, none connected`)
      // Allowed throughout, so never refused: each sync creates the sets its rules need in a
      // transaction before the one that switches the rules (daemon/reconcilers/policy.ts; the kernel
      // makes a new interval set searchable only after the rules switch). Three early fresh-clone
      // runs saw refusals here (1 to 20 within 150 ms, during a partial sync); no run since has,
      // nor a rerun of that tree (issue 10). A failure names what each node counted of the flow:
      // which node, and which hook, refused.
      const counted = await watch.report()
      t.same(
        seen.allowed.failed,
        [],
        `x/b → x/a (allowed): ${seen.allowed.probes} probes, ${seen.allowed.failed.length ? `${seen.allowed.failed.length} failed, first ${seen.allowed.failed[0]}, last ${seen.allowed.failed.at(-1)}; counted on its way: ${counted}` : 'none failed'}`,
      )
      t.comment(`x/b → x/a, counted on its way: ${counted}`)
      if (seen.allowed.failed.length)
        t.comment(
          (await readFile(nodeLayout(lab, 'node1').log, 'utf8'))
            .split('\n')
            .filter((l) => /policy|start|ready/i.test(l))
            .slice(-60)
            .join('\n'),
        )
      probes += seen.denied.probes + seen.allowed.probes
    } finally {
      await labDelete(ref, fixed.map(keyOfPolicy))
    }
  })

  t.teardown(() => t.comment(`${cases} cases, ${probes} probes`))
})
