// The lab's LoadBalancer allocation, without a lab.
import type { IService } from 'kubernetes-models/v1'
import t from 'tap'
import { loadBalancerChanges, poolAddresses } from './loadBalancer.js'

const svc = (name: string, type: 'ClusterIP' | 'NodePort' | 'LoadBalancer', ingress: string[] = [], clusterIPs = ['10.96.0.50']): IService => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { namespace: 'default', name },
  spec: { type, clusterIP: clusterIPs[0], clusterIPs, ports: [{ port: 80 }] },
  status: { loadBalancer: ingress.length ? { ingress: ingress.map((ip) => ({ ip })) } : {} },
})

t.test('the pool: the top of the node network, no node address', async (t) => {
  t.same(poolAddresses(4).slice(0, 2), ['172.30.0.240', '172.30.0.241'])
  t.equal(poolAddresses(4).length, 15)
  t.equal(poolAddresses(6)[0], 'fd00:172:30::240')
})

t.test('each LoadBalancer gets a free address per family and keeps it', async (t) => {
  t.same(loadBalancerChanges([svc('a', 'LoadBalancer', ['172.30.0.240']), svc('b', 'LoadBalancer'), svc('c', 'ClusterIP')], [4]), [{ namespace: 'default', name: 'b', ingress: ['172.30.0.241'] }])
  t.same(
    loadBalancerChanges([svc('a', 'LoadBalancer'), svc('b', 'LoadBalancer', ['172.30.0.240'])], [4]),
    [{ namespace: 'default', name: 'a', ingress: ['172.30.0.241'] }],
    'an address held is never taken',
  )
  t.same(
    loadBalancerChanges([svc('d', 'LoadBalancer', [], ['10.96.0.9', 'fd00:10:96::9'])], [4, 6]),
    [{ namespace: 'default', name: 'd', ingress: ['172.30.0.240', 'fd00:172:30::240'] }],
    'dual-stack',
  )
  t.same(loadBalancerChanges([svc('a', 'LoadBalancer', ['172.30.0.240'])], [4]), [], 'nothing to change')
})

t.test('a Service that is no LoadBalancer any more gives its address back; an exhausted pool leaves it pending', async (t) => {
  t.same(loadBalancerChanges([svc('a', 'NodePort', ['172.30.0.240'])], [4]), [{ namespace: 'default', name: 'a', ingress: [] }])
  const many = Array.from({ length: 16 }, (_, i) => svc(`s${String(i).padStart(2, '0')}`, 'LoadBalancer'))
  const changes = loadBalancerChanges(many, [4])
  t.equal(changes.length, 15, 'fifteen addresses')
  t.notOk(
    changes.some((c) => c.name === 's15'),
    'the sixteenth waits',
  )
})
