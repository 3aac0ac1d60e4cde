// The service proxy on a real kernel: the services reconciler programs `ip/ip6 flatnet-services`
// in a test node namespace (../policy/testing/topology.ts: pods x/a, x/b, x/c behind fn… veths,
// ptp-style; a "remote" namespace on lan0 playing another node and the outside) and real TCP/UDP
// connections go through cluster IPs and node ports. Each backend answers with its name and the
// client address it saw, so the tests judge which endpoint served and what was masqueraded.
import t from 'tap'
import { inNetnsOk, testNamespaces } from '../../e2e/helpers/index.js'
import { createLogger } from '../log.js'
import { DaemonMetrics } from '../metrics.js'
import { namespace, pod, policy } from '../policy/testing/cluster.js'
import { buildTopology, LOCAL_SUBNETS, NODE_ADDRESS, nftIn, REMOTE_NODE_ADDRESS, type Topology } from '../policy/testing/topology.js'
import type { InputKind } from '../reconcile/contract.js'
import { PolicyReconciler, type PolicyView } from '../reconcilers/policy.js'
import { READ_BACK_SPACING, ServicesReconciler, type ServicesView } from '../reconcilers/services.js'
import type { ServiceEndpoint, ServiceModel } from './model.js'
import { ServiceAgent, type ProbeAnswer } from './testing/agent.js'
import { ConntrackSocket } from '../../net/conntrack.js'
import { openNetns, warmThreadPool, withNetns } from '../../net/netns.js'

const BACKEND = 8080
const GATEWAY = { v4: '10.244.1.1', v6: 'fd00:10:244:1::1' }
const IP = { web: '10.96.0.10', web6: 'fd00:96::a', empty: '10.96.0.11', sticky: '10.96.0.12', extra: '10.96.0.13', mixed: '10.96.0.14', local: '10.96.0.15', external: '10.97.0.7' }
/** x/a also listens here: a named targetPort that x/a maps to another number than x/b. */
const OTHER_BACKEND = 8081
const PODS = ['x/a', 'x/b', 'x/c']
let topo: Topology
const agents = new Map<string, ServiceAgent>()
let models: ServiceModel[] = []
const view = {
  synced: (_k: InputKind) => true,
  services: () => [],
  pods: () => [],
  endpointSlices: () => [],
  self: () => undefined,
} satisfies ServicesView
const metrics = new DaemonMetrics()
let conntrack: ConntrackSocket
const reconcilerFor = () =>
  new ServicesReconciler({ nodeName: 'n1', clusterRanges: ['10.244.0.0/16', 'fd00:10:244::/56'] }, () => models, createLogger('fatal'), {
    metrics,
    nft: nftIn(topo.node),
    forgetFlows: (f) => conntrack.delete(f),
  })
let reconciler: ServicesReconciler
const full = { full: true, changed: new Set<InputKind>() }
const partial = { full: false, changed: new Set<InputKind>(['services']) }

function endpoints(family: 4 | 6, names = PODS): ServiceEndpoint[] {
  return names.map((n) => ({ address: family === 4 ? topo.pods.get(n)!.v4 : topo.pods.get(n)!.v6, port: BACKEND, ready: true, nodeName: 'n1', pod: n }))
}

function service(name: string, clusterIPs: string[], eps: ServiceEndpoint[], extra: Partial<ServiceModel> = {}, nodePort?: number, protocol: 'TCP' | 'UDP' = 'TCP'): ServiceModel {
  const ports = [{ name: '', protocol, port: 80, nodePort, endpoints: eps }]
  if (protocol === 'TCP') ports.push({ name: 'dns', protocol: 'UDP', port: 80, nodePort: undefined, endpoints: eps })
  return {
    namespace: 'x',
    name,
    type: nodePort ? 'NodePort' : 'ClusterIP',
    clusterIPs,
    externalIPs: [],
    loadBalancerIPs: [],
    externalTrafficLocal: false,
    internalTrafficLocal: false,
    ...extra,
    ports,
  }
}

async function sync(req = partial): Promise<{ changed: boolean }> {
  const r = await reconciler.sync(view, req)
  if (r.problems.length) throw new Error(r.problems.join('; '))
  return r
}

const from = (who: string) => (who === 'node' ? agents.get('node')! : who === 'remote' ? agents.get('remote')! : agents.get(who)!)

async function many(who: string, host: string, n: number, proto: 'tcp' | 'udp' = 'tcp', port = 80): Promise<ProbeAnswer[]> {
  return Promise.all(Array.from({ length: n }, () => from(who).request({ proto, host, port })))
}

/** backend name → the client addresses it saw. */
function seen(answers: ProbeAnswer[]): Map<string, Set<string>> {
  const m = new Map<string, Set<string>>()
  for (const a of answers.filter((a) => a.ok)) {
    const [name, peer] = a.reply!.split(' ') as [string, string]
    m.set(name, (m.get(name) ?? new Set()).add(peer))
  }
  return m
}

const nft = () => nftIn(topo.node)
// Every object's handle, without what the kernel adds and expires by itself: the clients an
// affinity set learned (their 1 s timeout may pass between two listings).
const handles = async () =>
  (await nft().run(['-a', '-s', 'list', 'ruleset'])).stdout.replace(/\n\t+elements = \{[^}]*\}(?=\n\t+\})/g, (m, offset: number, all: string) =>
    /flags dynamic/.test(all.slice(Math.max(all.lastIndexOf('\tset ', offset), all.lastIndexOf('\tmap ', offset)), offset)) ? '' : m,
  )

t.before(async () => {
  const namespaces = testNamespaces(t, 'svcdp')
  topo = await buildTopology(namespaces, { 'x/a': 10, 'x/b': 11, 'x/c': 12 }, ['10.244.2.10'], [])
  t.teardown(() => {
    topo.stop()
    for (const a of agents.values()) a.stop()
  })
  // Cluster IPs are routed like any address off the node (a real node's default route): here to the remote node.
  await inNetnsOk(topo.node, ['ip', 'route', 'add', '10.96.0.0/16', 'via', REMOTE_NODE_ADDRESS])
  await inNetnsOk(topo.node, ['ip', '-6', 'route', 'add', 'fd00:96::/112', 'via', 'fd00:30::2'])
  // An external IP is routed to the node by whoever owns it (here: the remote side, the "outside").
  await inNetnsOk(topo.remote, ['ip', 'route', 'add', IP.external, 'via', NODE_ADDRESS])
  const started = await Promise.all([
    ...PODS.map(async (p) => [p, await ServiceAgent.start(topo.pods.get(p)!.netns, p, p === 'x/a' ? [BACKEND, OTHER_BACKEND] : [BACKEND])] as const),
    (async () => ['node', await ServiceAgent.start(topo.node, 'node', [])] as const)(),
    (async () => ['remote', await ServiceAgent.start(topo.remote, 'remote', [BACKEND])] as const)(),
  ])
  for (const [k, a] of started) agents.set(k, a)
  // The node's conntrack table, as flatnetd's own socket would see it on a real node.
  await warmThreadPool()
  const nodeNs = openNetns(`/run/netns/${topo.node}`)
  conntrack = withNetns(nodeNs, () => new ConntrackSocket())
  nodeNs.close()
  t.teardown(() => conntrack.close())
  models = [
    service('web', [IP.web, IP.web6], [...endpoints(4), ...endpoints(6)], {}, 30080),
    service('empty', [IP.empty], [], {}, 30081),
    service('sticky', [IP.sticky], endpoints(4), { sessionAffinityTimeoutSeconds: 1 }),
    service('mixed', [IP.mixed], [{ ...endpoints(4, ['x/a'])[0]!, port: OTHER_BACKEND }, ...endpoints(4, ['x/b'])]),
    service(
      'local',
      [IP.local],
      endpoints(4, ['x/a', 'x/b']).map((e, i) => ({ ...e, nodeName: i === 0 ? 'n1' : 'n2' })),
      { externalIPs: [IP.external], externalTrafficLocal: true },
      30082,
    ),
  ]
  reconciler = reconcilerFor()
})

t.test('ClusterIP: every endpoint serves, pods keep their address, UDP too, IPv6 too', async (t) => {
  t.same(await sync(full), { changed: true, problems: [] })
  const v4 = seen(await many('x/b', IP.web, 30))
  t.same([...v4.keys()].sort(), PODS, 'x/a, x/b and x/c all served 30 connections')
  t.same([...v4.get('x/a')!], [topo.pods.get('x/b')!.v4], 'another pod saw the client pod address (no NAT of the source)')
  t.same([...v4.get('x/b')!], [GATEWAY.v4], 'the client reaching itself (hairpin) is masqueraded to the node side of its veth')
  const udp = seen(await many('x/a', IP.web, 20, 'udp'))
  t.ok(udp.size >= 2, `UDP spread over ${[...udp.keys()].join(', ')}`)
  t.same([...(udp.get('x/b') ?? udp.get('x/c'))!], [topo.pods.get('x/a')!.v4], 'UDP source kept')
  const v6 = seen(await many('x/c', IP.web6, 30))
  t.same([...v6.keys()].sort(), PODS, 'IPv6: every endpoint served')
  t.same([...v6.get('x/a')!], [topo.pods.get('x/c')!.v6], 'IPv6 source kept')
  t.same([...v6.get('x/c')!], [GATEWAY.v6], 'IPv6 hairpin masqueraded')
  t.equal(metrics.servicesProgrammed.get(), 5)
})

t.test('endpoints of one Service port on different target ports (a named targetPort): each served on its own', async (t) => {
  const answers = seen(await many('x/c', IP.mixed, 30))
  t.same([...answers.keys()].sort(), ['x/a', 'x/b'], 'x/a (on 8081) and x/b (on 8080) both served')
  t.same([...answers.get('x/a')!], [topo.pods.get('x/c')!.v4], 'source kept')
})

t.test('externalTrafficPolicy Local: external IP and NodePort go to this node endpoints only, the client address kept', async (t) => {
  const external = seen(await many('remote', IP.external, 12))
  t.same([...external.keys()], ['x/a'], 'only x/a, the endpoint on this node, serves the external IP')
  t.same([...external.get('x/a')!], [REMOTE_NODE_ADDRESS], 'the outside client seen as itself')
  const nodePort = seen(await many('remote', NODE_ADDRESS, 12, 'tcp', 30082))
  t.same([...nodePort.keys()], ['x/a'], 'only x/a serves the NodePort')
  t.same([...nodePort.get('x/a')!], [REMOTE_NODE_ADDRESS], 'NodePort client seen as itself')
  t.same([...seen(await many('x/c', IP.local, 20)).keys()].sort(), ['x/a', 'x/b'], 'the cluster IP still spreads over every endpoint (internal policy Cluster)')
})

t.test('the node reaches ClusterIPs and its own NodePorts, never on loopback; the outside reaches NodePorts, masqueraded', async (t) => {
  const node = seen(await many('node', IP.web, 12))
  t.ok(node.size >= 2, `node → ClusterIP served by ${[...node.keys()].join(', ')}`)
  t.ok(
    [...node.values()].every((s) => [...s].every((a) => a === GATEWAY.v4)),
    'the node, outside the pod ranges, is masqueraded',
  )
  t.ok((await from('node').request({ host: NODE_ADDRESS, port: 30080 })).ok, 'node → its address:NodePort')
  const lo = await from('node').request({ host: '127.0.0.1', port: 30080 })
  t.equal(lo.error, 'ECONNREFUSED', 'no NodePort on 127.0.0.1')
  const outside = seen(await many('remote', NODE_ADDRESS, 12, 'tcp', 30080))
  t.ok(outside.size >= 2, `outside → NodePort served by ${[...outside.keys()].join(', ')}`)
  t.notOk(
    [...outside.values()].some((s) => s.has(REMOTE_NODE_ADDRESS)),
    'externalTrafficPolicy Cluster: the outside client is masqueraded',
  )
  t.ok((await from('remote').request({ host: 'fd00:30::1', port: 30080 })).ok, 'IPv6 NodePort on the node address')
})

t.test('no ready endpoint: refused at once (TCP reset / port unreachable), not a timeout', async (t) => {
  for (const [who, host, port] of [
    ['x/a', IP.empty, 80],
    ['node', IP.empty, 80],
    ['remote', NODE_ADDRESS, 30081],
  ] as const) {
    const a = await from(who).request({ host, port })
    t.equal(a.error, 'ECONNREFUSED', `${who} → ${host}:${port} refused`)
    t.ok(a.ms < 1000, `within ${a.ms} ms`)
  }
  t.equal(metrics.servicesNoEndpoints.get(), 2, 'TCP and UDP port of x/empty')
})

t.test('sessionAffinity ClientIP: a client sticks to one endpoint until the timeout expires', async (t) => {
  const first = seen(await Promise.all(Array.from({ length: 1 }, () => from('x/a').request({ host: IP.sticky, port: 80 }))))
  const chosen = [...first.keys()][0]!
  const again = seen(await many('x/a', IP.sticky, 15))
  t.same([...again.keys()], [chosen], `15 more connections all to ${chosen}`)
  const listed = async () => (await nft().run(['list', 'table', 'ip', 'flatnet-services'])).stdout
  t.match(await listed(), new RegExp(`${topo.pods.get('x/a')!.v4.replace(/\./g, '\\.')} expires`), 'the client is in an affinity set')
  await new Promise((r) => setTimeout(r, 1600))
  t.notMatch(await listed(), / expires /, 'after the 1 s timeout the entry is gone')
  const other = seen(await many('x/b', IP.sticky, 10))
  t.equal(other.size, 1, 'another client sticks too')
})

t.test('NetworkPolicy on the backend judges the translated connection', async (t) => {
  const policyView: PolicyView = {
    synced: () => true,
    namespaces: () => [namespace('x')],
    pods: () => PODS.map((p) => pod('x', p.slice(2), [topo.pods.get(p)!.v4, topo.pods.get(p)!.v6], { pod: p.slice(2) })),
    networkPolicies: () => [policy('x', 'c-from-b', { podSelector: { matchLabels: { pod: 'c' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] })],
    self: () => ({ name: 'n1', nodeIP: NODE_ADDRESS, subnet: LOCAL_SUBNETS[0]!, subnets: LOCAL_SUBNETS, owner: 'test', updatedAt: new Date(0).toISOString() }),
  }
  const pol = new PolicyReconciler(createLogger('fatal'), undefined, nftIn(topo.node))
  t.teardown(() => pol.remove())
  t.same((await pol.sync(policyView, full)).problems, [])
  const fromA = await many('x/a', IP.web, 30)
  const servedA = seen(fromA)
  t.notOk(servedA.has('x/c'), 'x/a never reaches x/c through the Service (the policy refuses it)')
  t.ok(
    fromA.some((a) => a.error === 'ECONNREFUSED'),
    'the connections sent to x/c were refused by the policy',
  )
  t.ok(seen(await many('x/b', IP.web, 30)).has('x/c'), 'x/b, allowed by the policy, reaches x/c through the Service')
})

t.test('a UDP flow to a backend that leaves the Service moves to another at once; the other flows keep theirs', async (t) => {
  // One UDP "connection" per source port: conntrack keeps its backend while the client keeps sending.
  const flow = async (sourcePort: number) => (await from('x/c').request({ proto: 'udp', host: IP.web, port: 80, sourcePort })).reply?.split(' ')[0]
  const backends = new Map<number, string>()
  for (let port = 41000; port < 41040 && new Set(backends.values()).size < 2; port++) backends.set(port, (await flow(port))!)
  const [[leavingPort, leaving], [stayingPort, staying]] = [...backends].filter(([, b], i, all) => all.findIndex(([, x]) => x === b) === i) as Array<[number, string]>
  t.equal(await flow(leavingPort), leaving, `the flow from port ${leavingPort} sticks to ${leaving}`)
  const web = models.find((m) => m.name === 'web')!
  const without = { ...web, ports: web.ports.map((p) => ({ ...p, endpoints: p.endpoints.map((e) => ({ ...e, ready: e.pod !== leaving })) })) }
  models = models.map((m) => (m === web ? without : m))
  await sync()
  // Its backend still runs (not ready is not gone): only the deleted conntrack entry moves the flow.
  const moved = await flow(leavingPort)
  t.ok(moved !== undefined && moved !== leaving, `the flow from port ${leavingPort} moved from ${leaving} to ${moved}`)
  t.equal(await flow(stayingPort), staying, `the flow from port ${stayingPort} kept ${staying}, which still serves`)
  models = models.map((m) => (m === without ? web : m))
  await sync()
})

t.test('restart, partial add, hand edit, remove(): the kernel state tells', async (t) => {
  const before = await handles()
  reconciler = reconcilerFor()
  t.equal((await sync(full)).changed, false, 'a restarted reconciler finds its own last write')
  t.equal(await handles(), before, 'nothing rewritten (every handle the same)')
  t.equal((await sync(full)).changed, false, 'and a second full sync neither')

  models = [...models, service('extra', [IP.extra], endpoints(4, ['x/a']))]
  t.equal((await sync(partial)).changed, true)
  const after = await handles()
  const chainsOf = (s: string) => s.split('\n').filter((l) => /^\tchain /.test(l))
  const kept = chainsOf(before).filter((c) => !c.includes('synced-'))
  t.ok(
    kept.every((c) => after.includes(c)),
    'every chain of before kept its handle',
  )
  t.same([...seen(await many('x/b', IP.extra, 3)).keys()], ['x/a'], 'the added Service serves')

  await nft().run(['flush', 'map', 'ip', 'flatnet-services', 'service-ips'])
  t.notOk((await from('x/b').request({ host: IP.web, port: 80, timeoutMs: 500 })).ok, 'hand edit broke the Service')
  t.equal((await sync(partial)).changed, false, 'a partial sync trusts what it wrote')
  // A full sync reads back once READ_BACK_SPACING × the last read-back's duration has passed (a few ms here).
  const readBack = metrics.servicesReadBackSeconds.get()!
  t.ok(readBack > 0, `the last read-back took ${readBack} s`)
  await new Promise((r) => setTimeout(r, READ_BACK_SPACING * readBack * 1000))
  t.equal((await sync(full)).changed, true, 'a full sync finds the edit and rewrites')
  t.ok((await from('x/b').request({ host: IP.web, port: 80 })).ok, 'served again')
  t.equal((await sync(full)).changed, false, 'then stable')

  models = models.filter((m) => m.name !== 'extra')
  t.equal((await sync(partial)).changed, true)
  t.notMatch(await handles(), /extra/, 'a deleted Service leaves no chain, set or element')
  const pairs = (await nft().run(['list', 'set', 'ip', 'flatnet-services', 'endpoint-hairpins'])).stdout
  const xa = topo.pods.get('x/a')!.v4
  t.ok(pairs.includes(`${xa} . ${xa}`), 'x/a, endpoint of the deleted Service and of x/web, keeps its hairpin pair')

  t.match(await reconciler.remove(), /removed/)
  t.equal((await nft().run(['list', 'ruleset'])).stdout.trim(), '', 'remove() leaves no table in the node')
  t.notOk((await from('x/b').request({ host: IP.web, port: 80, timeoutMs: 500 })).ok, 'no Service without the tables')
})
