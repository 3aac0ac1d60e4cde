// The service proxy's compiler, pure: which chains, sets and map elements a Service becomes in
// each family. The kernel's behaviour with them is services.kernel.test.ts's.
import t from 'tap'
import { compactPlan, compileServices, mergePlans, type FamilyServices } from './compile.js'
import type { ServiceEndpoint, ServiceModel } from './model.js'

const node = { nodeName: 'n1', clusterRanges: ['10.244.0.0/16', 'fd00:10:244::/56'] }
const ep = (address: string, nodeName = 'n1', ready = true): ServiceEndpoint => ({ address, port: 8080, ready, nodeName })

function svc(extra: Partial<ServiceModel>, endpoints: ServiceEndpoint[], nodePort?: number): ServiceModel {
  return {
    namespace: 'ns',
    name: 'web',
    type: nodePort ? 'NodePort' : 'ClusterIP',
    clusterIPs: ['10.96.0.10'],
    externalIPs: [],
    loadBalancerIPs: [],
    externalTrafficLocal: false,
    internalTrafficLocal: false,
    ports: [{ name: 'http', protocol: 'TCP', port: 80, ...(nodePort ? { nodePort } : {}), endpoints }],
    ...extra,
  }
}

const chain = (f: FamilyServices, prefix: string) => [...f.chains].find(([n]) => n.startsWith(prefix))
const v4 = (s: ServiceModel) => compileServices([s], node).families[0]!
const v6 = (s: ServiceModel) => compileServices([s], node).families[1]!

t.test('a NodePort Service is data: its IP and node port lead to shared pick chains, its endpoints are map elements', async (t) => {
  const f = v4(svc({}, [ep('10.244.1.2'), ep('10.244.2.3', 'n2'), ep('10.244.3.4', 'n3')], 30080))
  t.same(f.elements['service-ips'].get('10.96.0.10 . tcp . 80'), 'goto pick-cluster-3')
  t.same(f.elements['service-nodeports'].get('tcp . 30080'), 'goto pick-nodeport-3')
  t.same(f.comments.get('10.96.0.10 . tcp . 80'), 'ns/web:http', 'each verdict element names its Service port')
  t.same(
    [...f.elements['endpoint-addresses']],
    [
      ['10.96.0.10 . tcp . 80 . 0', '10.244.1.2'],
      ['10.96.0.10 . tcp . 80 . 1', '10.244.2.3'],
      ['10.96.0.10 . tcp . 80 . 2', '10.244.3.4'],
    ],
    'endpoint i of N under the index numgen draws',
  )
  t.same([...f.elements['endpoint-ports']], [['10.96.0.10 . tcp . 80', '8080']])
  t.same([...f.elements['nodeport-addresses'].keys()], ['tcp . 30080 . 0', 'tcp . 30080 . 1', 'tcp . 30080 . 2'])
  t.same([...f.elements['nodeport-ports']], [['tcp . 30080', '8080']])
  t.same([...f.chains.keys()], ['pick-cluster-3', 'pick-nodeport-3'], 'no chain of its own')
  t.same(
    f.chains.get('pick-cluster-3'),
    [
      'ip saddr != @cluster-ranges jump mark-for-masquerade',
      'meta l4proto { tcp, udp, sctp } dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 3 map @endpoint-addresses : ip daddr . meta l4proto . th dport map @endpoint-ports',
    ],
    'clients outside the pod ranges are masqueraded; one rule picks 1 of 3 and DNATs',
  )
  t.same(f.chains.get('pick-nodeport-3')![0], 'jump mark-for-masquerade', 'node port traffic (policy Cluster) is masqueraded')
  t.match(f.chains.get('pick-nodeport-3')![1], /to meta l4proto \. th dport \. numgen random mod 3 map @nodeport-addresses : meta l4proto \. th dport map @nodeport-ports$/)
  t.same([...f.hairpins], ['10.244.1.2 . 10.244.1.2', '10.244.2.3 . 10.244.2.3', '10.244.3.4 . 10.244.3.4'], 'every endpoint reaching itself is hairpin')
  t.equal(f.elements['no-endpoint-services'].size + f.elements['no-endpoint-nodeports'].size, 0)
  const other = v4(svc({ name: 'api', clusterIPs: ['10.96.0.11'] }, [ep('10.244.1.5'), ep('10.244.1.6'), ep('10.244.1.7')]))
  t.same(other.chains.get('pick-cluster-3'), f.chains.get('pick-cluster-3'), 'another Service with 3 endpoints shares the chain')
  t.equal(v6(svc({}, [ep('10.244.1.2')], 30080)).chains.size, 0, 'a single-stack IPv4 Service has nothing in the IPv6 table, node port included')
})

t.test('no ready endpoint: the IP and node port are rejected, nothing else is written', async (t) => {
  const f = v4(svc({}, [ep('10.244.1.2', 'n1', false)], 30080))
  t.equal(f.chains.size, 0)
  t.same([...f.elements['no-endpoint-services']], [['10.96.0.10 . tcp . 80', 'goto reject-endpointless']])
  t.same([...f.elements['no-endpoint-nodeports']], [['tcp . 30080', 'goto reject-endpointless']])
  t.equal(f.elements['endpoint-addresses'].size + f.elements['nodeport-addresses'].size, 0)
  const plan = compileServices([svc({}, [])], node)
  t.equal(plan.stats.noEndpoints, 1)
})

t.test('traffic policies Local: only this node endpoints; external Local keeps the client address', async (t) => {
  const eps = [ep('10.244.1.2'), ep('10.244.2.3', 'n2')]
  const ext = v4(svc({ externalTrafficLocal: true, externalIPs: ['192.0.2.7'] }, eps, 30080))
  t.same(ext.elements['service-nodeports'].get('tcp . 30080'), 'goto pick-nodeport-local-1')
  t.same(ext.elements['service-ips'].get('192.0.2.7 . tcp . 80'), 'goto pick-external-local-1')
  t.notOk(
    [...ext.chains].some(([name, rules]) => name.includes('local') && rules.some((r) => r.includes('mark-for-masquerade'))),
    'no masquerade',
  )
  t.same([...ext.elements['nodeport-addresses']], [['tcp . 30080 . 0', '10.244.1.2']], 'one local endpoint')
  t.same(
    [...ext.elements['endpoint-addresses'].keys()].filter((k) => k.startsWith('192.0.2.7')),
    ['192.0.2.7 . tcp . 80 . 0'],
  )
  t.same(ext.elements['service-ips'].get('10.96.0.10 . tcp . 80'), 'goto pick-cluster-2', 'cluster IP traffic still goes to every endpoint')
  const internal = v4(svc({ internalTrafficLocal: true }, [ep('10.244.2.3', 'n2')]))
  t.same([...internal.elements['no-endpoint-services'].keys()], ['10.96.0.10 . tcp . 80'], 'internal Local without a local endpoint: rejected')
})

t.test('no ready endpoint: the serving terminating ones serve, per traffic policy; with one ready, only it', async (t) => {
  const leaving = (address: string, nodeName = 'n1'): ServiceEndpoint => ({ ...ep(address, nodeName, false), servingTerminating: true })
  const f = v4(svc({ externalTrafficLocal: true }, [leaving('10.244.1.2'), leaving('10.244.2.3', 'n2'), ep('10.244.2.4', 'n2')], 30080))
  t.same(f.elements['service-ips'].get('10.96.0.10 . tcp . 80'), 'goto pick-cluster-1', 'cluster traffic: the ready endpoint only')
  t.same([...f.elements['endpoint-addresses'].values()], ['10.244.2.4'])
  t.same(f.elements['service-nodeports'].get('tcp . 30080'), 'goto pick-nodeport-local-1', 'external Local: no ready local endpoint, so the local terminating one')
  t.same([...f.elements['nodeport-addresses'].values()], ['10.244.1.2'])
  const none = v4(svc({}, [ep('10.244.1.2', 'n1', false)]))
  t.equal(none.elements['no-endpoint-services'].size, 1, 'not ready and not terminating: still rejected')
})

t.test('endpoints of one Service port on different target ports: a chain of its own picks address and port', async (t) => {
  const f = v4(svc({}, [ep('10.244.1.2'), { ...ep('10.244.2.3', 'n2'), port: 9090 }], 30080))
  const [name, rules] = chain(f, 'service-')!
  t.match(name, /^service-[0-9A-V]{7}-ns\/web\/tcp\/http$/)
  t.same(f.elements['service-ips'].get('10.96.0.10 . tcp . 80'), `goto ${name}`)
  t.same(rules, ['ip saddr != @cluster-ranges jump mark-for-masquerade', 'meta l4proto tcp dnat ip addr . port to numgen random mod 2 map { 0 : 10.244.1.2 . 8080, 1 : 10.244.2.3 . 9090 }'])
  t.match(f.elements['service-nodeports'].get('tcp . 30080'), /^goto external-/)
  t.equal(f.elements['endpoint-addresses'].size + f.elements['endpoint-ports'].size, 0, 'nothing in the shared maps')
})

t.test('dual stack, external and LB IPs, affinity: per family, per endpoint sets with the timeout', async (t) => {
  const s = svc({ clusterIPs: ['10.96.0.10', 'fd00:96::a'], externalIPs: ['192.0.2.7'], loadBalancerIPs: ['fd00:1b::1'], sessionAffinityTimeoutSeconds: 60 }, [
    ep('10.244.1.2'),
    ep('fd00:10:244:1::2'),
  ])
  const [a, b] = [v4(s), v6(s)]
  t.match(a.elements['service-ips'].get('192.0.2.7 . tcp . 80'), /^goto external-/)
  t.match(b.elements['service-ips'].get('fd00:96::a . tcp . 80'), /^goto service-/)
  t.match(b.elements['service-ips'].get('fd00:1b::1 . tcp . 80'), /^goto external-/)
  const [name, rules] = chain(b, 'endpoint-')!
  t.match(name, /__fd00\.10\.244\.1\.\.2\/8080$/, 'colons spelt as dots in names')
  t.match(rules, [/^update @affinity-\w+ \{ ip6 saddr \}$/, 'meta l4proto tcp dnat to [fd00:10:244:1::2]:8080'], 'with affinity, an endpoint chain records the client, then DNATs')
  t.same([...b.hairpins], ['fd00:10:244:1::2 . fd00:10:244:1::2'])
  t.same(
    [...b.sets.values()].map((x) => x.timeout),
    [60],
  )
  t.match(chain(b, 'service-')![1][1], /^ip6 saddr @affinity-\w+ goto endpoint-/, 'a known client goes back to its endpoint first')
  const other = v6({ ...s, sessionAffinityTimeoutSeconds: 30 })
  t.not([...other.sets.keys()][0], [...b.sets.keys()][0], 'another timeout is another set (never edited in place)')
})

t.test('Services compiled one by one merge into the plan of all', async (t) => {
  const a = svc({}, [ep('10.244.1.2')], 30080)
  const b = svc({ name: 'api', clusterIPs: ['10.96.0.11'] }, [ep('10.244.1.3')])
  const merged = mergePlans([compileServices([a], node), compileServices([b], node)], node)
  t.same(merged, compileServices([a, b], node))
  t.same(mergePlans([compactPlan(compileServices([a], node)), compactPlan(compileServices([b], node))], node), merged, 'compacted plans merge the same')
})
