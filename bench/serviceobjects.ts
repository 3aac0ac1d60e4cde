// Service objects' cost on flatnet's own API server: `node bench/run.mjs serviceobjects [N …]`
// (default 1000 and 10000).
//   - file store: N Services applied in one write (applyMany, allocation included) against N Pods
//     applied the same way in the same run (the reference: the same store work without
//     allocation), then one more Service applied alone into the N (the cost a user's
//     `flatnetctl apply` pays in a big cluster);
//   - etcd store (a loopback etcd of its own): min(N, 1000) Services applied one by one, against
//     as many Pods (the reference);
//   - serviceModels (pure): N Services × 10 endpoints each, from Pods by selector.
// Ratios are against the reference of the same run; the machine may be shared, so absolute
// figures are indicative.
import { join } from 'node:path'
import type { IPod, IService } from 'kubernetes-models/v1'
import { testDir } from '../e2e/helpers/prefix.js'
import { startEtcd } from '../daemon/datastore/testing/etcdTestServer.js'
import { openFileObjectStore } from '../daemon/objects/fileStore.js'
import { openEtcdObjectStore } from '../daemon/objects/etcdStore.js'
import { serviceModels } from '../daemon/services/endpoints.js'
import type { ClusterObject } from '../daemon/objects/index.js'
import { benchCleanup, progress } from './measure.js'

const sizes = process.argv.slice(2).map(Number)
if (sizes.length === 0) sizes.push(1000, 10000)
const { teardown, cleanUp } = benchCleanup()

const service = (i: number, selector = true): IService => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: `svc${i}`, namespace: 'default' },
  spec: { type: i % 4 === 0 ? 'NodePort' : 'ClusterIP', ...(selector ? { selector: { app: `app${i}` } } : {}), ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
})
const pod = (i: number, app = `app${i}`): IPod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: `pod${i}`, namespace: 'default', labels: { app } },
  spec: { containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8000 + (i % 10) }] }] },
  status: { phase: 'Running', podIP: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, podIPs: [{ ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` }] },
})
const ms = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6
const fmt = (x: number) => x.toFixed(x < 10 ? 2 : 0)

try {
  const rows: string[][] = [['measure', 'N', 'ms', 'reference ms', 'ratio']]
  const etcd = await startEtcd()
  teardown.teardown(() => etcd.stop())
  for (const n of sizes) {
    progress(`file store, ${n}`)
    const { dir } = testDir(teardown, 'svcalloc')
    const store = await openFileObjectStore({ path: join(dir, 'objects.json') })
    let t0 = process.hrtime.bigint()
    await store.applyMany(Array.from({ length: n }, (_, i) => pod(i)) as ClusterObject[])
    const podsMs = ms(t0)
    t0 = process.hrtime.bigint()
    await store.applyMany(Array.from({ length: n }, (_, i) => service(i)) as ClusterObject[])
    const servicesMs = ms(t0)
    rows.push(['file: apply N in one write', String(n), fmt(servicesMs), fmt(podsMs), (servicesMs / podsMs).toFixed(2)])
    t0 = process.hrtime.bigint()
    await store.apply(service(n))
    const oneMs = ms(t0)
    t0 = process.hrtime.bigint()
    await store.apply(pod(n))
    const onePodMs = ms(t0)
    rows.push(['file: one more into N', String(n), fmt(oneMs), fmt(onePodMs), (oneMs / onePodMs).toFixed(2)])
    await store.close()

    const m = Math.min(n, 1000)
    progress(`etcd store, ${m}`)
    const es = await openEtcdObjectStore({ endpoints: [etcd.endpoint], prefix: `/bench-${n}/` })
    t0 = process.hrtime.bigint()
    for (let i = 0; i < m; i++) await es.apply(pod(i))
    const etcdPods = ms(t0)
    t0 = process.hrtime.bigint()
    for (let i = 0; i < m; i++) await es.apply(service(i))
    const etcdServices = ms(t0)
    rows.push(['etcd: apply one by one', String(m), fmt(etcdServices), fmt(etcdPods), (etcdServices / etcdPods).toFixed(2)])
    await es.close()

    progress(`serviceModels, ${n}`)
    const pods = Array.from({ length: n * 10 }, (_, i) => pod(i, `app${i % n}`))
    const services = Array.from({ length: n }, (_, i) => ({ ...service(i), spec: { ...service(i).spec, clusterIP: `10.96.${i >> 8}.${i & 255}`, clusterIPs: [`10.96.${i >> 8}.${i & 255}`] } }))
    const times: number[] = []
    let endpoints = 0
    for (let k = 0; k < 3; k++) {
      t0 = process.hrtime.bigint()
      const models = serviceModels({ services, pods, source: 'pods' })
      times.push(ms(t0))
      endpoints = models.reduce((a, s) => a + s.ports[0]!.endpoints.length, 0)
    }
    times.sort((a, b) => a - b)
    rows.push([`serviceModels (${endpoints} endpoints), median of 3`, String(n), fmt(times[1]!), '', ''])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  console.log(rows.map((r) => r.map((c, i) => c.padEnd(widths[i]! + 2)).join('')).join('\n'))
} finally {
  await cleanUp()
}
