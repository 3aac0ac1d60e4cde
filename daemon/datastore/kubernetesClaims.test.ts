// The kubernetes datastore allocating subnets itself (subnet source "flatnet"), and its errors,
// against a FAKE API server.
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { build } from 'esbuild'
import t, { type Test } from 'tap'
import { datastoreErrorOf, openFor, request, watchNodes } from './testing/contractSuite.js'
import { fakeNode } from './testing/fakeApiServerNodes.js'
import { startFakeCluster } from './testing/fakeApiServerHarness.js'
import { freeLoopbackPort } from './testing/etcdTestServer.js'
import { openDatastore } from './index.js'
import { claimLease } from './kubernetesNodes.js'
import type { FakeApiServerOptions } from './testing/fakeApiServer.js'
import type { DatastoreConfig } from './types.js'

const flatnet = { subnetSource: 'flatnet' } as const
const run = promisify(execFile)

async function clusterOf(t: Test, names: string[], options: FakeApiServerOptions = {}) {
  const cluster = await startFakeCluster(t, options)
  for (const name of names) cluster.fake.addNode(fakeNode(name, { internalIPs: [`172.18.0.${10 + names.indexOf(name)}`] }))
  return cluster
}

t.test('a claim holds the subnet with a Lease named after it, owned by the Node, and records it in Node annotations', async (t) => {
  const { fake, config } = await clusterOf(t, ['kind-worker'])
  const store = await openFor(t, config(flatnet))
  const before = fake.node('kind-worker')!
  const record = await store.claim(request('kind-worker', { nodeIP: '172.18.0.10' }))
  t.match(record, { name: 'kind-worker', subnet: '10.244.0.0/24', nodeIP: '172.18.0.10', owner: 'owner-of-kind-worker' })
  const node = fake.node('kind-worker')!
  t.same(
    node.metadata.annotations,
    {
      ...before.metadata.annotations,
      'flatnet.io/pod-cidr': '10.244.0.0/24',
      'flatnet.io/owner': 'owner-of-kind-worker',
      'flatnet.io/node-ip': '172.18.0.10',
      'flatnet.io/updated-at': record.updatedAt,
    },
    "the four flatnet annotations, kubelet's kept",
  )
  t.same(node.spec, before.spec, 'spec (podCIDRs included) untouched')
  t.same(node.status, before.status, 'status untouched')
  const leases = fake.leases('kube-system')
  t.equal(leases.length, 1)
  t.match(leases[0], {
    metadata: {
      name: 'flatnet-subnet-10-244-0-0-24',
      labels: { 'app.kubernetes.io/managed-by': 'flatnet', 'app.kubernetes.io/component': 'subnet-claim' },
      annotations: { 'flatnet.io/pod-cidr': '10.244.0.0/24' },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'kind-worker', uid: node.metadata.uid }],
    },
    spec: { holderIdentity: 'kind-worker' },
  })
})

t.test('a Node deleted from the cluster leaves the peer list, and the garbage collector frees its subnet', async (t) => {
  const { fake, config } = await clusterOf(t, ['n1', 'n2', 'n3'])
  const store = await openFor(t, config(flatnet))
  await store.claim(request('n1'))
  await store.claim(request('n2'))
  const seen = watchNodes(t, store)
  t.ok(await seen.until((nodes) => nodes.map((n) => n.name).join() === 'n1,n2'))
  fake.deleteNode('n1')
  t.ok(await seen.until((nodes) => nodes.map((n) => n.name).join() === 'n2'), 'the watch reports the deletion')
  t.same(
    fake.leases('kube-system').map((l) => l.metadata.name),
    ['flatnet-subnet-10-244-1-0-24'],
    "n1's Lease went with it",
  )
  t.equal((await store.claim(request('n3'))).subnet, '10.244.0.0/24', "the next node gets n1's subnet")
})

t.test('a daemon that crashed between taking the Lease and annotating the Node gets that subnet back', async (t) => {
  const { fake, config } = await clusterOf(t, ['n1'])
  fake.addLease(claimLease('10.244.5.0/24', fake.node('n1')!, 'kube-system', new Date()))
  const store = await openFor(t, config(flatnet))
  t.equal((await store.claim(request('n1'))).subnet, '10.244.5.0/24')
  t.equal(fake.leases('kube-system').length, 1, 'no second Lease')
})

t.test("a Node registered again before the garbage collector removed the old Node's Lease does not build on that Lease", async (t) => {
  const { fake, config } = await clusterOf(t, ['n1', 'n2'])
  // The collector has not yet deleted what the earlier Node objects named n1 and n2 owned.
  const earlier = (name: string) => ({ ...fake.node(name)!, metadata: { ...fake.node(name)!.metadata, uid: `uid-of-an-earlier-${name}` } })
  fake.addLease(claimLease('10.244.0.0/24', earlier('n1'), 'kube-system', new Date()))
  fake.addLease(claimLease('10.244.7.0/24', earlier('n2'), 'kube-system', new Date()))
  fake.updateNode('n2', (n) => {
    n.metadata.annotations = { ...n.metadata.annotations, 'flatnet.io/pod-cidr': '10.244.7.0/24', 'flatnet.io/owner': 'owner-of-n2', 'flatnet.io/node-ip': '192.168.77.10' }
  })
  const store = await openFor(t, config(flatnet))
  t.equal((await store.claim(request('n1'))).subnet, '10.244.1.0/24', 'not adopted: n1 gets a free subnet')
  t.equal((await store.claim(request('n2'))).subnet, '10.244.7.0/24', 'n2 keeps what its annotation records')
  const n2Lease = fake.leases('kube-system').find((l) => l.metadata.name === 'flatnet-subnet-10-244-7-0-24')
  t.same(
    n2Lease?.metadata.ownerReferences?.map((o) => o.uid),
    [fake.node('n2')!.metadata.uid],
    'and its Lease is now owned by the current Node',
  )
})

t.test('a Node changed between the claim reading and writing it (409 Conflict) is read again and the write retried', async (t) => {
  const { fake, config } = await clusterOf(t, ['n1'])
  const store = await openFor(t, config(flatnet))
  // kubelet updates the Node right before flatnet's patch arrives.
  fake.beforeNext('PATCH', '/api/v1/nodes/n1', () =>
    fake.updateNode('n1', (n) => {
      n.metadata.labels!['kubelet-was-here'] = 'yes'
    }),
  )
  const record = await store.claim(request('n1'))
  t.equal(record.subnet, '10.244.0.0/24')
  t.same(
    fake.requests.filter((r) => r.path === '/api/v1/nodes/n1').map((r) => `${r.method} ${r.status}`),
    ['GET 200', 'PATCH 409', 'GET 200', 'PATCH 200'],
  )
  const node = fake.node('n1')!
  t.equal(node.metadata.labels!['kubelet-was-here'], 'yes', "kubelet's change is kept")
  t.equal(node.metadata.annotations!['flatnet.io/pod-cidr'], '10.244.0.0/24', "and flatnet's is there")
  t.equal(fake.leases('kube-system').length, 1, 'the Lease taken before the conflict is the one used')
})

t.test('one node claimed at once by two daemons: one wins, the other gets a conflict and leaves no Lease behind', async (t) => {
  const { fake, config } = await clusterOf(t, ['twin'])
  const one = await openFor(t, config(flatnet))
  const two = await openFor(t, config(flatnet))
  const outcomes = await Promise.allSettled([one.claim(request('twin', { owner: 'daemon-1' })), two.claim(request('twin', { owner: 'daemon-2' }))])
  const won = outcomes.filter((o) => o.status === 'fulfilled')
  const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected')
  t.equal(won.length, 1, 'one wins')
  t.equal(lost[0]?.reason?.kind, 'conflict', 'the other is told of the conflict')
  const winner = (won[0] as PromiseFulfilledResult<{ subnet: string; owner: string }>).value
  t.same(
    fake.leases('kube-system').map((l) => l.metadata.annotations!['flatnet.io/pod-cidr']),
    [winner.subnet],
    "only the winner's Lease remains",
  )
  t.equal(fake.node('twin')!.metadata.annotations!['flatnet.io/owner'], winner.owner)
})

t.test('remove frees the subnet and leaves the Node: annotations and Lease gone, the rest untouched', async (t) => {
  const { fake, config } = await clusterOf(t, ['n1'])
  const before = fake.node('n1')!
  const store = await openFor(t, config(flatnet))
  await store.claim(request('n1'))
  t.equal(await store.remove('n1'), true)
  const after = fake.node('n1')!
  t.same(after.metadata.annotations, before.metadata.annotations, 'only the flatnet annotations went')
  t.same([after.spec, after.status], [before.spec, before.status])
  t.same(fake.leases('kube-system'), [])
  fake.addLease(claimLease('10.244.9.0/24', after, 'kube-system', new Date()))
  t.equal(await store.remove('n1'), true, 'a Lease alone (left by a crash) is freed too')
  t.same(fake.leases('kube-system'), [])
  t.equal(await store.remove('n1'), false)
})

t.test('claims for a Node that does not exist are invalid, naming the Node and the API server', async (t) => {
  const { fake, config } = await clusterOf(t, [])
  const store = await openFor(t, config(flatnet))
  const err = await datastoreErrorOf(store.claim(request('ghost')))
  t.equal(err?.kind, 'invalid')
  t.match(err?.message, `Node ghost does not exist on ${fake.url}`)
  t.same(fake.leases('kube-system'), [], 'no Lease taken')
})

t.test('claim Leases live in the configured namespace; a namespace that does not exist is reported', async (t) => {
  const { fake, config } = await clusterOf(t, ['n1'])
  const store = await openFor(t, config({ ...flatnet, claimNamespace: 'flatnet-claims' }))
  const err = await datastoreErrorOf(store.claim(request('n1')))
  t.equal(err?.kind, 'unavailable')
  t.match(err?.message, /namespaces "flatnet-claims" not found/)
  t.equal(fake.node('n1')!.metadata.annotations!['flatnet.io/pod-cidr'], undefined, 'nothing recorded on the Node')
})

t.test('an unreadable flatnet annotation: list is refused as corrupt naming the Node, the watch reports it and skips the Node', async (t) => {
  const { fake, config } = await clusterOf(t, ['good', 'bad'])
  const store = await openFor(t, config(flatnet))
  await store.claim(request('good'))
  fake.updateNode('bad', (n) => {
    n.metadata.annotations = { ...n.metadata.annotations, 'flatnet.io/pod-cidr': 'ten-two-four-four' }
  })
  const err = await datastoreErrorOf(store.list())
  t.equal(err?.kind, 'corrupt')
  t.match(err?.message, /Node bad: annotation flatnet.io\/pod-cidr="ten-two-four-four"/)
  const seen = watchNodes(t, store)
  t.ok(await seen.until((nodes) => nodes.map((n) => n.name).join() === 'good'))
  for (const deadline = Date.now() + 10_000; seen.errors.length === 0 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20))
  t.match(seen.errors[0]?.message, /Node bad/)
  t.equal(fake.node('bad')!.metadata.annotations!['flatnet.io/pod-cidr'], 'ten-two-four-four', 'left as it was for an operator')
})

// --- reaching the API server ------------------------------------------------------------------

async function kubeconfigFor(t: Test, server: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'flatnet-kubeconfig-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 'kubeconfig')
  await writeFile(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'c',
      clusters: [{ name: 'c', cluster: { server, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token: 't' } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
    }),
  )
  return path
}

/** The outcome of opening a datastore, bounded so that a hang fails the test instead of stalling it. */
async function openOutcome(config: DatastoreConfig) {
  const bound = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 20_000).unref())
  const outcome = await Promise.race([datastoreErrorOf(openDatastore(config)), bound])
  return outcome === 'hung' ? { hung: true as const } : { hung: false as const, err: outcome }
}

t.test('an API server nobody listens on: open fails unavailable, naming it', async (t) => {
  const server = `http://127.0.0.1:${await freeLoopbackPort()}`
  const outcome = await openOutcome({ kind: 'kubernetes', kubeconfig: await kubeconfigFor(t, server), timeoutMs: 1000 })
  t.equal(outcome.hung, false)
  t.equal(outcome.err?.kind, 'unavailable')
  t.match(outcome.err?.message, server)
})

t.test('an API server that accepts connections but never answers: unavailable within the request timeout', async (t) => {
  const sockets = new Set<Socket>()
  const silent = createServer((socket) => {
    sockets.add(socket)
  })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    silent.close()
  })
  const server = `http://127.0.0.1:${(silent.address() as { port: number }).port}`
  const outcome = await openOutcome({ kind: 'kubernetes', kubeconfig: await kubeconfigFor(t, server), timeoutMs: 500 })
  t.equal(outcome.hung, false)
  t.equal(outcome.err?.kind, 'unavailable')
  t.match(outcome.err?.message, new RegExp(`${server}.*no answer within 500 ms`))
})

t.test("wrong credentials: unavailable with the server's 401", async (t) => {
  const cluster = await startFakeCluster(t, { token: 'the-right-token' })
  const outcome = await openOutcome({ kind: 'kubernetes', kubeconfig: await cluster.fake.writeKubeconfig(join(cluster.kubeconfig, '..', 'wrong'), 'a-wrong-token'), timeoutMs: 3000 })
  t.equal(outcome.err?.kind, 'unavailable')
  t.match(outcome.err?.message, /401 Unauthorized/)
})

t.test('no kubeconfig outside a pod: invalid, saying what in-cluster config needs', async (t) => {
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT }
  delete process.env.KUBERNETES_SERVICE_HOST
  delete process.env.KUBERNETES_SERVICE_PORT
  t.teardown(() => {
    if (saved.host !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved.host
    if (saved.port !== undefined) process.env.KUBERNETES_SERVICE_PORT = saved.port
  })
  const outcome = await openOutcome({ kind: 'kubernetes' })
  t.equal(outcome.err?.kind, 'invalid')
  t.match(outcome.err?.message, /KUBERNETES_SERVICE_HOST/)
  const missing = await openOutcome({ kind: 'kubernetes', kubeconfig: '/nonexistent/kubeconfig' })
  t.equal(missing.err?.kind, 'invalid')
  t.match(missing.err?.message, '/nonexistent/kubeconfig')
})

/** A self-signed certificate for 127.0.0.1 (openssl, Debian), in a temp directory removed at teardown. */
async function selfSignedCert(t: Test, commonName: string): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'flatnet-fake-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=${commonName}`,
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
  ])
  return { cert: await readFile(join(dir, 'cert.pem'), 'utf8'), key: await readFile(join(dir, 'key.pem'), 'utf8') }
}

t.test("over TLS, with the kubeconfig's certificate authority and a bearer token", async (t) => {
  const tls = await selfSignedCert(t, 'fake-apiserver')
  const { fake, config } = await clusterOf(t, ['secure'], { tls, token: 'tls-token' })
  t.match(fake.url, /^https:/)
  const store = await openFor(t, config(flatnet))
  t.equal((await store.claim(request('secure'))).subnet, '10.244.0.0/24')
  // The same server, with a kubeconfig that trusts another certificate authority: refused.
  const doubted = JSON.parse(await readFile(config().kubeconfig!, 'utf8')) as { clusters: Array<{ cluster: Record<string, unknown> }> }
  doubted.clusters[0]!.cluster['certificate-authority-data'] = Buffer.from((await selfSignedCert(t, 'someone-else')).cert).toString('base64')
  const path = join(config().kubeconfig!, '..', 'kubeconfig-other-ca')
  await writeFile(path, JSON.stringify(doubted))
  const outcome = await openOutcome({ kind: 'kubernetes', kubeconfig: path, timeoutMs: 3000 })
  t.equal(outcome.err?.kind, 'unavailable', 'a server whose certificate that authority did not sign is not trusted')
  t.match(outcome.err?.message, /self-signed certificate|unable to verify|certificate/)
})

t.test("in a pod: the service account's token and CA, and the API server from KUBERNETES_SERVICE_HOST/PORT", async (t) => {
  const tls = await selfSignedCert(t, 'fake-apiserver')
  const { fake } = await clusterOf(t, ['pod-node'], { tls, token: 'service-account-token' })
  const dir = await mkdtemp(join(tmpdir(), 'flatnet-in-cluster-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const secrets = join(dir, 'serviceaccount')
  await mkdir(secrets)
  await writeFile(join(secrets, 'token'), 'service-account-token')
  await writeFile(join(secrets, 'ca.crt'), tls.cert)
  await writeFile(join(secrets, 'namespace'), 'kube-system')
  // A separate process opens the datastore with no kubeconfig, as flatnetd does in its pod. The
  // service account files must be at their fixed path (/var/run/secrets/...): that process gets
  // a private mount namespace with a tmpfs over /run holding them, so the host's /run is untouched.
  const script = join(dir, 'inCluster.mjs')
  await build({
    stdin: {
      contents:
        "import { openDatastore } from './index.ts'\nconst store = await openDatastore({ kind: 'kubernetes', subnetSource: 'flatnet', timeoutMs: 3000 })\nconsole.log(JSON.stringify(await store.claim(JSON.parse(process.argv[2]))))\nawait store.close()\n",
      resolveDir: new URL('.', import.meta.url).pathname,
      loader: 'ts',
      sourcefile: 'inCluster.ts',
    },
    outfile: script,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'error',
    banner: { js: "import { createRequire as __flatnetCreateRequire } from 'node:module'; const require = __flatnetCreateRequire(import.meta.url);" },
    // etcd3 (reached by index.ts's etcd import) loads its .proto files from its own directory.
    plugins: [{ name: 'etcd3-external', setup: (b) => b.onResolve({ filter: /^etcd3$/ }, () => ({ path: createRequire(import.meta.url).resolve('etcd3'), external: true })) }],
  })
  const env: NodeJS.ProcessEnv = { ...process.env, KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: new URL(fake.url).port }
  delete env.NODE_OPTIONS
  const inPod = 'mount -t tmpfs flatnet-test /run && mkdir -p /run/secrets/kubernetes.io && cp -r "$0" /run/secrets/kubernetes.io/serviceaccount && exec "$@"'
  const { stdout } = await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', inPod, secrets, process.execPath, script, JSON.stringify(request('pod-node'))], { env, timeout: 30_000 })
  t.match(JSON.parse(stdout), { name: 'pod-node', subnet: '10.244.0.0/24' })
  t.equal(fake.node('pod-node')!.metadata.annotations!['flatnet.io/pod-cidr'], '10.244.0.0/24', 'written with the service account token over TLS')
})
