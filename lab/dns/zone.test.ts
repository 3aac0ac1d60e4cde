// The cluster DNS's records, as Kubernetes' DNS specification defines them, without a server.
import type { IPod, IService } from 'kubernetes-models/v1'
import t from 'tap'
import { answer, buildZone, podResolvConf } from './zone.js'

const svc = (ns: string, name: string, spec: IService['spec']): IService => ({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: ns, name }, spec })
const pod = (ns: string, name: string, labels: Record<string, string>, ips: string[], extra: Partial<IPod['status']> = {}): IPod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { namespace: ns, name, labels },
  spec: { containers: [{ name: 'c' }] },
  status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })), ...extra },
})

const zone = buildZone(
  [
    svc('web', 'front', { clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20', 'fd00:10:96::14'], ports: [{ port: 80 }] }),
    svc('web', 'v4only', { clusterIP: '10.96.0.21', ports: [{ port: 80 }] }),
    svc('web', 'db', { clusterIP: 'None', selector: { app: 'db' } }),
    svc('web', 'empty', { clusterIP: 'None', selector: { app: 'nothing' } }),
    svc('web', 'away', { type: 'ExternalName', externalName: 'example.org.' }),
    svc('web', 'alias', { type: 'ExternalName', externalName: 'front.web.svc.cluster.local' }),
  ],
  [
    pod('web', 'db-0', { app: 'db' }, ['10.244.1.5', 'fd00:10:244:1::5']),
    pod('web', 'db-1', { app: 'db' }, ['10.244.2.7']),
    pod('web', 'db-2', { app: 'db' }, ['10.244.2.8'], { conditions: [{ type: 'Ready', status: 'False' }] }),
    pod('web', 'db-3', { app: 'db' }, ['10.244.2.9'], { phase: 'Pending' }),
    pod('other', 'db-9', { app: 'db' }, ['10.244.3.9']),
  ],
)

t.test('a ClusterIP Service: its cluster IP per family', async (t) => {
  t.same(answer(zone, 'front.web.svc.cluster.local', 'A'), { rcode: 'NOERROR', records: [{ name: 'front.web.svc.cluster.local', type: 'A', data: '10.96.0.20' }] })
  t.same(
    answer(zone, 'FRONT.web.svc.cluster.local.', 'AAAA'),
    { rcode: 'NOERROR', records: [{ name: 'front.web.svc.cluster.local', type: 'AAAA', data: 'fd00:10:96::14' }] },
    'case-insensitive, absolute',
  )
  t.same(answer(zone, 'v4only.web.svc.cluster.local', 'AAAA'), { rcode: 'NOERROR', records: [] }, 'no AAAA for a single-stack Service: NODATA, not NXDOMAIN')
})

t.test("a headless Service: its ready pods' addresses, and each pod by name", async (t) => {
  const a = answer(zone, 'db.web.svc.cluster.local', 'A')
  t.same(a.rcode === 'NOERROR' && a.records.map((r) => r.data), ['10.244.1.5', '10.244.2.7'], 'not the unready, pending or other-namespace pods')
  const six = answer(zone, 'db.web.svc.cluster.local', 'AAAA')
  t.same(six.rcode === 'NOERROR' && six.records.map((r) => r.data), ['fd00:10:244:1::5'])
  const one = answer(zone, 'db-1.db.web.svc.cluster.local', 'A')
  t.same(one.rcode === 'NOERROR' && one.records.map((r) => r.data), ['10.244.2.7'])
  t.same(answer(zone, 'empty.web.svc.cluster.local', 'A'), { rcode: 'NOERROR', records: [] }, 'no ready pod: the name exists, without addresses')
})

t.test('an ExternalName Service: a CNAME, followed inside the zone', async (t) => {
  t.same(answer(zone, 'away.web.svc.cluster.local', 'A'), { rcode: 'NOERROR', records: [{ name: 'away.web.svc.cluster.local', type: 'CNAME', data: 'example.org' }] })
  t.same(answer(zone, 'alias.web.svc.cluster.local', 'A'), {
    rcode: 'NOERROR',
    records: [
      { name: 'alias.web.svc.cluster.local', type: 'CNAME', data: 'front.web.svc.cluster.local' },
      { name: 'front.web.svc.cluster.local', type: 'A', data: '10.96.0.20' },
    ],
  })
})

t.test('names that do not exist, and names of no cluster', async (t) => {
  t.same(answer(zone, 'nope.web.svc.cluster.local', 'A'), { rcode: 'NXDOMAIN' })
  t.same(answer(zone, 'front.web.svc.cluster.local.web.svc.cluster.local', 'A'), { rcode: 'NXDOMAIN' }, 'a search-path expansion of a full name')
  t.same(answer(zone, 'web.svc.cluster.local', 'A'), { rcode: 'NOERROR', records: [] }, 'a namespace is an empty non-terminal')
  t.same(answer(zone, 'example.org', 'A'), { rcode: 'REFUSED' }, 'the lab forwards nowhere')
})

t.test("a pod's resolv.conf: kubelet's search path and ndots", async (t) => {
  t.equal(podResolvConf('web', ['10.96.0.10']).split('\n').slice(1).join('\n'), 'nameserver 10.96.0.10\nsearch web.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n')
})
