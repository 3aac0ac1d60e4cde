// NetworkPolicy from the kubernetes datastore: Namespaces, Pods and NetworkPolicies written to the
// in-test FAKE API server (daemon/datastore/testing/fakeApiServer.ts, the only fake) reach the
// policy reconciler through flatnetd's own ObjectView (list + watch), and the reconciler programs a
// test node's kernel (testing/topology.ts). After each change, delivered by watch, the whole
// matrix (5 ends, ports 80 and 81, IPv4 and IPv6) is probed and compared with the semantics'
// prediction (testing/oracle.ts, written from NETPOL.md independently of the compiler).
import t, { type Test } from 'tap'
import type { INamespace, IPod } from 'kubernetes-models/v1'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { testNamespaces } from '../../e2e/helpers/index.js'
import { startFakeCluster } from '../datastore/testing/fakeApiServerHarness.js'
import { createLogger } from '../log.js'
import { ObjectView } from '../objects/objectView.js'
import type { InputKind } from '../reconcile/contract.js'
import { PolicyReconciler, type PolicyView } from '../reconcilers/policy.js'
import { namespace, pod, policy } from './testing/cluster.js'
import { connectionAllowed, type End } from './testing/oracle.js'
import { buildTopology, LOCAL_SUBNETS, NODE_ADDRESS, nftIn } from './testing/topology.js'

const REMOTE: Record<string, [string, string]> = { 'y/a': ['10.244.2.10', 'fd00:10:244:2::a'], 'z/c': ['10.244.2.12', 'fd00:10:244:2::c'] }
const ENDS = ['x/a', 'x/b', 'y/b', 'y/a', 'z/c']
type Family = 4 | 6
const key = (o: { metadata?: { namespace?: string; name?: string } }) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name}`

t.test('the truth table with objects delivered by the kubernetes datastore (list + watch from the API server)', async (t) => {
  const { fake, config } = await startFakeCluster(t)
  const topo = await buildTopology(testNamespaces(t, 'npkube'), { 'x/a': 10, 'x/b': 11, 'y/b': 12 }, Object.values(REMOTE).flat(), [80, 81])
  t.teardown(() => topo.stop())
  const objects = new ObjectView({ datastore: config(), inputs: ['namespaces', 'pods', 'networkpolicies'], log: createLogger('fatal'), retryMs: 200, onDatastoreError: () => {}, onChange: () => {} })
  objects.start()
  t.teardown(async () => {
    await objects.stop()
    await objects.close()
  })
  const view: PolicyView = {
    synced: (k: InputKind) => (k === 'subnet' ? true : objects.synced(k as never)),
    namespaces: () => objects.namespaces(),
    pods: () => objects.pods(),
    networkPolicies: () => objects.networkPolicies(),
    self: () => ({ name: 'n1', nodeIP: NODE_ADDRESS, subnet: LOCAL_SUBNETS[0]!, subnets: LOCAL_SUBNETS, owner: 'test', updatedAt: new Date(0).toISOString() }),
  }
  const reconciler = new PolicyReconciler(createLogger('fatal'), undefined, nftIn(topo.node))
  t.teardown(async () => {
    await reconciler.remove()
  })
  const addressOf = (ref: string, family: Family) => REMOTE[ref]?.[family === 4 ? 0 : 1] ?? (family === 4 ? topo.pods.get(ref)!.v4 : topo.pods.get(ref)!.v6)
  const podOf = (ref: string, labels: Record<string, string>): IPod => {
    const [ns, name] = ref.split('/') as [string, string]
    // y/a names its port 80 "web", x/a its port 81.
    const web = ref === 'y/a' ? 80 : ref === 'x/a' ? 81 : undefined
    return pod(ns, name, [addressOf(ref, 4), addressOf(ref, 6)], labels, web ? [{ name: 'web', containerPort: web }] : [])
  }

  // What the API server holds (the test's own record of it, for the prediction).
  const namespaces = new Map<string, INamespace>()
  const pods = new Map<string, IPod>()
  const policies = new Map<string, INetworkPolicy>()
  const putNamespace = (n: INamespace) => (namespaces.set(key(n), n), fake.putObject('namespaces', n as never))
  const putPod = (p: IPod) => (pods.set(key(p), p), fake.putObject('pods', p as never))
  const putPolicy = (p: INetworkPolicy) => (policies.set(key(p), p), fake.putObject('networkpolicies', p as never))
  const deletePolicy = (ns: string, name: string) => (policies.delete(`${ns}/${name}`), fake.deleteObject('networkpolicies', ns, name))

  /** Waits until the view holds what the API server holds (by watch), syncs, probes every cell. */
  let cases = 0
  let probes = 0
  async function expectMatrix(t: Test, title: string): Promise<void> {
    cases++
    const started = Date.now()
    const same = (a: readonly object[] | undefined, b: Map<string, object>) =>
      a !== undefined &&
      a.length === b.size &&
      a.every(
        (o) =>
          JSON.stringify((o as { metadata?: { labels?: unknown } }).metadata?.labels ?? {}) ===
          JSON.stringify((b.get(key(o)) as { metadata?: { labels?: unknown } } | undefined)?.metadata?.labels ?? {}),
      )
    const policiesSame = () => {
      const listed = objects.networkPolicies()
      return listed !== undefined && listed.length === policies.size && listed.every((p) => JSON.stringify(p.spec) === JSON.stringify(policies.get(key(p))?.spec))
    }
    const deadline = Date.now() + 30_000
    const namespacesSame = () => {
      const listed = objects.namespaces()
      return listed !== undefined && [...namespaces.values()].every((n) => listed.some((l) => l.metadata?.name === n.metadata?.name && l.metadata?.labels?.team === n.metadata?.labels?.team))
    }
    while (!(same(objects.pods(), pods) && policiesSame() && namespacesSame()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    t.ok(same(objects.pods(), pods) && policiesSame() && namespacesSame(), `${title}: the watch delivered the change (${Date.now() - started} ms)`)
    const r = await reconciler.sync(view, { full: false, changed: new Set<InputKind>(['pods', 'namespaces', 'networkpolicies']) })
    t.same(r.problems, [], `${title}: synced`)
    const state = { namespaces: [...namespaces.values()], pods: [...pods.values()], policies: [...policies.values()] }
    const wrong: string[] = []
    let allowed = 0
    await Promise.all(
      ENDS.flatMap((from) =>
        ENDS.filter((to) => to !== from && !(REMOTE[from] && REMOTE[to])).flatMap((to) =>
          [80, 81].flatMap((port) =>
            ([4, 6] as const).map(async (family) => {
              const end = (ref: string): End => ({ pod: pods.get(ref)!, address: addressOf(ref, family) })
              const want = connectionAllowed(state, end(from), end(to), 'TCP', port, { egress: !REMOTE[from], ingress: !REMOTE[to] })
              const agent = REMOTE[from] ? topo.remoteAgent : topo.pods.get(from)!.agent
              const got = (await agent.request({ proto: 'tcp', host: addressOf(to, family), port, source: addressOf(from, family), timeoutMs: 3000 })).ok
              probes++
              if (want) allowed++
              if (got !== want) wrong.push(`${from} → ${to} tcp/${port} IPv${family}: ${got ? 'connected' : 'refused'}, expected ${want ? 'allowed' : 'denied'}`)
            }),
          ),
        ),
      ),
    )
    t.same(wrong, [], `${title}: 56 cells as the semantics say (${allowed} allowed)`)
  }

  for (const ns of ['x', 'y', 'z']) putNamespace(namespace(ns))
  for (const ref of ENDS) putPod(podOf(ref, { pod: ref.split('/')[1]! }))

  await t.test('no policy, then deny-all ingress in x', async (t) => {
    await expectMatrix(t, 'no policy')
    putPolicy(policy('x', 'deny-all', { podSelector: {} }))
    await expectMatrix(t, 'deny-all ingress in x')
  })
  await t.test('x/a opened to pod=b of namespaces labelled team=blue (both selectors in one peer), then z joins team blue', async (t) => {
    putPolicy(
      policy('x', 'a-from-blue-b', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'blue' } }, podSelector: { matchLabels: { pod: 'b' } } }] }],
      }),
    )
    await expectMatrix(t, 'no namespace is blue')
    putNamespace(namespace('y', { team: 'blue' }))
    await expectMatrix(t, 'y labelled team=blue: y/b reaches x/a')
    putPod(podOf('z/c', { pod: 'b' }))
    await expectMatrix(t, 'z/c relabelled pod=b (z is not blue)')
  })
  await t.test('egress: y/b reaches only named port web and the other node except z/c; ipBlock over IPv6', async (t) => {
    putPolicy(
      policy('y', 'b-out', {
        podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b'] }] },
        policyTypes: ['Egress'],
        egress: [
          { ports: [{ port: 'web' }] },
          { to: [{ ipBlock: { cidr: '10.244.2.0/24', except: ['10.244.2.12/32'] } }, { ipBlock: { cidr: 'fd00:10:244:2::/64', except: ['fd00:10:244:2::c/128'] } }] },
        ],
      }),
    )
    await expectMatrix(t, 'y/b egress policy')
  })
  await t.test('deletes and label changes delivered by watch', async (t) => {
    deletePolicy('x', 'deny-all')
    putPod(podOf('x/a', { pod: 'a', role: 'db' }))
    await expectMatrix(t, 'deny-all deleted, x/a gains role=db')
    deletePolicy('x', 'a-from-blue-b')
    deletePolicy('y', 'b-out')
    await expectMatrix(t, 'every policy deleted')
  })
  t.teardown(() => t.comment(`${cases} cases, ${probes} probes`))
})
