// The Services section of `lab check`, judged without a lab: which Services it goes through, and
// what it concludes from the connections and lookups it made.
import type { IPod, IService } from 'kubernetes-models/v1'
import t from 'tap'
import { checkedServices, evaluateServices, type CheckedService, type ServiceProbeRecord } from './serviceCheck.js'
import { renderServices } from './report.js'

const pod = (name: string, ip: string, labels: Record<string, string>): IPod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { namespace: 'default', name, labels },
  spec: { nodeName: 'node1', containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 80 }] }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
})
const svc = (name: string, spec: IService['spec']): IService => ({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name }, spec })

const demo: CheckedService = { ref: 'default/demo', type: 'ClusterIP', clusterIPs: ['10.96.0.20'], port: 80, endpoints: ['pod1a', 'pod2a'] }
const base = { family: 4 as const, service: 'default/demo', target: '10.96.0.20:80' }
const conn = (requirement: ServiceProbeRecord['requirement'], from: string, answeredBy: string): ServiceProbeRecord => ({ ...base, requirement, from, ok: true, answeredBy })

t.test('the Services checked: proxied, with a ready endpoint on a TCP port', async (t) => {
  const got = checkedServices(
    [
      svc('demo', { type: 'NodePort', clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20'], selector: { app: 'demo' }, ports: [{ port: 80, targetPort: 'http', protocol: 'TCP', nodePort: 30080 }] }),
      svc('empty', { clusterIP: '10.96.0.21', clusterIPs: ['10.96.0.21'], selector: { app: 'none' }, ports: [{ port: 80, targetPort: 80, protocol: 'TCP' }] }),
      svc('headless', { clusterIP: 'None', selector: { app: 'demo' }, ports: [{ port: 80, protocol: 'TCP' }] }),
    ],
    [pod('pod2a', '10.244.2.2', { app: 'demo' }), pod('pod1a', '10.244.1.2', { app: 'demo' })],
  )
  t.same(
    got,
    [{ ref: 'default/demo', type: 'NodePort', clusterIPs: ['10.96.0.20'], port: 80, nodePort: 30080, endpoints: ['pod1a', 'pod2a'] }],
    'pods of the default namespace named as the lab names them',
  )
})

t.test('a healthy lab: every row holds', async (t) => {
  const rows = evaluateServices({
    families: [4],
    services: [demo],
    probes: [
      conn('svc-pod-clusterip', 'pod1a', 'pod1a'),
      conn('svc-pod-clusterip', 'pod1a', 'pod2a'),
      conn('svc-pod-clusterip', 'pod2a', 'pod2a'),
      conn('svc-node-clusterip', 'node1', 'pod1a'),
      conn('svc-hairpin', 'pod1a', 'pod1a'),
      { ...base, requirement: 'svc-dns', from: 'pod1a', target: 'demo.default', ok: true, resolved: ['10.96.0.20'] },
      { ...base, requirement: 'svc-no-endpoints', from: 'pod1a', ok: false, error: 'ECONNREFUSED', ms: 3 },
    ],
  })
  t.same(
    rows.map((r) => [r.id, r.ok, r.passed, r.total]),
    [
      ['svc-pod-clusterip', true, 3, 3], // two clients and the spread over both endpoints
      ['svc-node-clusterip', true, 1, 1],
      ['svc-outside-nodeport', true, 0, 0],
      ['svc-hairpin', true, 1, 1],
      ['svc-dns', true, 1, 1],
      ['svc-no-endpoints', true, 1, 1],
    ],
  )
  t.match(renderServices({ checked: [demo], requirements: rows, probes: [] }).join('\n'), /–\s+outside → every node's NodePort\s+n\/a \(needs a NodePort Service\)/)
})

t.test('a Service with ClientIP affinity: no spread expected', async (t) => {
  const rows = evaluateServices({ families: [4], services: [{ ...demo, affinity: true }], probes: [conn('svc-pod-clusterip', 'pod1a', 'pod1a'), conn('svc-pod-clusterip', 'pod1a', 'pod1a')] })
  t.same(
    rows.filter((r) => r.id === 'svc-pod-clusterip').map((r) => [r.ok, r.passed, r.total]),
    [[true, 1, 1]],
    'every connection answered by an endpoint; one endpoint only is right',
  )
})

t.test('what fails, and why it says so', async (t) => {
  const rows = evaluateServices({
    families: [4],
    services: [demo],
    probes: [
      conn('svc-pod-clusterip', 'pod1a', 'pod1a'),
      conn('svc-pod-clusterip', 'pod1a', 'pod1a'),
      conn('svc-node-clusterip', 'node1', 'pod9z'),
      conn('svc-hairpin', 'pod2a', 'pod1a'),
      { ...base, requirement: 'svc-dns', from: 'pod1a', target: 'demo.default', ok: true, resolved: ['10.96.0.99'] },
      { ...base, requirement: 'svc-no-endpoints', from: 'pod1a', ok: false, error: 'no connection within 1000 ms', ms: 1001 },
    ],
  })
  const failures = Object.fromEntries(rows.map((r) => [r.id, r.failures.map((f) => f.detail)]))
  t.same(failures['svc-pod-clusterip'], ['no connection reached pod2a of 2 endpoints'], 'the load never reached one endpoint')
  t.match(failures['svc-node-clusterip'], [/answered by pod9z/], 'an answer from a pod that is no endpoint')
  t.match(failures['svc-hairpin'], [/never answered by itself/])
  t.match(failures['svc-dns'], [/resolved to 10\.96\.0\.99, the Service has 10\.96\.0\.20/])
  t.match(failures['svc-no-endpoints'], [/want ECONNREFUSED within 1000 ms/], 'a timeout is a drop, not a refusal')
})
