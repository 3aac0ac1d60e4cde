// The lab's cluster add-ons process (dist/bin/flatnetctl lab cluster-addons), in a namespace of
// its own, against a real file object store: glibc's resolver in that namespace (`getent`, with
// the resolv.conf a lab pod gets through /etc/netns) finds Services by their short name through
// the search path, over UDP and TCP; the LoadBalancer controller writes ingress addresses.
import { spawn } from 'node:child_process'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { IService } from 'kubernetes-models/v1'
import t from 'tap'
import { isWritable, openObjectStore, type WritableObjectStore } from '../../daemon/objects/index.js'
import { inNetns, testDir, testNamespaces } from '../../e2e/helpers/index.js'
import { flatnetBinary } from '../binaries.js'
import { podResolvConf } from './zone.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
async function until<T>(fn: () => Promise<T | undefined>, ms: number): Promise<T | undefined> {
  const end = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v !== undefined || Date.now() > end) return v
    await sleep(100)
  }
}

t.test('cluster add-ons', async (t) => {
  const { dir } = testDir(t, 'svcdns')
  const ns = await testNamespaces(t, 'svcdns').create('dns')
  await inNetns(ns, ['ip', 'link', 'set', 'lo', 'up'])
  const etcNetns = join('/etc/netns', ns.name)
  t.teardown(() => rm(etcNetns, { recursive: true, force: true }))
  await mkdir(etcNetns, { recursive: true })
  await writeFile(join(etcNetns, 'resolv.conf'), podResolvConf('web', ['127.0.0.1']))

  const datastore = join(dir, 'nodes.json')
  const opened = await openObjectStore({ kind: 'file', path: datastore })
  if (!isWritable(opened)) throw new Error('file store is writable')
  const store: WritableObjectStore = opened
  t.teardown(() => store.close())
  await store.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'web' } })
  const service = (name: string, spec: IService['spec']): IService => ({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'web', name }, spec })
  await store.apply(service('front', { clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20'], ports: [{ port: 80, protocol: 'TCP' }] }))
  await store.apply(service('edge', { type: 'LoadBalancer', clusterIP: '10.96.0.21', clusterIPs: ['10.96.0.21'], ports: [{ port: 80, protocol: 'TCP', nodePort: 30080 }] }))
  await store.apply(service('away', { type: 'ExternalName', externalName: 'front.web.svc.cluster.local' }))

  const child = spawn('ip', ['netns', 'exec', ns.name, flatnetBinary('flatnetctl'), 'lab', 'cluster-addons', '--datastore', datastore, '--families', '4'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  const hello = await new Promise<string>((resolve) => {
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('\n')) resolve(out)
    })
    child.once('exit', (code) => resolve(`exited ${code}: ${stderr}`))
  })
  t.match(hello, /"ready":true/, 'the add-ons say they are ready')

  const getent = async (...args: string[]) => (await inNetns(ns, ['getent', ...args])).stdout
  t.match(await until(async () => (await getent('hosts', 'front')) || undefined, 5000), /^10\.96\.0\.20\s+front\.web\.svc\.cluster\.local/, 'a short name through the search path')
  t.match(await getent('hosts', 'front.web'), /^10\.96\.0\.20\s/, '<svc>.<ns>')
  t.match(await getent('hosts', 'front.web.svc.cluster.local'), /^10\.96\.0\.20\s/, 'the full name')
  t.match(await getent('ahosts', 'away'), /10\.96\.0\.20/, 'an ExternalName: a CNAME, followed')
  t.equal((await inNetns(ns, ['getent', 'hosts', 'nothing'])).code, 2, 'an unknown name is not found')

  // TCP: the resolver's `use-vc` option sends every query over TCP.
  await writeFile(join(etcNetns, 'resolv.conf'), podResolvConf('web', ['127.0.0.1']).replace('options ndots:5', 'options ndots:5 use-vc'))
  t.match(await getent('hosts', 'front'), /^10\.96\.0\.20\s/, 'over TCP')

  const ingress = await until(async () => {
    const got = await store.get({ kind: 'Service', namespace: 'web', name: 'edge' })
    return got?.status?.loadBalancer?.ingress?.[0]?.ip
  }, 5000)
  t.equal(ingress, '172.30.0.240', 'the LoadBalancer Service got the first pool address')
  t.notOk((await store.get({ kind: 'Service', namespace: 'web', name: 'front' }))?.status?.loadBalancer?.ingress, 'a ClusterIP Service none')

  // A change of Services reaches DNS: a new Service resolves within a watch round.
  await store.apply(service('late', { clusterIP: '10.96.0.22', clusterIPs: ['10.96.0.22'], ports: [{ port: 80, protocol: 'TCP' }] }))
  t.match(await until(async () => (await getent('hosts', 'late')) || undefined, 5000), /^10\.96\.0\.22\s/, 'a new Service resolves')
  if (stderr) t.comment(stderr.trim())
})
