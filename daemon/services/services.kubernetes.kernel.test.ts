// The service proxy fed by the kubernetes datastore: Services and EndpointSlices written to the
// in-test FAKE API server (daemon/datastore/testing/fakeApiServer.ts, the only fake) reach the
// services reconciler through flatnetd's own ObjectView (list + watch) and the model flatnetd
// builds on Kubernetes (endpoints from EndpointSlices, daemon/reconcilers/index.ts), and the
// reconciler programs a test node's kernel (../policy/testing/topology.ts). Real connections from
// the node to the cluster IP tell which endpoints serve after each change delivered by watch: a
// slice's endpoints, an endpoint turning not ready, a Service without endpoints, a Service of
// another proxy, a Service deleted.
import t from 'tap'
import { inNetnsOk, testNamespaces } from '../../e2e/helpers/index.js'
import { startFakeCluster } from '../datastore/testing/fakeApiServerHarness.js'
import { createLogger } from '../log.js'
import { ObjectView } from '../objects/objectView.js'
import { buildTopology, LOCAL_SUBNETS, NODE_ADDRESS, nftIn, REMOTE_NODE_ADDRESS } from '../policy/testing/topology.js'
import type { InputKind } from '../reconcile/contract.js'
import { ServicesReconciler, type ServicesView } from '../reconcilers/services.js'
import { serviceModels } from './endpoints.js'
import { ServiceAgent, type ProbeAnswer } from './testing/agent.js'

const BACKEND = 8080
const WEB = '10.96.0.10'
const PODS = ['x/a', 'x/b', 'x/c']

t.test('Services and EndpointSlices delivered by the kubernetes datastore (list + watch from the API server)', async (t) => {
  const { fake, config } = await startFakeCluster(t)
  const topo = await buildTopology(testNamespaces(t, 'svckube'), { 'x/a': 10, 'x/b': 11, 'x/c': 12 }, ['10.244.2.10'], [])
  t.teardown(() => topo.stop())
  // Cluster IPs are routed like any address off the node (a real node's default route): to the remote node.
  await inNetnsOk(topo.node, ['ip', 'route', 'add', '10.96.0.0/16', 'via', REMOTE_NODE_ADDRESS])
  const agents = new Map<string, ServiceAgent>()
  for (const p of PODS) agents.set(p, await ServiceAgent.start(topo.pods.get(p)!.netns, p, [BACKEND]))
  const node = await ServiceAgent.start(topo.node, 'node', [])
  t.teardown(() => {
    node.stop()
    for (const a of agents.values()) a.stop()
  })

  const objects = new ObjectView({ datastore: config(), inputs: ['pods', 'services', 'endpointslices'], log: createLogger('fatal'), retryMs: 200, onDatastoreError: () => {}, onChange: () => {} })
  objects.start()
  t.teardown(async () => {
    await objects.stop()
    await objects.close()
  })
  const view: ServicesView = {
    synced: (k: InputKind) => (k === 'subnet' ? true : objects.synced(k as never)),
    services: () => objects.services(),
    pods: () => objects.pods(),
    endpointSlices: () => objects.endpointSlices(),
    self: () => ({ name: 'n1', nodeIP: NODE_ADDRESS, subnet: LOCAL_SUBNETS[0]!, subnets: LOCAL_SUBNETS, owner: 'test', updatedAt: new Date(0).toISOString() }),
  }
  // As flatnetd builds it on Kubernetes: the control plane's EndpointSlices are the endpoints.
  const reconciler = new ServicesReconciler(
    { nodeName: 'n1', clusterRanges: ['10.244.0.0/16'] },
    (v) => {
      const services = v.services()
      return services && serviceModels({ services, pods: v.pods(), endpointSlices: v.endpointSlices(), source: 'endpointslices' })
    },
    createLogger('fatal'),
    { nft: nftIn(topo.node) },
  )
  t.teardown(() => reconciler.remove())

  const service = (name: string, clusterIP: string, labels: Record<string, string> = {}) => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'x', name, labels },
    spec: { type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], ipFamilies: ['IPv4'], selector: { app: name }, ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: BACKEND }] },
  })
  const slice = (service: string, ready: Record<string, boolean>) => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'x', name: `${service}-abcde`, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: Object.entries(ready).map(([pod, isReady]) => ({
      addresses: [topo.pods.get(pod)!.v4],
      conditions: { ready: isReady, serving: isReady, terminating: false },
      nodeName: 'n1',
      targetRef: { kind: 'Pod', namespace: 'x', name: pod.split('/')[1] },
    })),
    ports: [{ name: 'http', protocol: 'TCP', port: BACKEND }],
  })

  /** Waits until the view shows `check` (delivered by watch; the first open loads the Kubernetes client, seconds under load), then syncs as the runner would. */
  const delivered = async (what: string, check: () => boolean) => {
    for (const end = Date.now() + 60_000; !check(); await new Promise((r) => setTimeout(r, 20)))
      if (Date.now() > end)
        throw new Error(
          `${what}: not delivered by watch within 60 s (view: ${JSON.stringify({ services: objects.services()?.map((x) => x.metadata?.name), slices: objects.endpointSlices(), problem: objects.gate.problem() })})`,
        )
    const r = await reconciler.sync(view, { full: false, changed: new Set<InputKind>(['services', 'endpointslices']) })
    if (r.problems.length) throw new Error(r.problems.join('; '))
  }
  const servedBy = async (host: string, n = 30): Promise<{ names: string[]; failed: ProbeAnswer[] }> => {
    const answers = await Promise.all(Array.from({ length: n }, () => node.request({ proto: 'tcp', host, port: 80 })))
    const names = [...new Set(answers.filter((a) => a.ok).map((a) => a.reply!.split(' ')[0]!))].sort()
    return { names, failed: answers.filter((a) => !a.ok) }
  }
  const readyOf = (name: string) => (objects.endpointSlices() ?? []).find((s) => s.metadata?.name === `${name}-abcde`)?.endpoints.map((e) => e.conditions?.ready)

  fake.putObject('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } } as never)
  fake.putObject('services', service('web', WEB) as never)
  fake.putObject('endpointslices', slice('web', { 'x/a': true, 'x/b': true, 'x/c': true }) as never)
  await delivered('Service web and its slice', () => readyOf('web')?.length === 3 && (objects.services() ?? []).some((s) => s.metadata?.name === 'web'))
  let got = await servedBy(WEB)
  t.same(got.failed, [], 'every connection to the cluster IP answered')
  t.ok(got.names.length >= 2, `spread over the slice's endpoints: ${got.names.join(', ')}`)
  t.ok(
    got.names.every((n) => PODS.includes(n)),
    'only endpoints of the slice answer',
  )

  // The control plane marks x/c not ready: it leaves the rotation.
  fake.putObject('endpointslices', slice('web', { 'x/a': true, 'x/b': true, 'x/c': false }) as never)
  await delivered('x/c not ready', () => JSON.stringify(readyOf('web')) === JSON.stringify([true, true, false]))
  got = await servedBy(WEB)
  t.same(got.failed, [], 'still every connection answered')
  t.same(got.names, ['x/a', 'x/b'], 'x/c, not ready, serves nothing')

  // A Service whose slice lists no endpoint is refused at once; one of another proxy is not touched.
  fake.putObject('services', service('empty', '10.96.0.11') as never)
  fake.putObject('services', service('other', '10.96.0.12', { 'service.kubernetes.io/service-proxy-name': 'someone-else' }) as never)
  fake.putObject('endpointslices', slice('other', { 'x/a': true }) as never)
  await delivered('Services empty and other', () => (objects.services() ?? []).length === 3 && readyOf('other')?.length === 1)
  const empty = await node.request({ proto: 'tcp', host: '10.96.0.11', port: 80 })
  t.equal(empty.error, 'ECONNREFUSED', 'no endpoint: refused (TCP reset)')
  const listing = (await nftIn(topo.node).run(['list', 'table', 'ip', 'flatnet-services'])).stdout
  t.notMatch(listing, /10\.96\.0\.12/, 'a Service labelled for another proxy is not in the table')
  t.match(listing, /10\.96\.0\.10/, 'web is')

  // Deleted on the API server: gone from the kernel.
  fake.deleteObject('services', 'x', 'web')
  fake.deleteObject('endpointslices', 'x', 'web-abcde')
  await delivered('web deleted', () => !(objects.services() ?? []).some((s) => s.metadata?.name === 'web'))
  t.notMatch((await nftIn(topo.node).run(['list', 'table', 'ip', 'flatnet-services'])).stdout, /10\.96\.0\.10/, 'web is gone from the table')
  t.notOk((await node.request({ proto: 'tcp', host: WEB, port: 80, timeoutMs: 1000 })).ok, 'the cluster IP no longer answers')
})
