// The service proxy's compiler, pure: which chains, sets and map elements a Service becomes in
// each family. The kernel's behaviour with them is services.kernel.test.ts's.
import t from 'tap'
import { compileServices, mergePlans, type FamilyServices } from './compile.js'
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

t.test('a NodePort Service: the IP and node port lead to its chains; each endpoint gets 1/N', async (t) => {
  const f = v4(svc({}, [ep('10.244.1.2'), ep('10.244.2.3', 'n2'), ep('10.244.3.4', 'n3')], 30080))
  const [serviceName, rules] = chain(f, 'service-')!
  t.match(serviceName, /^service-[0-9A-V]{7}-ns\/web\/tcp\/http$/)
  t.same(f.elements['service-ips'].get('10.96.0.10 . tcp . 80'), `goto ${serviceName}`)
  t.match(f.elements['service-nodeports'].get('tcp . 30080'), /^goto external-/)
  t.equal(rules[0], 'ip daddr 10.96.0.10 ip saddr != @cluster-ranges jump mark-for-masquerade', 'clients outside the pod ranges are masqueraded')
  t.same(
    rules.slice(1),
    ['meta l4proto tcp dnat ip addr . port to numgen random mod 3 map { 0 : 10.244.1.2 . 8080, 1 : 10.244.2.3 . 8080, 2 : 10.244.3.4 . 8080 }'],
    'one rule picks an endpoint (numgen random mod 3) and DNATs to it',
  )
  t.same(chain(f, 'external-')![1], ['jump mark-for-masquerade', `goto ${serviceName}`], 'external traffic (policy Cluster) masqueraded, then the same choice')
  t.equal(chain(f, 'endpoint-'), undefined, 'no chain per endpoint without affinity')
  t.same([...f.hairpins], ['10.244.1.2 . 10.244.1.2', '10.244.2.3 . 10.244.2.3', '10.244.3.4 . 10.244.3.4'], 'every endpoint reaching itself is hairpin')
  t.equal(f.elements['no-endpoint-services'].size + f.elements['no-endpoint-nodeports'].size, 0)
  t.equal(v6(svc({}, [ep('10.244.1.2')], 30080)).chains.size, 0, 'a single-stack IPv4 Service has nothing in the IPv6 table, node port included')
})

t.test('no ready endpoint: the IP and node port are rejected, nothing else is written', async (t) => {
  const f = v4(svc({}, [ep('10.244.1.2', 'n1', false)], 30080))
  t.equal(f.chains.size, 0)
  t.same([...f.elements['no-endpoint-services']], [['10.96.0.10 . tcp . 80', 'goto reject-endpointless']])
  t.same([...f.elements['no-endpoint-nodeports']], [['tcp . 30080', 'goto reject-endpointless']])
  const plan = compileServices([svc({}, [])], node)
  t.equal(plan.stats.noEndpoints, 1)
})

t.test('traffic policies Local: only this node endpoints; external Local keeps the client address', async (t) => {
  const eps = [ep('10.244.1.2'), ep('10.244.2.3', 'n2')]
  const ext = v4(svc({ externalTrafficLocal: true }, eps, 30080))
  const external = chain(ext, 'external-')![1]
  t.notOk(
    external.some((r) => r.includes('mark-for-masquerade')),
    'no masquerade',
  )
  t.same(external, ['meta l4proto tcp dnat to 10.244.1.2:8080'], 'one local endpoint')
  t.match(chain(ext, 'service-')![1].slice(1), [/numgen random mod 2 map \{ 0 : 10\.244\.1\.2 \. 8080, 1 : 10\.244\.2\.3 \. 8080 \}$/], 'cluster IP traffic still goes to every endpoint')
  const internal = v4(svc({ internalTrafficLocal: true }, [ep('10.244.2.3', 'n2')]))
  t.same([...internal.elements['no-endpoint-services'].keys()], ['10.96.0.10 . tcp . 80'], 'internal Local without a local endpoint: rejected')
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
})
