// Services in the file and etcd datastores, as the API server keeps them: the seeds' manifests
// applied unchanged, defaults, cluster IPs and node ports allocated and released, refusals named,
// and concurrent `flatnetctl apply` processes never sharing an address or a port. Judged on what
// the store holds (and, on etcd, on its allocation keys), through the built flatnetctl.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { Etcd3 } from 'etcd3'
import t, { type Test } from 'tap'
import type { IService } from 'kubernetes-models/v1'
import { testDir } from '../../e2e/helpers/prefix.js'
import { flatnetBinary } from '../../lab/binaries.js'
import { startEtcd } from '../datastore/testing/etcdTestServer.js'
import type { DatastoreConfig } from '../datastore/types.js'
import { openObjectStore } from './index.js'
import { readManifests } from './manifests.js'
import { isWritable, type WritableObjectStore } from './store.js'
import { errorOf } from './testing/contractSuite.js'

const flatnetctl = flatnetBinary('flatnetctl')
const etcd = await startEtcd()
t.teardown(() => etcd.stop())
const run = randomBytes(4).toString('hex')
let stores = 0

type Backend = { name: 'file' | 'etcd'; fresh: (t: Test) => DatastoreConfig; cliFlags: (cfg: DatastoreConfig) => string[] }
const backends: Backend[] = [
  {
    name: 'file',
    fresh: (t) => ({ kind: 'file', path: join(testDir(t, 'svcobj').dir, 'nodes.json') }),
    cliFlags: (cfg) => ['--datastore', 'file', '--datastore-file', (cfg as { path: string }).path],
  },
  {
    name: 'etcd',
    fresh: () => ({ kind: 'etcd', endpoints: [etcd.endpoint], prefix: `/flatnet-test-${run}/svc-${++stores}/`, timeoutMs: 5000 }),
    // flatnetctl writes under the default prefix: the CLI test uses this etcd's root alone.
    cliFlags: () => ['--datastore', 'etcd', '--etcd-endpoints', etcd.endpoint],
  },
]

async function open(t: Test, cfg: DatastoreConfig, serviceCIDRs?: string[]): Promise<WritableObjectStore> {
  const store = await openObjectStore(cfg, serviceCIDRs ? { serviceCIDRs } : {})
  t.teardown(() => store.close())
  if (!isWritable(store)) throw new Error('not writable')
  return store
}

const doc = (text: string) => readManifests(text, 'test.yaml').map((m) => m.object)
async function applyText(store: WritableObjectStore, text: string) {
  const out = []
  for (const o of doc(text)) out.push(await store.apply(o))
  return out
}
const svc = async (store: WritableObjectStore, name: string, namespace = 'default') => (await store.get({ kind: 'Service', namespace, name })) as IService | undefined
const ipValue = (ip: string) => ip.split('.').reduce((a, b) => a * 256 + Number(b), 0)

// The seeds' examples, verbatim.
const SEED_MY_SERVICE = `apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
`
const SEED_NGINX = `apiVersion: v1
kind: Pod
metadata:
  name: nginx
  labels:
    app.kubernetes.io/name: proxy
spec:
  containers:
  - name: nginx
    image: nginx:stable
    ports:
      - containerPort: 80
        name: http-web-svc
---
apiVersion: v1
kind: Service
metadata:
  name: nginx-service
spec:
  selector:
    app.kubernetes.io/name: proxy
  ports:
  - name: name-of-service-port
    protocol: TCP
    port: 80
    targetPort: http-web-svc
`
const SEED_MULTI = `apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: 9376
    - name: https
      protocol: TCP
      port: 443
      targetPort: 9377
`
const SEED_NODEPORT = `apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  type: NodePort
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - port: 80
      targetPort: 80
      nodePort: 30007
`
const service = (name: string, extra = '', ports = '  ports: [{port: 80}]\n') => `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}}\nspec:\n${ports}${extra}`

for (const backend of backends) {
  t.test(`${backend.name}: the seeds' Services apply unchanged, defaulted and allocated; re-applies change them as the API server does`, async (t) => {
    const store = await open(t, backend.fresh(t))
    const [created] = await applyText(store, SEED_MY_SERVICE)
    t.equal(created!.action, 'created')
    const first = (await svc(store, 'my-service'))!
    const ip = first.spec!.clusterIP!
    t.match(ip, /^10\.96\.\d+\.\d+$/)
    t.ok(ipValue(ip) >= ipValue('10.96.1.0') && ipValue(ip) < ipValue('10.96.255.255'), `${ip}: above the static band, never network, broadcast or .1`)
    t.same(first.spec, {
      selector: { 'app.kubernetes.io/name': 'MyApp' },
      ports: [{ protocol: 'TCP', port: 80, targetPort: 9376 }],
      type: 'ClusterIP',
      sessionAffinity: 'None',
      internalTrafficPolicy: 'Cluster',
      clusterIP: ip,
      clusterIPs: [ip],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
    })
    t.equal((await applyText(store, SEED_MY_SERVICE))[0]!.action, 'unchanged', 'a re-apply without clusterIP keeps the allocated one')

    const nginx = await applyText(store, SEED_NGINX)
    t.same(
      nginx.map((r) => r.action),
      ['created', 'created'],
    )
    const nginxSvc = (await svc(store, 'nginx-service'))!
    t.same(nginxSvc.spec!.ports, [{ name: 'name-of-service-port', protocol: 'TCP', port: 80, targetPort: 'http-web-svc' }])
    t.not(nginxSvc.spec!.clusterIP, ip, 'another address')

    t.equal((await applyText(store, SEED_MULTI))[0]!.action, 'configured')
    const multi = (await svc(store, 'my-service'))!
    t.equal(multi.spec!.clusterIP, ip, 'the multi-port version keeps the address')
    t.same(
      multi.spec!.ports!.map((p) => [p.name, p.port, p.targetPort]),
      [
        ['http', 80, 9376],
        ['https', 443, 9377],
      ],
    )

    t.equal((await applyText(store, SEED_NODEPORT))[0]!.action, 'configured')
    const np = (await svc(store, 'my-service'))!
    t.equal(np.spec!.clusterIP, ip, 'ClusterIP -> NodePort keeps the address')
    t.same(np.spec!.ports, [{ protocol: 'TCP', port: 80, targetPort: 80, nodePort: 30007 }])
    t.equal(np.spec!.externalTrafficPolicy, 'Cluster')
    const taken = await errorOf(store.apply(doc(SEED_NODEPORT.replace('name: my-service', 'name: other'))[0]!))
    t.same(taken, { kind: 'invalid', message: 'Service "other" is invalid: spec.ports[0].nodePort: Invalid value: 30007: provided port is already allocated' })

    // NodePort -> ClusterIP releases the node port: another Service can have it now.
    await applyText(store, SEED_MY_SERVICE)
    const back = (await svc(store, 'my-service'))!
    t.equal(back.spec!.ports![0]!.nodePort, undefined)
    t.equal(back.spec!.externalTrafficPolicy, undefined)
    await applyText(store, SEED_NODEPORT.replace('name: my-service', 'name: other'))
    t.equal((await svc(store, 'other'))!.spec!.ports![0]!.nodePort, 30007)
  })

  t.test(`${backend.name}: requested addresses and ports, refusals naming them, release on delete and type change`, async (t) => {
    const cfg = backend.fresh(t)
    const store = await open(t, cfg)
    await applyText(store, service('dns', '  clusterIP: 10.96.0.10\n'))
    t.same((await svc(store, 'dns'))!.spec!.clusterIPs, ['10.96.0.10'], 'the cluster DNS address is allocatable on request')
    t.same(await errorOf(store.apply(doc(service('dns2', '  clusterIP: 10.96.0.10\n'))[0]!)), {
      kind: 'invalid',
      message: 'Service "dns2" is invalid: spec.clusterIPs: Invalid value: ["10.96.0.10"]: failed to allocate IP 10.96.0.10: provided IP is already allocated',
    })
    t.same(await errorOf(store.apply(doc(service('far', '  clusterIP: 10.0.0.5\n'))[0]!)), {
      kind: 'invalid',
      message:
        'Service "far" is invalid: spec.clusterIPs: Invalid value: ["10.0.0.5"]: failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/16',
    })
    t.same(await errorOf(store.apply(doc(service('dns', '  clusterIP: 10.96.0.11\n'))[0]!)), {
      kind: 'invalid',
      message: 'Service "dns" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.0.11": may not change once set (was "10.96.0.10")',
    })
    t.same(await errorOf(store.apply(doc(service('np', '  type: NodePort\n', '  ports: [{port: 80, nodePort: 40000}]\n'))[0]!)), {
      kind: 'invalid',
      message: 'Service "np" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767',
    })
    t.equal(await svc(store, 'np'), undefined, 'nothing stored for a refused apply')

    // Two ports, one allocated each; the same number for TCP and UDP shares one node port.
    await applyText(store, service('np', '  type: NodePort\n', '  ports: [{name: a, port: 53, protocol: UDP}, {name: b, port: 53, protocol: TCP}, {name: c, port: 80}]\n'))
    const ports = (await svc(store, 'np'))!.spec!.ports!.map((p) => p.nodePort!)
    t.ok(ports.every((n) => n >= 30000 && n <= 32767))
    t.equal(ports[0], ports[1])
    t.not(ports[0], ports[2])

    // Delete releases the address and the ports: asking for them again succeeds.
    t.ok(await store.delete({ kind: 'Service', namespace: 'default', name: 'dns' }))
    t.ok(await store.delete({ kind: 'Service', namespace: 'default', name: 'np' }))
    await applyText(store, service('dns2', '  clusterIP: 10.96.0.10\n'))
    await applyText(store, service('np2', '  type: NodePort\n', `  ports: [{port: 80, nodePort: ${ports[2]}}]\n`))
    t.equal((await svc(store, 'np2'))!.spec!.ports![0]!.nodePort, ports[2])

    // ClusterIP -> ExternalName releases the address; back to ClusterIP allocates a new one.
    await applyText(store, service('dns2', '  type: ExternalName\n  externalName: my.database.example.com\n', ''))
    const ext = (await svc(store, 'dns2'))!
    t.equal(ext.spec!.clusterIP, undefined)
    t.equal(ext.spec!.clusterIPs, undefined)
    await applyText(store, service('dns', '  clusterIP: 10.96.0.10\n'))
    t.same((await svc(store, 'dns'))!.spec!.clusterIPs, ['10.96.0.10'])
    await applyText(store, service('dns2'))
    t.match((await svc(store, 'dns2'))!.spec!.clusterIP, /^10\.96\./)

    // Headless keeps None and holds nothing; a headless NodePort is refused at validation.
    await applyText(store, service('hl', '  clusterIP: None\n'))
    t.same((await svc(store, 'hl'))!.spec!.clusterIPs, ['None'])
    t.equal((await applyText(store, service('hl')))[0]!.action, 'unchanged', 'a re-apply without clusterIP stays headless')

    if (cfg.kind === 'etcd') {
      const client = new Etcd3({ hosts: cfg.endpoints })
      t.teardown(() => client.close())
      const keys = await client.getAll().prefix(`${cfg.prefix}serviceallocations/`).strings()
      const np2 = (await svc(store, 'np2'))!
      const dns2 = (await svc(store, 'dns2'))!
      t.same(
        Object.fromEntries(Object.entries(keys).map(([k, v]) => [k.slice(cfg.prefix!.length), v])),
        {
          'serviceallocations/clusterips/10.96.0.10': 'default/dns',
          [`serviceallocations/clusterips/${dns2.spec!.clusterIP}`]: 'default/dns2',
          [`serviceallocations/clusterips/${np2.spec!.clusterIP}`]: 'default/np2',
          [`serviceallocations/nodeports/${ports[2]}`]: 'default/np2',
        },
        'one key per allocation, nothing left of released ones',
      )
      // Deleting a Namespace releases what its Services held.
      await store.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'gone' } })
      await store.apply({ ...doc(service('in-gone', '  type: NodePort\n'))[0]!, metadata: { name: 'in-gone', namespace: 'gone' } })
      await store.delete({ kind: 'Namespace', namespace: '', name: 'gone' })
      t.equal(Object.keys(await client.getAll().prefix(`${cfg.prefix}serviceallocations/`).strings()).length, 4)
    }
  })

  t.test(`${backend.name}: dual-stack service ranges: families by policy, one address per family`, async (t) => {
    const store = await open(t, backend.fresh(t), ['10.96.0.0/16', 'fd00:10:96::/112'])
    await applyText(store, service('single'))
    t.same((await svc(store, 'single'))!.spec!.ipFamilies, ['IPv4'], 'SingleStack of the primary family by default')
    await applyText(store, service('dual', '  ipFamilyPolicy: PreferDualStack\n'))
    const dual = (await svc(store, 'dual'))!.spec!
    t.same(dual.ipFamilies, ['IPv4', 'IPv6'])
    t.match(dual.clusterIPs, [/^10\.96\./, /^fd00:10:96::[0-9a-f]+$/])
    await applyText(store, service('six', '  ipFamilies: [IPv6]\n'))
    t.match((await svc(store, 'six'))!.spec!.clusterIPs, [/^fd00:10:96::/])
    const v4only = await open(t, backend.fresh(t))
    t.same(await errorOf(v4only.apply(doc(service('req', '  ipFamilyPolicy: RequireDualStack\n'))[0]!)), {
      kind: 'invalid',
      message: 'Service "req" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services (service ranges: 10.96.0.0/16)',
    })
    await applyText(v4only, service('pref', '  ipFamilyPolicy: PreferDualStack\n'))
    t.same((await svc(v4only, 'pref'))!.spec!.ipFamilies, ['IPv4'], 'PreferDualStack on a single-stack cluster gets one family')
  })

  t.test(`${backend.name}: concurrent flatnetctl apply processes never share an address or a node port`, async (t) => {
    const cfg = backend.fresh(t)
    const flags = backend.cliFlags(cfg)
    if (cfg.kind === 'etcd') {
      const client = new Etcd3({ hosts: cfg.endpoints })
      t.teardown(() => client.close())
      await client.delete().prefix('/flatnet/')
      t.teardown(() => client.delete().prefix('/flatnet/'))
    }
    const writers = 6
    const perWriter = 3
    const results = await Promise.all(
      Array.from({ length: writers }, (_, w) => {
        const text = Array.from({ length: perWriter }, (_, i) => service(`w${w}-s${i}`, '  type: NodePort\n')).join('---\n')
        return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, [flatnetctl, 'apply', '-f', '-', ...flags], { stdio: ['pipe', 'pipe', 'pipe'] })
          let stdout = ''
          let stderr = ''
          child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
          child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
          child.on('close', (code) => resolve({ code, stdout, stderr }))
          child.stdin.end(text)
        })
      }),
    )
    t.same(
      results.map((r) => [r.code, r.stderr]),
      Array.from({ length: writers }, () => [0, '']),
    )
    const store = await open(t, cfg.kind === 'etcd' ? { ...cfg, prefix: '/flatnet/' } : cfg)
    const all = await store.list('Service')
    t.equal(all.length, writers * perWriter)
    const ips = all.map((s) => s.spec!.clusterIP!)
    const nodePorts = all.map((s) => s.spec!.ports![0]!.nodePort!)
    t.equal(new Set(ips).size, ips.length, 'distinct cluster IPs')
    t.equal(new Set(nodePorts).size, nodePorts.length, 'distinct node ports')
  })
}

t.test('validation refuses what the API server refuses, naming document, object, field and value', async (t) => {
  const refusal = (text: string) => {
    try {
      readManifests(text, 'svc.yaml')
      return 'accepted'
    } catch (err) {
      return (err as Error).message
    }
  }
  t.equal(refusal(service('a', '', '')), 'svc.yaml: document 1 (Service default/a): spec.ports: Required value')
  t.equal(refusal(service('a', '', '  ports: [{port: 80}, {port: 81}]\n')), 'svc.yaml: document 1 (Service default/a): spec.ports[0].name: Required value; spec.ports[1].name: Required value')
  t.equal(refusal(service('a', '', '  ports: [{name: x, port: 80}, {name: x, port: 81}]\n')), 'svc.yaml: document 1 (Service default/a): spec.ports[1].name: Duplicate value: "x"')
  t.equal(
    refusal(service('a', '', '  ports: [{port: 80, nodePort: 30001}]\n')),
    "svc.yaml: document 1 (Service default/a): spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
  )
  t.equal(refusal(service('a', '', '  ports: [{port: 70000}]\n')), 'svc.yaml: document 1 (Service default/a): spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive')
  t.equal(
    refusal(service('a', '', '  ports: [{port: 80, targetPort: Http_Web}]\n')),
    "svc.yaml: document 1 (Service default/a): spec.ports[0].targetPort: Invalid value: \"Http_Web\": must be no more than 15 characters, contain only lowercase alphanumeric characters or '-', at least one letter, and no '--' or leading/trailing '-'",
  )
  t.equal(
    refusal(service('a', '  type: NodePort\n  clusterIP: None\n')),
    'svc.yaml: document 1 (Service default/a): spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' for NodePort services',
  )
  t.equal(refusal(service('a', '  type: ExternalName\n', '')), 'svc.yaml: document 1 (Service default/a): spec.externalName: Required value')
  t.equal(
    refusal(service('a', '  externalTrafficPolicy: Local\n')),
    "svc.yaml: document 1 (Service default/a): spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set when `type` is 'NodePort' or 'LoadBalancer'",
  )
  t.equal(
    refusal(service('a', '  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n')),
    'svc.yaml: document 1 (Service default/a): spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400',
  )
  t.equal(
    refusal(service('a', '  clusterIP: 10.96.0.300\n')),
    'svc.yaml: document 1 (Service default/a): spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
  )
  t.match(refusal(service('a', '  type: Magic\n')), /^svc\.yaml: document 1 \(Service default\/a\): spec\.type: /)
  t.equal(refusal(`${SEED_MY_SERVICE}---\n${SEED_NGINX}---\n${SEED_MULTI}---\n${SEED_NODEPORT}`), 'accepted', "the seeds' examples are valid")
  t.equal(
    refusal(
      'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: a}}\naddressType: IPv4\nendpoints: [{addresses: ["fd00::1"]}]\nports: [{port: 80}]\n',
    ),
    'svc.yaml: document 1 (EndpointSlice default/s): endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address',
  )
})
