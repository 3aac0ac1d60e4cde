// Every piece of the kind e2e that can run on a machine without Docker or kind: run.sh's
// prerequisite check (it says what is missing and creates nothing), its helpers, shellcheck, the
// kind config, the check pods' manifest (schema, unknown fields, agreement with run.sh and with
// deploy/flatnet.yaml), and the probe program itself, serving and connecting across two
// throw-away namespaces exactly as it does between two pods.
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import t from 'tap'
import { parse } from 'yaml'
import { exactEnvArgv, inNetns, run, runOk, testDir, testNamespaces, testRanges, type Netns, type Teardown } from '../helpers/index.js'
import { repoRoot } from '../../deploy/testing/cniPackage.js'
import { describeObject, readManifest, unknownFields, validateSchema, type KubeObject } from '../../deploy/testing/manifests.js'
import { loadDaemonConfig } from '../../conf/daemonFlags.js'

const here = join(repoRoot, 'e2e/kind')
const runSh = join(here, 'run.sh')
const runText = readFileSync(runSh, 'utf8')
const BASH = '/bin/bash'

/** run.sh with exactly this environment (no inherited PATH, no tap variables). */
function runScript(env: Record<string, string>, args: string[] = []) {
  return run(exactEnvArgv(env, [BASH, runSh, ...args]), { timeoutMs: 30_000 })
}

t.test('prerequisites: with no docker, kind or kubectl on PATH it names each, creates nothing, exits 2', async (t) => {
  const { dir } = testDir(t, 'kindpre')
  const emptyBin = join(dir, 'bin')
  mkdirSync(emptyBin)
  const r = await runScript({ PATH: emptyBin, HOME: dir })
  t.equal(r.code, 2, 'exit 2: cannot run here')
  t.equal(r.stdout, '', 'no step started')
  t.match(r.stderr, /^kind e2e: cannot run here; prerequisites missing:$/m, 'says it cannot run')
  for (const tool of ['docker', 'kind', 'kubectl']) t.match(r.stderr, new RegExp(`^  - ${tool}: not found on PATH \\(https://`, 'm'), `names ${tool}, with where to get it`)
  t.match(r.stderr, /^Nothing was created\.$/m, 'and that nothing was created')
})

const docker = ['/usr/local/bin/docker', '/usr/bin/docker'].find((p) => existsSync(p))
t.test('prerequisites: a docker client whose daemon is unreachable is named as such', { skip: docker ? false : 'no docker client on this machine to try it with' }, async (t) => {
  const { dir } = testDir(t, 'kinddock')
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  symlinkSync(docker!, join(bin, 'docker'))
  const r = await runScript({ PATH: bin, HOME: dir, DOCKER_HOST: `unix://${join(dir, 'no-daemon.sock')}` })
  t.equal(r.code, 2, 'exit 2')
  t.match(r.stderr, /^  - docker: the daemon is not reachable \(docker info: .+\)$/m, "the daemon, with docker's own words")
  t.notMatch(r.stderr, /docker: not found/, 'the client itself is found')
  t.match(r.stderr, /^  - kind: not found on PATH/m, 'kind still missing')
})

t.test('prerequisites: an E2E_TEST that is not an executable is named', async (t) => {
  const { dir } = testDir(t, 'kinde2e')
  const notExec = join(dir, 'e2e.test')
  writeFileSync(notExec, 'not a binary\n')
  chmodSync(notExec, 0o644)
  const r = await runScript({ PATH: dir, HOME: dir, E2E_TEST: notExec })
  t.equal(r.code, 2, 'exit 2')
  t.match(r.stderr, new RegExp(`^  - E2E_TEST=${notExec.replaceAll('.', '\\.')}: not an executable file`, 'm'), 'names E2E_TEST')
})

t.test('usage: --help prints the header, a stray argument is refused', async (t) => {
  const help = await runScript({ PATH: '/nonexistent' }, ['--help'])
  t.equal(help.code, 0, '--help exits 0, even with nothing installed')
  t.match(help.stdout, /^Usage: e2e\/kind\/run\.sh/m, 'usage line')
  t.match(help.stdout, /E2E_TEST=/, 'documents E2E_TEST')
  const stray = await runScript({ PATH: '/nonexistent' }, ['now'])
  t.equal(stray.code, 2, 'an argument is refused')
})

t.test('run.sh helpers: in_cidr decides membership of a pod IP in a node podCIDR', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['10.244.1.7', '10.244.1.0/24', true],
    ['10.244.2.7', '10.244.1.0/24', false],
    ['10.244.1.255', '10.244.1.0/24', true],
    ['10.245.0.1', '10.244.0.0/16', false],
    ['10.244.200.3', '10.244.0.0/16', true],
    ['192.168.0.1', '0.0.0.0/0', true],
  ]
  const script = `source ${JSON.stringify(runSh)}; ${cases.map(([ip, cidr]) => `if in_cidr ${ip} ${cidr}; then echo 1; else echo 0; fi`).join('; ')}`
  const r = await runOk([BASH, '-c', script])
  t.same(
    r.stdout.trim().split('\n'),
    cases.map(([, , want]) => (want ? '1' : '0')),
    cases.map(([ip, c, w]) => `${ip} ${w ? 'in' : 'not in'} ${c}`).join(', '),
  )
})

const shellcheck = spawnSync('sh', ['-c', 'command -v shellcheck']).status === 0
t.test('shellcheck: run.sh and the packaging scripts are clean', { skip: shellcheck ? false : 'shellcheck is not installed (Debian: apt-get install shellcheck)' }, async (t) => {
  for (const f of ['e2e/kind/run.sh', 'scripts/package-cni.sh', 'deploy/install-cni.sh', 'deploy/cni-launcher.sh.in']) {
    const r = await run(['shellcheck', ...(f.endsWith('.in') ? ['--shell=sh'] : []), join(repoRoot, f)])
    t.equal(r.code, 0, `${f}${r.stdout ? `:\n${r.stdout}` : ''}`)
  }
})

t.test('kind config: no default CNI, the flatnet pod range, one control plane and two workers', async (t) => {
  const cfg = parse(readFileSync(join(here, 'kind-config.yaml'), 'utf8')) as { kind: string; apiVersion: string; networking: Record<string, unknown>; nodes: Array<{ role: string }> }
  t.equal(cfg.kind, 'Cluster')
  t.equal(cfg.apiVersion, 'kind.x-k8s.io/v1alpha4')
  t.same(cfg.networking, { disableDefaultCNI: true, podSubnet: '10.244.0.0/16' }, 'networking')
  t.same(
    cfg.nodes.map((n) => n.role),
    ['control-plane', 'worker', 'worker'],
    'nodes',
  )
})

t.test('kind config, dual-stack: ipFamily dual, an IPv4 and an IPv6 pod range (IPv4 primary), the same nodes', async (t) => {
  const cfg = parse(readFileSync(join(here, 'kind-config-dual.yaml'), 'utf8')) as { kind: string; apiVersion: string; networking: Record<string, unknown>; nodes: Array<{ role: string }> }
  t.equal(cfg.kind, 'Cluster')
  t.equal(cfg.apiVersion, 'kind.x-k8s.io/v1alpha4')
  t.same(cfg.networking, { ipFamily: 'dual', disableDefaultCNI: true, podSubnet: '10.244.0.0/16,fd00:10:244::/56', serviceSubnet: '10.96.0.0/16,fd00:10:96::/112' }, 'networking')
  t.same(
    cfg.nodes.map((n) => n.role),
    ['control-plane', 'worker', 'worker'],
    'nodes',
  )
})

t.test("run.sh cluster_manifest: flatnet.yaml with the kind config's pod and service ranges, the one place they are set; flatnetd accepts them", async (t) => {
  const { dir } = testDir(t, 'kindman')
  const original = readFileSync(join(repoRoot, 'deploy/flatnet.yaml'), 'utf8')
  for (const [family, config, pods, services] of [
    ['ipv4', 'e2e/kind/kind-config.yaml', '10.244.0.0/16', '10.96.0.0/16'],
    ['dual', 'e2e/kind/kind-config-dual.yaml', '10.244.0.0/16,fd00:10:244::/56', '10.96.0.0/16,fd00:10:96::/112'],
  ] as const) {
    const r = await runOk([BASH, '-c', `cd ${repoRoot} && source e2e/kind/run.sh && config=$(kind_config ${family}) && echo "$config" && cluster_manifest "$config"`])
    const [chosen, ...lines] = r.stdout.split('\n')
    t.equal(chosen, config, `IP_FAMILY=${family} creates the cluster from ${config}`)
    const text = lines.join('\n')
    const path = join(dir, `flatnet-${family}.yaml`)
    writeFileSync(path, text)
    const docs = readManifest(path)
    for (const d of docs) t.doesNotThrow(() => validateSchema(d), `${family}: ${describeObject(d)} validates`)
    const container = (docs.find((d) => d.kind === 'DaemonSet') as KubeObject & IDaemonSet).spec!.template.spec!.containers.find((c) => c.name === 'flatnetd')!
    const env = Object.fromEntries((container.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]))
    t.same([env.FLATNETD_CLUSTER_CIDR, env.FLATNETD_SERVICE_CIDR], [pods, services], `${family}: the ranges of ${config}`)
    const changed = text.split('\n').filter((l, i) => l !== original.split('\n')[i])
    t.ok(changed.length <= 2 && changed.every((l) => /^\s*value: /.test(l)), `${family}: nothing else of flatnet.yaml changes (${changed.length} value lines)`)
    const c = await loadDaemonConfig(['--node-name', 'kind-worker'], { FLATNETD_CLUSTER_CIDR: env.FLATNETD_CLUSTER_CIDR!, FLATNETD_SERVICE_CIDR: env.FLATNETD_SERVICE_CIDR! })
    if (c.kind !== 'run') throw new Error('expected a run configuration')
    t.same(
      [c.config.clusterCidrs, c.config.nodePrefixLengths],
      [pods.split(','), family === 'dual' ? [24, 64] : [24]],
      `${family}: flatnetd claims one subnet per range, /24 and /64 as kube-controller-manager carves them`,
    )
  }
})

t.test('run.sh: an IP_FAMILY other than ipv4 or dual is named among the missing prerequisites', async (t) => {
  const { dir } = testDir(t, 'kindfam')
  const r = await runScript({ PATH: dir, HOME: dir, IP_FAMILY: 'ipv6' })
  t.equal(r.code, 2)
  t.match(r.stderr, /^  - IP_FAMILY=ipv6: expected ipv4 or dual$/m)
})

t.test('the check pods: valid, two per node plus a hostNetwork one, and in agreement with run.sh and flatnet.yaml', async (t) => {
  const docs = readManifest(join(here, 'netcheck.yaml'))
  for (const d of docs) {
    t.doesNotThrow(() => validateSchema(d), `${describeObject(d)} validates`)
    t.same(unknownFields(d), [], `${describeObject(d)} has no unknown fields`)
  }
  const flatnetImage = (readManifest(join(repoRoot, 'deploy/flatnet.yaml')).find((d) => d.kind === 'DaemonSet') as KubeObject & IDaemonSet).spec!.template.spec!.containers[0]!.image
  const checkNs = /^CHECK_NS=(\S+)$/m.exec(runText)?.[1]
  const ports = { pod: /^POD_PORT=(\d+)$/m.exec(runText)?.[1], node: /^NODE_PORT=(\d+)$/m.exec(runText)?.[1] }
  t.equal(docs.find((d) => d.kind === 'Namespace')?.metadata.name, checkNs, `the namespace is run.sh's CHECK_NS (${checkNs})`)
  t.match(runText, /create configmap netcheck-probe --from-file=probe\.cjs=e2e\/kind\/probe\.cjs/, 'run.sh creates the probe ConfigMap from probe.cjs')
  const sets = docs.filter((d) => d.kind === 'DaemonSet') as Array<KubeObject & IDaemonSet>
  t.same(
    sets.map((s) => s.metadata.name),
    ['netcheck-a', 'netcheck-b', 'netcheck-host'],
    'two pod sets and a host set',
  )
  for (const s of sets) {
    const spec = s.spec!.template.spec!
    const c = spec.containers[0]!
    const host = s.metadata.name === 'netcheck-host'
    t.equal(s.metadata.namespace, checkNs, `${s.metadata.name} in ${checkNs}`)
    t.equal(c.image, flatnetImage, `${s.metadata.name} runs the image kind loaded (${flatnetImage}): nothing to pull`)
    t.equal(c.imagePullPolicy, 'IfNotPresent', `${s.metadata.name}: never pulls it`)
    t.same(c.command, ['node', '/probe/probe.cjs', 'serve', host ? ports.node : ports.pod], `${s.metadata.name} serves on run.sh's ${host ? 'NODE_PORT' : 'POD_PORT'}`)
    t.equal(spec.hostNetwork === true, host, `${s.metadata.name}: hostNetwork ${host}`)
    t.same(spec.volumes, [{ name: 'probe', configMap: { name: 'netcheck-probe' } }], `${s.metadata.name} mounts the probe ConfigMap`)
    t.same(c.volumeMounts, [{ name: 'probe', mountPath: '/probe', readOnly: true }], `${s.metadata.name}: at /probe`)
    t.ok(
      spec.tolerations?.some((x) => x.key === 'node-role.kubernetes.io/control-plane'),
      `${s.metadata.name} also runs on the control plane`,
    )
  }
  const labels = sets.filter((s) => s.metadata.name !== 'netcheck-host').map((s) => s.spec!.template.metadata!.labels!.app)
  t.same(labels, ['netcheck', 'netcheck'], 'run.sh finds the pods by app=netcheck')
  t.match(runText, /-l app=netcheck -o/, 'run.sh selects app=netcheck')
  t.match(runText, /-l app=netcheck-host -o/, 'and app=netcheck-host')
})

/** Two namespaces wired like two pods: eth0 in each, one veth, addresses of one /24. */
async function twoPods(t: Teardown) {
  const nss = testNamespaces(t, 'kindprobe')
  const a = await nss.create('a')
  const b = await nss.create('b')
  const [range] = testRanges(1)
  await runOk(['ip', '-n', a.name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', b.name])
  const addr = { a: `${range!.base}2`, b: `${range!.base}3` }
  for (const [ns, ip] of [
    [a, addr.a],
    [b, addr.b],
  ] as const) {
    await runOk(['ip', '-n', ns.name, 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    await runOk(['ip', '-n', ns.name, 'link', 'set', 'eth0', 'up'])
    await runOk(['ip', '-n', ns.name, 'link', 'set', 'lo', 'up'])
  }
  return { a, b, addr }
}

const probeCjs = join(here, 'probe.cjs')
function probeArgv(ns: Netns, args: string[]): string[] {
  return ['ip', 'netns', 'exec', ns.name, ...exactEnvArgv({ PATH: process.env.PATH ?? '/usr/bin:/bin' }, [process.execPath, probeCjs, ...args])]
}

t.test("probe.cjs between two namespaces: the server reports the client's address, self reports eth0", async (t) => {
  const { a, b, addr } = await twoPods(t)
  const server = spawn(probeArgv(a, ['serve', '8080'])[0]!, probeArgv(a, ['serve', '8080']).slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((r) => server.on('close', (code) => r(code)))
  t.teardown(async () => {
    server.kill('SIGKILL')
    await exited
  })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    server.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('listening port=8080')) resolve()
    })
    server.on('close', (code) => reject(new Error(`probe serve exited ${code}: ${out}`)))
  })
  const connect = await run(probeArgv(b, ['connect', addr.a, '8080']))
  t.equal(connect.code, 0, `connect exits 0 (${connect.stderr})`)
  t.equal(connect.stdout, `seen=${addr.b} local=${addr.b}\n`, "the server saw the client's own address, and the client says which it used")
  const self = await run(probeArgv(a, ['self']))
  t.equal(self.stdout, `ip=${addr.a}\n`, 'self: the IPv4 address of eth0')
  const refused = await run(probeArgv(b, ['connect', addr.a, '8081']))
  t.equal(refused.code, 1, 'a closed port: exit 1')
  t.equal(refused.stdout, 'error=ECONNREFUSED\n', 'and the reason, in the form run.sh reports')
  const usage = await run(probeArgv(b, ['bogus']))
  t.equal(usage.code, 2, 'unknown verb: exit 2')
  // SIGTERM (pod deletion) ends the server at once, cleanly.
  server.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM: exit 0')
  t.equal((await inNetns(a, ['ip', '-o', 'link', 'show', 'eth0'])).code, 0, 'the namespaces are still there for teardown')
})
