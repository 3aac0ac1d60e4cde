// Which backends a Service has, as the upstream EndpointSlice controller and kube-proxy decide it:
// serviceModels over plain objects (pure; no kernel).
import t from 'tap'
import type { IPod, IService } from 'kubernetes-models/v1'
import type { IEndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1'
import { pod } from '../policy/testing/cluster.js'
import { ServiceModelMemo, serviceModels, type ServiceModelInput } from './endpoints.js'

function service(name: string, spec: IService['spec'], extra: { namespace?: string; labels?: Record<string, string>; status?: IService['status'] } = {}): IService {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: extra.namespace ?? 'default', name, ...(extra.labels ? { labels: extra.labels } : {}) },
    spec: { clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20'], ...spec },
    ...(extra.status ? { status: extra.status } : {}),
  }
}
const models = (input: Partial<ServiceModelInput> & Pick<ServiceModelInput, 'services'>) => serviceModels({ source: 'pods', ...input })
const addresses = (m: ReturnType<typeof models>, svc = 0, port = 0) => m[svc]!.ports[port]!.endpoints.map((e) => `${e.address}:${e.port}${e.ready ? '' : ' (not ready)'}`)

t.test('a selector picks the Running pods with its labels in its namespace, each at the numeric targetPort', async (t) => {
  const pods = [
    pod('default', 'b', ['10.244.1.12'], { app: 'MyApp' }),
    pod('default', 'a', ['10.244.2.9'], { app: 'MyApp', extra: 'x' }),
    pod('default', 'c', ['10.244.1.2'], { app: 'Other' }),
    pod('other', 'd', ['10.244.1.3'], { app: 'MyApp' }),
    pod('default', 'e', ['10.244.1.4'], { app: 'MyApp' }, [], { phase: 'Succeeded' }),
    pod('default', 'f', [], { app: 'MyApp' }),
  ]
  const m = models({ services: [service('my-service', { selector: { app: 'MyApp' }, ports: [{ protocol: 'TCP', port: 80, targetPort: 9376 }] })], pods })
  t.equal(m.length, 1)
  t.match(m[0], { namespace: 'default', name: 'my-service', type: 'ClusterIP', clusterIPs: ['10.96.0.20'], externalTrafficLocal: false, internalTrafficLocal: false })
  t.same(addresses(m), ['10.244.1.12:9376', '10.244.2.9:9376'], 'sorted by address as numbers, finished and address-less pods left out')
  t.same(
    m[0]!.ports[0]!.endpoints.map((e) => e.pod),
    ['default/b', 'default/a'],
  )
  t.equal(m[0]!.ports[0]!.name, '')
  t.equal(m[0]!.sessionAffinityTimeoutSeconds, undefined)
})

t.test('a missing targetPort is the port itself; a numeric string is a number', async (t) => {
  const pods = [pod('default', 'a', ['10.244.1.5'], { app: 'x' })]
  const m = models({
    services: [
      service('s', {
        selector: { app: 'x' },
        ports: [
          { name: 'a', port: 80 },
          { name: 'b', port: 81, targetPort: '8081' },
        ],
      }),
    ],
    pods,
  })
  t.same(addresses(m, 0, 0), ['10.244.1.5:80'])
  t.same(addresses(m, 0, 1), ['10.244.1.5:8081'])
})

t.test('a named targetPort resolves on each pod; a pod without that name (or with it for another protocol) is no endpoint of that port', async (t) => {
  const pods = [
    pod('default', 'nginx', ['10.244.1.10'], { 'app.kubernetes.io/name': 'proxy' }, [{ name: 'http-web-svc', containerPort: 80 }]),
    pod('default', 'nginx2', ['10.244.1.11'], { 'app.kubernetes.io/name': 'proxy' }, [{ name: 'http-web-svc', containerPort: 8080 }]),
    pod('default', 'nameless', ['10.244.1.12'], { 'app.kubernetes.io/name': 'proxy' }, [{ containerPort: 80 }]),
    pod('default', 'udp', ['10.244.1.13'], { 'app.kubernetes.io/name': 'proxy' }, [{ name: 'http-web-svc', containerPort: 80, protocol: 'UDP' }]),
  ]
  const svc = service('nginx-service', {
    selector: { 'app.kubernetes.io/name': 'proxy' },
    ports: [
      { name: 'name-of-service-port', protocol: 'TCP', port: 80, targetPort: 'http-web-svc' },
      { name: 'dns', protocol: 'UDP', port: 53, targetPort: 'http-web-svc' },
    ],
  })
  const m = models({ services: [svc], pods })
  t.same(addresses(m, 0, 0), ['10.244.1.10:80', '10.244.1.11:8080'])
  t.same(addresses(m, 0, 1), ['10.244.1.13:80'])
  t.same(
    m[0]!.ports.map((p) => [p.name, p.protocol, p.port]),
    [
      ['name-of-service-port', 'TCP', 80],
      ['dns', 'UDP', 53],
    ],
  )
})

t.test('readiness: terminating, not Running or Ready=False pods are not-ready endpoints; publishNotReadyAddresses makes them ready', async (t) => {
  const terminating: IPod = { ...pod('default', 't', ['10.244.1.1'], { app: 'x' }) }
  terminating.metadata!.deletionTimestamp = '2026-01-01T00:00:00Z'
  const pending = pod('default', 'p', ['10.244.1.2'], { app: 'x' })
  pending.status!.phase = 'Pending'
  const unready = pod('default', 'u', ['10.244.1.3'], { app: 'x' })
  unready.status!.conditions = [{ type: 'Ready', status: 'False' }]
  const ready = pod('default', 'r', ['10.244.1.4'], { app: 'x' })
  ready.status!.conditions = [{ type: 'Ready', status: 'True' }]
  const pods = [terminating, pending, unready, ready]
  const spec = { selector: { app: 'x' }, ports: [{ port: 80 }] }
  t.same(addresses(models({ services: [service('s', spec)], pods })), ['10.244.1.1:80 (not ready)', '10.244.1.2:80 (not ready)', '10.244.1.3:80 (not ready)', '10.244.1.4:80'])
  t.same(addresses(models({ services: [service('s', { ...spec, publishNotReadyAddresses: true })], pods })), ['10.244.1.1:80', '10.244.1.2:80', '10.244.1.3:80', '10.244.1.4:80'])
})

t.test('only pod addresses of the cluster IPs families: a single-stack IPv6 Service, a dual-stack one', async (t) => {
  const pods = [pod('default', 'a', ['10.244.1.5', 'fd00:10:244:1::5'], { app: 'x' }), pod('default', 'b', ['fd00:10:244:1::a'], { app: 'x' })]
  const spec = { selector: { app: 'x' }, ports: [{ port: 80 }] }
  const v6 = models({ services: [service('s', { ...spec, clusterIP: 'fd00:10:96::20', clusterIPs: ['fd00:10:96::20'] })], pods })
  t.same(addresses(v6), ['fd00:10:244:1::5:80', 'fd00:10:244:1::a:80'])
  const dual = models({ services: [service('s', { ...spec, clusterIPs: ['10.96.0.20', 'fd00:10:96::20'] })], pods })
  t.same(dual[0]!.clusterIPs, ['10.96.0.20', 'fd00:10:96::20'])
  t.same(addresses(dual), ['10.244.1.5:80', 'fd00:10:244:1::5:80', 'fd00:10:244:1::a:80'], 'IPv4 first, then IPv6')
})

t.test('no model: headless, ExternalName, not allocated yet, the headless label, another proxy name', async (t) => {
  const spec = { selector: { app: 'x' }, ports: [{ port: 80 }] }
  const services = [
    service('headless', { ...spec, clusterIP: 'None', clusterIPs: ['None'] }),
    service('external', { type: 'ExternalName', externalName: 'example.com', clusterIP: undefined, clusterIPs: undefined }),
    service('unallocated', { ...spec, clusterIP: undefined, clusterIPs: undefined }),
    service('label-headless', spec, { labels: { 'service.kubernetes.io/headless': '' } }),
    service('other-proxy', spec, { labels: { 'service.kubernetes.io/service-proxy-name': 'other' } }),
    service('ours', spec, { labels: { 'service.kubernetes.io/service-proxy-name': 'flatnet' } }),
    service('plain', spec),
  ]
  t.same(
    models({ services }).map((m) => m.name),
    ['plain'],
    'without a proxy name every Service that names a proxy is skipped, as kube-proxy does',
  )
  t.same(
    models({ services, proxyName: 'flatnet' }).map((m) => m.name),
    ['ours', 'plain'],
  )
})

t.test('models are sorted by namespace then name; a selectorless Service on file/etcd has no pod endpoints', async (t) => {
  const pods = [pod('default', 'a', ['10.244.1.5'], { app: 'x' })]
  const services = [service('b', { selector: { app: 'x' }, ports: [{ port: 80 }] }, { namespace: 'z' }), service('b', { ports: [{ port: 80 }] }), service('a', { selector: {}, ports: [{ port: 80 }] })]
  const m = models({ services, pods })
  t.same(
    m.map((x) => `${x.namespace}/${x.name}`),
    ['default/a', 'default/b', 'z/b'],
  )
  t.same(addresses(m, 0), [], 'an empty selector selects nothing (the API server stores it as no selector)')
  t.same(addresses(m, 1), [])
  t.same(addresses(m, 2), [], 'pods of another namespace are not endpoints')
})

t.test('type, node ports, external and load balancer IPs, affinity and traffic policies carry over', async (t) => {
  const spec = { selector: { app: 'x' }, ports: [{ port: 80, nodePort: 30007 }] }
  const [np] = models({
    services: [
      service('np', {
        ...spec,
        type: 'NodePort',
        externalIPs: ['192.0.2.10'],
        sessionAffinity: 'ClientIP',
        externalTrafficPolicy: 'Local',
        internalTrafficPolicy: 'Local',
      }),
    ],
  })
  t.match(np, { type: 'NodePort', externalIPs: ['192.0.2.10'], loadBalancerIPs: [], sessionAffinityTimeoutSeconds: 10800, externalTrafficLocal: true, internalTrafficLocal: true })
  t.equal(np!.ports[0]!.nodePort, 30007)
  const [lb] = models({
    services: [
      service(
        'lb',
        { ...spec, type: 'LoadBalancer', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } },
        { status: { loadBalancer: { ingress: [{ ip: '172.18.255.1' }, { hostname: 'lb.example' }] } } },
      ),
    ],
  })
  t.match(lb, { type: 'LoadBalancer', loadBalancerIPs: ['172.18.255.1'], sessionAffinityTimeoutSeconds: 60 })
  t.equal(lb!.ports[0]!.nodePort, 30007)
  const [cip] = models({ services: [service('cip', { ...spec, externalTrafficPolicy: 'Local' })] })
  t.equal(cip!.ports[0]!.nodePort, undefined, 'a ClusterIP Service has no node port even if one is written')
  t.equal(cip!.externalTrafficLocal, false)
})

function slice(
  name: string,
  service: string,
  addressType: 'IPv4' | 'IPv6' | 'FQDN',
  ports: Array<{ name?: string; port: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }>,
  endpoints: Array<[string, boolean | undefined, string?]>,
): IEndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'default', name, labels: { 'kubernetes.io/service-name': service } },
    addressType,
    ports,
    endpoints: endpoints.map(([ip, ready, node]) => ({
      addresses: [ip],
      ...(ready === undefined ? {} : { conditions: { ready } }),
      ...(node ? { nodeName: node } : {}),
      targetRef: { kind: 'Pod', namespace: 'default', name: `pod-${ip}` },
    })),
  }
}

t.test('on kubernetes: EndpointSlices by service-name label, ports by name and protocol, ready defaults to true, duplicates kept once', async (t) => {
  const svc = service('web', {
    selector: { app: 'web' },
    clusterIPs: ['10.96.0.20', 'fd00:10:96::20'],
    ports: [
      { name: 'http', port: 80, targetPort: 'http' },
      { name: 'dns', port: 53, protocol: 'UDP' },
    ],
  })
  const slices = [
    slice(
      'web-a',
      'web',
      'IPv4',
      [{ name: 'http', port: 8080, protocol: 'TCP' }],
      [
        ['10.244.1.2', true, 'n1'],
        ['10.244.1.1', undefined],
        ['10.244.2.1', false],
      ],
    ),
    slice(
      'web-b',
      'web',
      'IPv4',
      [
        { name: 'http', port: 8080, protocol: 'TCP' },
        { name: 'dns', port: 5353, protocol: 'UDP' },
      ],
      [
        ['10.244.1.2', true, 'n1'],
        ['10.244.3.1', true],
      ],
    ),
    slice('web-6', 'web', 'IPv6', [{ name: 'http', port: 8080, protocol: 'TCP' }], [['fd00:10:244:1::2', true]]),
    slice('web-fqdn', 'web', 'FQDN', [{ name: 'http', port: 8080, protocol: 'TCP' }], [['web.example', true]]),
    slice('other', 'other', 'IPv4', [{ name: 'http', port: 8080, protocol: 'TCP' }], [['10.244.9.9', true]]),
  ]
  const pods = [pod('default', 'ignored', ['10.244.7.7'], { app: 'web' })]
  const m = serviceModels({ services: [svc], endpointSlices: slices, pods, source: 'endpointslices' })
  t.same(addresses(m, 0, 0), ['10.244.1.1:8080', '10.244.1.2:8080', '10.244.2.1:8080 (not ready)', '10.244.3.1:8080', 'fd00:10:244:1::2:8080'], 'pods are not read on kubernetes')
  t.same(addresses(m, 0, 1), ['10.244.1.2:5353', '10.244.3.1:5353'], 'a slice without the port gives no endpoint of it')
  t.match(m[0]!.ports[0]!.endpoints[1], { address: '10.244.1.2', nodeName: 'n1', pod: 'default/pod-10.244.1.2' })
})

t.test('on file/etcd a selectorless Service takes the EndpointSlices applied for it', async (t) => {
  const svc = service('manual', { ports: [{ port: 80 }] })
  const slices = [slice('manual-1', 'manual', 'IPv4', [{ port: 9000 }], [['10.244.5.5', true]])]
  t.same(addresses(models({ services: [svc], endpointSlices: slices })), ['10.244.5.5:9000'])
  const selected = service('selected', { selector: { app: 'x' }, ports: [{ port: 80 }] })
  const selectedSlices = [slice('selected-1', 'selected', 'IPv4', [{ port: 9000 }], [['10.244.5.6', true]])]
  t.same(addresses(models({ services: [selected], endpointSlices: selectedSlices })), [], 'a Service with a selector ignores manual slices (the controller would own them)')
})

t.test('serving terminating endpoints: from slice conditions, and from a terminating pod still Ready', async (t) => {
  const svc = service('web', { selector: { app: 'web' }, ports: [{ name: 'http', port: 80 }] })
  const s = slice('web-a', 'web', 'IPv4', [{ name: 'http', port: 8080, protocol: 'TCP' }], [])
  s.endpoints = [
    { addresses: ['10.244.1.1'], conditions: { ready: false, serving: true, terminating: true } },
    { addresses: ['10.244.1.2'], conditions: { ready: false, serving: false, terminating: true } },
    { addresses: ['10.244.1.3'], conditions: { ready: false } },
  ]
  const fromSlices = serviceModels({ services: [svc], endpointSlices: [s], pods: [], source: 'endpointslices' })[0]!.ports[0]!.endpoints
  t.same(
    fromSlices.map((e) => [e.address, e.ready, e.servingTerminating ?? false]),
    [
      ['10.244.1.1', false, true],
      ['10.244.1.2', false, false],
      ['10.244.1.3', false, false],
    ],
    'serving and terminating said: the fallback; not serving, or not terminating: not',
  )
  const leaving: IPod = pod('default', 'l', ['10.244.2.1'], { app: 'web' })
  leaving.metadata!.deletionTimestamp = '2026-01-01T00:00:00Z'
  const broken: IPod = pod('default', 'b', ['10.244.2.2'], { app: 'web' })
  broken.metadata!.deletionTimestamp = '2026-01-01T00:00:00Z'
  broken.status!.conditions = [{ type: 'Ready', status: 'False' }]
  const fromPods = models({ services: [svc], pods: [leaving, broken] })[0]!.ports[0]!.endpoints
  t.same(
    fromPods.map((e) => [e.address, e.ready, e.servingTerminating ?? false]),
    [
      ['10.244.2.1', false, true],
      ['10.244.2.2', false, false],
    ],
  )
})

t.test('ServiceModelMemo: a Service whose object and inputs are the same objects keeps its model; any other is rebuilt', async (t) => {
  const memo = new ServiceModelMemo()
  const web = service('web', { selector: { app: 'web' }, ports: [{ name: 'http', port: 80 }] })
  const api = service('api', { clusterIP: '10.96.0.21', clusterIPs: ['10.96.0.21'], selector: { app: 'api' }, ports: [{ name: 'http', port: 80 }] })
  const slices = [
    slice('web-a', 'web', 'IPv4', [{ name: 'http', port: 8080, protocol: 'TCP' }], [['10.244.1.1', true]]),
    slice('api-a', 'api', 'IPv4', [{ name: 'http', port: 8080, protocol: 'TCP' }], [['10.244.1.2', true]]),
  ]
  const input = { services: [web, api], endpointSlices: slices, pods: [], source: 'endpointslices' as const }
  const [a1, w1] = memo.models(input)
  const [a2, w2] = memo.models({ ...input, endpointSlices: [...slices] })
  t.equal(w2, w1, 'same objects: the very same model')
  t.equal(a2, a1)
  const moved = slice('web-a', 'web', 'IPv4', [{ name: 'http', port: 8080, protocol: 'TCP' }], [['10.244.1.9', true]])
  const [a3, w3] = memo.models({ ...input, endpointSlices: [moved, slices[1]!] })
  t.not(w3, w1, 'its slice replaced: rebuilt')
  t.same(
    w3!.ports[0]!.endpoints.map((e) => e.address),
    ['10.244.1.9'],
  )
  t.equal(a3, a1, 'the other Service untouched')
  const [, w4] = memo.models({ ...input, services: [{ ...web, spec: { ...web.spec, ports: [{ name: 'http', port: 81 }] } }, api], endpointSlices: [moved, slices[1]!] })
  t.equal(w4!.ports[0]!.port, 81, 'its object replaced: rebuilt')
  const viaPods = new ServiceModelMemo()
  const pods = [pod('default', 'w', ['10.244.3.3'], { app: 'web' })]
  const [p1] = viaPods.models({ services: [web], pods, source: 'pods' })
  t.equal(viaPods.models({ services: [web], pods: [...pods], source: 'pods' })[0], p1, 'from pods: same pods, same model')
  t.not(viaPods.models({ services: [web], pods: [pod('default', 'w', ['10.244.3.4'], { app: 'web' })], source: 'pods' })[0], p1, 'a pod object replaced: rebuilt')
})
