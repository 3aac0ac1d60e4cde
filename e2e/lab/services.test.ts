// Services in the lab, end to end through dist/bin/flatnetctl and every node's flatnetd: one lab,
// the cases of the upstream Service e2e tests (kubernetes test/e2e/network/service.go), each with
// the upstream behaviour as its assertion, and the Kubernetes docs' Service examples verbatim with
// `curl http://<node IP>:<nodePort>/` from outside the cluster.
import t from 'tap'
import type { IService } from 'kubernetes-models/v1'
import { controlSocketPath, layoutOf, podRef, PodProber, readLabState, type LabState } from '../../lab/index.js'
import { openLabObjects } from '../../lab/objectStore.js'
import { run } from '../../lab/exec.js'
import { flatnetctl, labForTest, labSkipReason, pollUntil } from '../../lab/testing/testLabs.js'

const PODS = `apiVersion: v1
kind: Namespace
metadata: {name: svc}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: svc, labels: {app: web}}
spec:
  nodeName: node1
  containers:
  - name: c
    image: any
    ports: [{name: http, containerPort: 80}, {name: udp, containerPort: 80, protocol: UDP}, {name: alt, containerPort: 81}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: svc, labels: {app: web}}
spec:
  nodeName: node2
  containers:
  - name: c
    image: any
    ports: [{name: http, containerPort: 80}, {name: udp, containerPort: 80, protocol: UDP}, {name: alt, containerPort: 81}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: svc}
spec:
  nodeName: node1
  containers: [{name: c, image: any}]
`

const WEB3 = `apiVersion: v1
kind: Pod
metadata: {name: web-3, namespace: svc, labels: {app: web}}
spec:
  nodeName: node1
  containers:
  - name: c
    image: any
    ports: [{name: http, containerPort: 80}, {name: udp, containerPort: 80, protocol: UDP}, {name: alt, containerPort: 81}]
`

// The docs' examples, verbatim (the three `my-service` documents are alternatives, applied in turn).
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
const SEED_MULTI_PORT = `apiVersion: v1
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
const SEED_NODE_PORT = `apiVersion: v1
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
// The pod behind my-service: the docs leave it out; it serves the ports the three versions target.
const MYAPP_POD = `apiVersion: v1
kind: Pod
metadata: {name: myapp, labels: {app.kubernetes.io/name: MyApp}}
spec:
  nodeName: node2
  containers: [{name: c, image: any, ports: [{containerPort: 80}, {containerPort: 9376}, {containerPort: 9377}]}]
`

const service = (name: string, spec: string) => `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: svc}
spec: ${spec}
`

t.test('Services in the lab, as the upstream Service e2e tests expect them', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'services')
  const lab = layoutOf({ name })
  const up = await flatnetctl(['lab', 'up', '--name', name, '--nodes', '2', '--pods-per-node', '0'])
  t.equal(up.code, 0, `lab up: ${up.stderr}`)
  if (up.code !== 0) return
  const apply = async (yaml: string) => {
    const r = await flatnetctl(['lab', 'apply', '--name', name, '-f', '-'], 80_000, yaml)
    t.equal(r.code, 0, `lab apply: ${r.stderr}`)
    return r
  }
  const del = async (kind: 'Service' | 'Pod', what: string, namespace = 'svc') => {
    const r = await flatnetctl(
      ['lab', 'delete', '--name', name, '-f', '-'],
      80_000,
      `apiVersion: v1\nkind: ${kind}\nmetadata: {name: ${what}, namespace: ${namespace}}\nspec: {${kind === 'Service' ? 'ports: [{port: 80}]' : 'containers: [{name: c, image: any}]'}}\n`,
    )
    t.equal(r.code, 0, `lab delete ${kind} ${what}: ${r.stderr}`)
  }
  await apply(PODS)
  let state: LabState = await readLabState(lab)
  const pod = (ref: string) => state.pods.find((p) => podRef(p) === ref)!
  const probers = new Map<string, PodProber>()
  t.teardown(() => probers.forEach((p) => p.close()))
  const prober = async (ref: string) => {
    if (!probers.has(ref)) probers.set(ref, await PodProber.open(ref, controlSocketPath(lab, pod(ref).containerId)))
    return probers.get(ref)!
  }
  const getService = async (svcName: string, namespace = 'svc'): Promise<IService | undefined> => {
    const store = await openLabObjects(state)
    try {
      return await store.get({ kind: 'Service', namespace, name: svcName })
    } finally {
      await store.close()
    }
  }
  const clusterIP = async (svcName: string, namespace = 'svc') => (await getService(svcName, namespace))?.spec?.clusterIP ?? ''
  /** Which pod answers `from`'s connection to host:port (undefined: no answer; the error then). */
  const hit = async (from: string, host: string, port: number, protocol: 'TCP' | 'UDP' = 'TCP', payload?: string) => (await prober(from)).probe({ host, port, protocol, payload })
  const answeredBy = async (from: string, host: string, port: number, protocol: 'TCP' | 'UDP' = 'TCP') => {
    const r = await hit(from, host, port, protocol)
    return r.ok ? r.reply.pod : undefined
  }
  const reaches = (from: string, host: string, port: number, protocol: 'TCP' | 'UDP' = 'TCP') => pollUntil(async () => (await answeredBy(from, host, port, protocol)) !== undefined, 10_000)
  /** Pods answering n connections. */
  const spread = async (from: string, host: string, port: number, n: number) => {
    const seen = new Set<string>()
    for (let i = 0; i < n; i++) seen.add((await answeredBy(from, host, port)) ?? 'none')
    return [...seen].sort()
  }
  const curlOutside = (url: string) => run(['ip', 'netns', 'exec', state.network.outsideNetns, 'curl', '-sS', '--max-time', '3', url])
  const nodeIPs = () => state.nodes.map((n) => n.address)

  await apply(service('basic', '{selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}'))
  const basicIP = await clusterIP('basic')

  t.test('should serve a basic endpoint from pods', async (t) => {
    t.match(basicIP, /^10\.96\.\d+\.\d+$/, 'a cluster IP from the service range')
    t.ok(await reaches('svc/client', basicIP, 80), 'the ClusterIP answers')
    t.same(await spread('svc/client', basicIP, 80, 16), ['svc/web-1', 'svc/web-2'], 'by both endpoints')
  })

  t.test('should preserve source pod IP for traffic thru service cluster IP', async (t) => {
    const r = await hit('svc/client', basicIP, 80)
    t.equal(r.ok && r.reply.peer, pod('svc/client').address, "the endpoint sees the client pod's own IP")
  })

  t.test('should resolve the Service by name through the cluster DNS', async (t) => {
    const got = await run(['ip', 'netns', 'exec', pod('svc/client').netns, 'getent', 'hosts', 'basic'])
    t.match(got.stdout, new RegExp(`^${basicIP.replace(/\./g, '\\.')}\\s+basic\\.svc\\.svc\\.cluster\\.local`), 'the short name, through the search path')
  })

  t.test('should serve multiport endpoints from pods', async (t) => {
    await apply(service('multi', '{selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}, {name: alt, port: 8081, targetPort: alt}]}'))
    const ip = await clusterIP('multi')
    t.ok(await reaches('svc/client', ip, 8081), 'the second port answers')
    const r80 = await hit('svc/client', ip, 80)
    const r81 = await hit('svc/client', ip, 8081)
    t.equal(r80.ok && r80.reply.port, 80, 'port 80 → the pods’ http (80)')
    t.equal(r81.ok && r81.reply.port, 81, 'port 8081 → the pods’ alt (81)')
  })

  t.test('should serve endpoints on same port and different protocols', async (t) => {
    await apply(service('protos', '{selector: {app: web}, ports: [{name: tcp, port: 53, targetPort: 80, protocol: TCP}, {name: udp, port: 53, targetPort: 80, protocol: UDP}]}'))
    const ip = await clusterIP('protos')
    t.ok(await reaches('svc/client', ip, 53, 'UDP'), 'UDP answers')
    const tcp = await hit('svc/client', ip, 53, 'TCP')
    const udp = await hit('svc/client', ip, 53, 'UDP')
    t.equal(tcp.ok && tcp.reply.protocol, 'TCP')
    t.equal(udp.ok && udp.reply.protocol, 'UDP')
  })

  t.test('should be able to handle large requests: tcp and udp (2 kB through a ClusterIP)', async (t) => {
    const payload = 'x'.repeat(2048)
    await apply(service('large', '{selector: {app: web}, ports: [{name: tcp, port: 80, targetPort: 80}, {name: udp, port: 80, targetPort: 80, protocol: UDP}]}'))
    const ip = await clusterIP('large')
    t.ok(await reaches('svc/client', ip, 80, 'UDP'))
    for (const protocol of ['TCP', 'UDP'] as const) {
      const r = await hit('svc/client', ip, 80, protocol, payload)
      t.equal(r.ok && r.reply.echo, payload, `${protocol}: the 2 kB came back whole`)
    }
  })

  t.test('should be able to create a functioning NodePort service', async (t) => {
    await apply(service('np', '{type: NodePort, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}'))
    const nodePort = (await getService('np'))?.spec?.ports?.[0]?.nodePort
    t.ok(nodePort && nodePort >= 30000 && nodePort <= 32767, `a node port in 30000-32767 (${nodePort})`)
    for (const ip of nodeIPs()) {
      t.ok(await pollUntil(async () => (await curlOutside(`http://${ip}:${nodePort}/`)).code === 0, 10_000), `outside → ${ip}:${nodePort}`)
      const body = JSON.parse((await curlOutside(`http://${ip}:${nodePort}/`)).stdout) as { pod: string }
      t.match(body.pod, /^svc\/web-[12]$/, 'answered by an endpoint')
    }
  })

  t.test('should release NodePorts on delete', async (t) => {
    const nodePort = (await getService('np'))?.spec?.ports?.[0]?.nodePort
    await del('Service', 'np')
    t.ok(await pollUntil(async () => (await curlOutside(`http://${nodeIPs()[0]}:${nodePort}/`)).code !== 0, 10_000), 'the node port stops answering')
    await apply(service('np-again', `{type: NodePort, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http, nodePort: ${nodePort}}]}`))
    t.equal((await getService('np-again'))?.spec?.ports?.[0]?.nodePort, nodePort, 'another Service may take the released port')
    await del('Service', 'np-again')
  })

  t.test('should be rejected when no endpoints exist', async (t) => {
    await apply(service('nobody', '{selector: {app: nothing}, ports: [{port: 80}]}'))
    const ip = await clusterIP('nobody')
    t.ok(
      await pollUntil(async () => {
        const r = await hit('svc/client', ip, 80)
        return !r.ok && r.error === 'ECONNREFUSED'
      }, 10_000),
      'refused (ECONNREFUSED within the 300 ms connect timeout), not dropped',
    )
  })

  t.test('should allow pods to hairpin back to themselves through services', async (t) => {
    let self = false
    for (let i = 0; i < 48 && !self; i++) self = (await answeredBy('svc/web-1', basicIP, 80)) === 'svc/web-1'
    t.ok(self, 'web-1 reaches itself through its Service')
  })

  t.test('should have session affinity work, and switch it off', async (t) => {
    await apply(service('sticky', '{sessionAffinity: ClientIP, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}'))
    const ip = await clusterIP('sticky')
    t.ok(await reaches('svc/client', ip, 80))
    t.equal((await spread('svc/client', ip, 80, 12)).length, 1, 'every connection of the client reaches one endpoint')
    await apply(service('sticky', '{sessionAffinity: None, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}'))
    t.ok(await pollUntil(async () => (await spread('svc/client', ip, 80, 12)).length === 2, 10_000), 'without affinity both endpoints answer again')
  })

  t.test('should have session affinity timeout work', async (t) => {
    await apply(service('brief', '{sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}'))
    const ip = await clusterIP('brief')
    t.ok(await reaches('svc/client', ip, 80))
    const client = pod('svc/client')
    const node = state.nodes.find((n) => n.name === client.node)!
    // The client's node remembers it in an affinity set (an element with the Service's timeout).
    const remembered = async () => {
      const table = await run(['ip', 'netns', 'exec', node.netns, 'nft', 'list', 'table', 'ip', 'flatnet-services'])
      return new RegExp(`${client.address.replace(/\./g, '\\.')} (timeout|expires)`).test(table.stdout)
    }
    t.equal((await spread('svc/client', ip, 80, 8)).length, 1, 'within the timeout every connection sticks')
    t.ok(await remembered(), "the client's address is in the endpoint's affinity set")
    t.ok(await pollUntil(async () => !(await remembered()), 5000, 200), 'idle for longer than timeoutSeconds: 2, the client is forgotten')
  })

  t.test('should update endpoints: pods come and go', async (t) => {
    await apply(WEB3)
    state = await readLabState(lab)
    t.ok(await pollUntil(async () => (await spread('svc/client', basicIP, 80, 12)).includes('svc/web-3'), 10_000), 'a new pod with the label becomes an endpoint')
    await del('Pod', 'web-1')
    state = await readLabState(lab)
    t.ok(await pollUntil(async () => !(await spread('svc/client', basicIP, 80, 12)).includes('svc/web-1'), 10_000), 'a deleted pod is an endpoint no more')
    t.same(
      (await spread('svc/client', basicIP, 80, 12)).filter((p) => p !== 'none'),
      ['svc/web-2', 'svc/web-3'],
      'and no connection fails',
    )
  })

  t.test('should be able to change the type from ExternalName to ClusterIP to NodePort and back', async (t) => {
    await apply(service('changer', '{type: ExternalName, externalName: basic.svc.svc.cluster.local}'))
    const cname = await run(['ip', 'netns', 'exec', pod('svc/client').netns, 'getent', 'hosts', 'changer'])
    t.match(cname.stdout, new RegExp(`^${basicIP.replace(/\./g, '\\.')}\\s`), 'ExternalName: a CNAME, followed to the target')
    await apply(service('changer', '{type: ClusterIP, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}'))
    const ip = await clusterIP('changer')
    t.match(ip, /^10\.96\./, 'ClusterIP: a cluster IP allocated')
    t.ok(await reaches('svc/client', ip, 80), 'and served')
    await apply(service('changer', '{type: NodePort, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}'))
    const nodePort = (await getService('changer'))?.spec?.ports?.[0]?.nodePort
    t.ok(await pollUntil(async () => (await curlOutside(`http://${nodeIPs()[1]}:${nodePort}/`)).code === 0, 10_000), 'NodePort: served on the node port')
    await apply(service('changer', '{type: ClusterIP, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}'))
    t.notOk((await getService('changer'))?.spec?.ports?.[0]?.nodePort, 'back to ClusterIP: the node port is released')
    t.ok(await pollUntil(async () => (await curlOutside(`http://${nodeIPs()[1]}:${nodePort}/`)).code !== 0, 10_000), 'and answers no more')
  })

  t.test('a LoadBalancer gets an address of the pool, reachable from outside', async (t) => {
    await apply(service('edge', '{type: LoadBalancer, selector: {app: web}, ports: [{name: http, port: 8080, targetPort: http}]}'))
    let ingress: string | undefined
    await pollUntil(async () => !!(ingress = (await getService('edge'))?.status?.loadBalancer?.ingress?.[0]?.ip), 10_000)
    t.match(ingress, /^172\.30\.0\.(24\d|25[0-4])$/, `status.loadBalancer.ingress from the pool (${ingress})`)
    t.ok(await pollUntil(async () => (await curlOutside(`http://${ingress}:8080/`)).code === 0, 10_000), `curl http://${ingress}:8080/ from outside`)
  })

  t.test("the docs' examples, verbatim", async (t) => {
    await apply(MYAPP_POD)
    await apply(SEED_NGINX)
    state = await readLabState(lab)
    const nginxIP = await clusterIP('nginx-service', 'default')
    t.ok(await reaches('svc/client', nginxIP, 80), 'nginx-service: targetPort http-web-svc resolved on the pod')
    t.equal(await answeredBy('svc/client', nginxIP, 80), 'nginx')
    await apply(SEED_MY_SERVICE)
    const myIP = await clusterIP('my-service', 'default')
    t.ok(await reaches('svc/client', myIP, 80), 'my-service: 80 → 9376')
    const r = await hit('svc/client', myIP, 80)
    t.equal(r.ok && r.reply.port, 9376)
    await apply(SEED_MULTI_PORT)
    t.ok(await reaches('svc/client', myIP, 443), 'multi-port my-service: 443 → 9377')
    const https = await hit('svc/client', myIP, 443)
    t.equal(https.ok && https.reply.port, 9377)
    await apply(SEED_NODE_PORT)
    for (const ip of nodeIPs()) {
      t.ok(await pollUntil(async () => (await curlOutside(`http://${ip}:30007/`)).code === 0, 10_000), `curl http://${ip}:30007/ from the outside namespace`)
      t.match((await curlOutside(`http://${ip}:30007/`)).stdout, /"pod":"myapp"/)
    }
  })

  t.test('lab check proves the Services section', async (t) => {
    const check = await flatnetctl(['lab', 'check', '--name', name])
    t.match(check.stdout, /✓\s+pod → ClusterIP reaches every endpoint/)
    t.match(check.stdout, /✓\s+Service names resolve through the cluster DNS/)
    t.match(check.stdout, /✓\s+a Service without endpoints refuses at once/)
    t.equal(
      check.code,
      0,
      `lab check: ${check.stdout
        .split('\n')
        .filter((l) => l.startsWith('✗'))
        .join('\n')}`,
    )
  })
})
