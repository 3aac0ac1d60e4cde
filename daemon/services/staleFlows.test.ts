// Which UDP conntrack entries a change of Services leaves stale (staleFlows.ts), pure. The kernel
// side — a flow actually moving to another backend — is services.kernel.test.ts's.
import t from 'tap'
import type { ServiceEndpoint, ServiceModel } from './model.js'
import { staleUdpFlows } from './staleFlows.js'

const ep = (address: string, ready = true, port = 53): ServiceEndpoint => ({ address, port, ready })

function dns(endpoints: ServiceEndpoint[], extra: Partial<ServiceModel> = {}, nodePort?: number): ServiceModel {
  return {
    namespace: 'kube-system',
    name: 'dns',
    type: nodePort ? 'NodePort' : 'ClusterIP',
    clusterIPs: ['10.96.0.10'],
    externalIPs: [],
    loadBalancerIPs: [],
    externalTrafficLocal: false,
    internalTrafficLocal: false,
    ports: [
      { name: 'dns', protocol: 'UDP', port: 53, ...(nodePort ? { nodePort } : {}), endpoints },
      { name: 'dns-tcp', protocol: 'TCP', port: 53, endpoints },
    ],
    ...extra,
  }
}

t.test('an endpoint that leaves or stops being ready: its UDP flows to every address of the port', async (t) => {
  const before = dns([ep('10.244.1.2'), ep('10.244.2.3')], { externalIPs: ['192.0.2.7'] }, 30053)
  t.same(staleUdpFlows(before, dns([ep('10.244.1.2'), ep('10.244.2.3', false)], { externalIPs: ['192.0.2.7'] }, 30053)), [
    { protocol: 'udp', origDst: '10.96.0.10', origDstPort: 53, replySrc: '10.244.2.3' },
    { protocol: 'udp', origDst: '192.0.2.7', origDstPort: 53, replySrc: '10.244.2.3' },
    { protocol: 'udp', origDstPort: 30053, replySrc: '10.244.2.3' },
  ])
  t.same(staleUdpFlows(before, before), [], 'nothing changed: nothing stale')
  t.same(staleUdpFlows(undefined, before), [], 'a new Service has no flows yet')
})

t.test('a Service deleted, an address or node port changed, a target port changed', async (t) => {
  const before = dns([ep('10.244.1.2')], {}, 30053)
  t.same(staleUdpFlows(before, undefined), [
    { protocol: 'udp', origDst: '10.96.0.10', origDstPort: 53, replySrc: '10.244.1.2' },
    { protocol: 'udp', origDstPort: 30053, replySrc: '10.244.1.2' },
  ])
  t.same(staleUdpFlows(before, dns([ep('10.244.1.2')], { clusterIPs: ['10.96.0.11'] }, 30054)), [
    { protocol: 'udp', origDst: '10.96.0.10', origDstPort: 53, replySrc: '10.244.1.2' },
    { protocol: 'udp', origDstPort: 30053, replySrc: '10.244.1.2' },
  ])
  t.same(staleUdpFlows(before, dns([ep('10.244.1.2', true, 5353)], {}, 30053)).length, 2, 'same pod, another target port: its flows go to a port nobody listens on')
})

t.test('TCP and not-ready endpoints never count; families stay apart', async (t) => {
  const before = dns([ep('10.244.1.2', false), ep('fd00:10:244:1::2')], { clusterIPs: ['10.96.0.10', 'fd00:96::a'] })
  t.same(staleUdpFlows(before, dns([], { clusterIPs: ['10.96.0.10', 'fd00:96::a'] })), [{ protocol: 'udp', origDst: 'fd00:96::a', origDstPort: 53, replySrc: 'fd00:10:244:1::2' }])
})
