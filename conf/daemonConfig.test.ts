// flatnetd's configuration: defaults, the layering of command line / environment / file, and
// errors that name the flag at fault and where its value came from.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { DaemonConfigError, mergeDaemonOptions, validateDaemonConfig } from './daemonConfig.js'
import { loadDaemonConfig } from './daemonFlags.js'

async function load(argv: string[], env: Record<string, string> = {}) {
  const r = await loadDaemonConfig(argv, env)
  if (r.kind !== 'run') throw new Error('expected a run configuration')
  return r.config
}

async function failure(argv: string[], env: Record<string, string> = {}): Promise<DaemonConfigError> {
  try {
    await loadDaemonConfig(argv, env)
  } catch (e) {
    if (e instanceof DaemonConfigError) return e
    throw e
  }
  throw new Error(`accepted ${argv.join(' ')}`)
}

t.test('only --node-name is required; everything else has the documented default', async (t) => {
  const c = await load(['--node-name', 'n1'])
  t.same(c, {
    nodeName: 'n1',
    nodeIP: undefined,
    nodeIPs: undefined,
    clusterCidr: '10.244.0.0/16',
    clusterCidrs: ['10.244.0.0/16'],
    nodePrefixLength: 24,
    nodePrefixLengths: [24],
    serviceCidrs: ['10.96.0.0/16'],
    datastore: { kind: 'file', path: '/var/lib/flatnet/nodes.json' },
    stateDir: '/var/lib/flatnet',
    cniConfDir: '/etc/cni/net.d',
    cniBinDir: '/opt/cni/bin',
    cniPath: ['/opt/cni/bin'],
    cniVersion: '1.0.0',
    installCniBinary: undefined,
    ipamDataDir: '/var/lib/cni/flatnet',
    mtu: undefined,
    masquerade: true,
    antiSpoofing: true,
    networkPolicy: true,
    proxyServices: true,
    listen: { host: '127.0.0.1', port: 9473 },
    cniSocket: '/run/flatnet/cni.sock',
    reconcileIntervalSeconds: 10,
    logLevel: 'info',
    uninstall: false,
  })
})

t.test('--proxy-services: on by default where flatnet is the API server (file, etcd), off on kubernetes (kube-proxy owns Services); flag and env turn it either way', async (t) => {
  const kube = ['--node-name', 'n1', '--datastore', 'kubernetes']
  t.equal((await load(['--node-name', 'n1'])).proxyServices, true, 'file')
  t.equal((await load(['--node-name', 'n1', '--datastore', 'etcd', '--etcd-endpoints', 'http://127.0.0.1:2379'])).proxyServices, true, 'etcd')
  t.equal((await load(kube)).proxyServices, false, 'kubernetes')
  t.equal((await load([...kube, '--proxy-services'])).proxyServices, true)
  t.equal((await load(kube, { FLATNETD_PROXY_SERVICES: 'true' })).proxyServices, true)
  t.equal((await load(['--node-name', 'n1', '--no-proxy-services'])).proxyServices, false)
  t.equal((await load(['--node-name', 'n1'], { FLATNETD_PROXY_SERVICES: 'false' })).proxyServices, false)
  const e = await failure(['--node-name', 'n1'], { FLATNETD_PROXY_SERVICES: 'maybe' })
  t.equal(e.message, '--proxy-services (from FLATNETD_PROXY_SERVICES): expected true or false, got "maybe"')
})

t.test('--cni-socket: empty turns the fast path off; a relative path is an error naming the flag', async (t) => {
  t.equal((await load(['--node-name', 'n1', '--cni-socket', ''])).cniSocket, undefined)
  const e = await failure(['--node-name', 'n1', '--cni-socket', 'run/cni.sock'])
  t.equal(e.flag, 'cni-socket')
})

t.test('a missing node name is an error naming --node-name and its environment names', async (t) => {
  const e = await failure([])
  t.equal(e.flag, 'node-name')
  t.match(e.message, /--node-name is required.*FLATNETD_NODE_NAME.*NODE_NAME/)
  t.equal((await load(['--uninstall'])).uninstall, true, '--uninstall needs no node name')
})

t.test('every flag is parsed into its typed field', async (t) => {
  const c = await load([
    '--node-name',
    'n2',
    '--node-ip',
    '192.168.1.5',
    '--cluster-cidr',
    '10.32.0.0/12',
    '--node-prefix-length',
    '26',
    '--datastore',
    'etcd',
    '--etcd-endpoints',
    'http://127.0.0.1:2379, http://127.0.0.2:2379',
    '--lease-ttl',
    '15',
    '--state-dir',
    '/s',
    '--cni-conf-dir',
    '/c',
    '--cni-bin-dir',
    '/b',
    '--install-cni-binary',
    '/dist/bin/flatnet',
    '--ipam-data-dir',
    '/i',
    '--mtu',
    '1400',
    '--no-masquerade',
    '--no-anti-spoofing',
    '--no-network-policy',
    '--no-proxy-services',
    '--listen',
    '[::1]:9999',
    '--reconcile-interval',
    '0.5',
    '--log-level',
    'debug',
    '--cni-version',
    '1.1.0',
    '--service-cidr',
    '10.100.0.0/16,fd00:96::/112',
    '--cni-socket',
    '/s/cni.sock',
  ])
  t.same(c, {
    nodeName: 'n2',
    nodeIP: '192.168.1.5',
    nodeIPs: ['192.168.1.5'],
    clusterCidr: '10.32.0.0/12',
    clusterCidrs: ['10.32.0.0/12'],
    nodePrefixLength: 26,
    nodePrefixLengths: [26],
    serviceCidrs: ['10.100.0.0/16', 'fd00:96::/112'],
    datastore: { kind: 'etcd', endpoints: ['http://127.0.0.1:2379', 'http://127.0.0.2:2379'], leaseTtlSeconds: 15 },
    stateDir: '/s',
    cniConfDir: '/c',
    cniBinDir: '/b',
    cniPath: ['/b'],
    cniVersion: '1.1.0',
    installCniBinary: '/dist/bin/flatnet',
    ipamDataDir: '/i',
    mtu: 1400,
    masquerade: false,
    antiSpoofing: false,
    networkPolicy: false,
    proxyServices: false,
    listen: { host: '::1', port: 9999 },
    cniSocket: '/s/cni.sock',
    reconcileIntervalSeconds: 0.5,
    logLevel: 'debug',
    uninstall: false,
  })
})

t.test("--service-cidr defaults to kind's 10.96.0.0/16 and must not overlap the cluster range (issue 8 item 2)", async (t) => {
  t.same((await load(['--node-name', 'n'])).serviceCidrs, ['10.96.0.0/16'])
  const overlap = await failure(['--node-name', 'n', '--cluster-cidr', '10.0.0.0/8'])
  t.equal(overlap.flag, 'service-cidr')
  t.match(overlap.message, /10\.96\.0\.0\/16 overlaps the cluster range 10\.0\.0\.0\/8 \(--cluster-cidr\)/)
  t.match((await failure(['--node-name', 'n', '--service-cidr', '10.96.0.0/16,10.97.0.0/16'])).message, /one service range per IP family/)
  t.match((await failure(['--node-name', 'n', '--service-cidr', '10.96.0.1/16'])).message, /--service-cidr.*host bits set/)
  t.same((await load(['--node-name', 'n', '--cluster-cidr', '10.0.0.0/8', '--service-cidr', '172.20.0.0/16'])).serviceCidrs, ['172.20.0.0/16'])
})

t.test('the command line wins over FLATNETD_*, which wins over NODE_NAME/HOST_IP, which win over the file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fnt-dconf-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'flatnetd.json')
  writeFileSync(file, JSON.stringify({ nodeName: 'from-file', 'node-ip': '10.1.1.1', mtu: 1300, masquerade: false, reconcileInterval: 3 }))
  const fileOnly = await load(['--config', file])
  t.equal(fileOnly.nodeName, 'from-file')
  t.equal(fileOnly.mtu, 1300)
  t.equal(fileOnly.masquerade, false)
  t.equal(fileOnly.reconcileIntervalSeconds, 3)
  const env = { NODE_NAME: 'from-k8s', HOST_IP: '10.2.2.2', FLATNETD_MTU: '1200', FLATNETD_MASQUERADE: 'true' }
  const layered = await load(['--config', file], env)
  t.equal(layered.nodeName, 'from-k8s', 'NODE_NAME over the file')
  t.equal(layered.nodeIP, '10.2.2.2', 'HOST_IP over the file')
  t.equal(layered.mtu, 1200, 'FLATNETD_MTU over the file')
  t.equal(layered.masquerade, true)
  const both = await load(['--config', file, '--node-name', 'from-cli', '--mtu', '1100'], { ...env, FLATNETD_NODE_NAME: 'from-env' })
  t.equal(both.nodeName, 'from-cli')
  t.equal(both.mtu, 1100)
  t.equal((await load([], { ...env, FLATNETD_NODE_NAME: 'from-env' })).nodeName, 'from-env', 'FLATNETD_NODE_NAME over NODE_NAME')
  t.equal((await load(['--node-name', 'x'], { FLATNETD_CONFIG: file })).mtu, 1300, 'FLATNETD_CONFIG names the file too')
})

t.test('bad values are refused with the flag and the source of the value named', async (t) => {
  const cases: Array<[string[], Record<string, string>, string, RegExp]> = [
    [['--mtu', 'abc'], {}, 'mtu', /^--mtu: expected a number, got "abc"/],
    [['--mtu', '40'], {}, 'mtu', /^--mtu: expected an integer between 68 and 65535, got 40/],
    [[], { FLATNETD_MTU: '1e3' }, 'mtu', /^--mtu \(from FLATNETD_MTU\): expected a number/],
    [['--cluster-cidr', '10.244.0.1/16'], {}, 'cluster-cidr', /^--cluster-cidr: 10\.244\.0\.1\/16: host bits set; did you mean 10\.244\.0\.0\/16\?/],
    [['--cluster-cidr', '10.244.0.0/16,10.245.0.0/16'], {}, 'cluster-cidr', /^--cluster-cidr: 10\.245\.0\.0\/16: one cluster range per IP family, 10\.244\.0\.0\/16 is IPv4 too/],
    [['--cluster-cidr', ','], {}, 'cluster-cidr', /expected at least one cluster range/],
    [['--node-prefix-length', '8'], {}, 'node-prefix-length', /^--node-prefix-length: node subnet prefix length 8 does not fit cluster range 10\.244\.0\.0\/16/],
    [['--node-prefix-length', '32'], {}, 'node-prefix-length', /unusable/],
    [['--node-ip', '300.1.1.1'], {}, 'node-ip', /^--node-ip: invalid IP address "300\.1\.1\.1"/],
    [[], { HOST_IP: 'fd00::1' }, 'node-ip', /^--node-ip \(from HOST_IP\): fd00::1 is IPv6, no cluster range is \(10\.244\.0\.0\/16 is IPv4\)/],
    [['--datastore', 'redis'], {}, 'datastore', /^--datastore: expected file, etcd or kubernetes, got "redis"/],
    [['--datastore', 'etcd'], {}, 'etcd-endpoints', /--etcd-endpoints is required with --datastore etcd/],
    [['--datastore', 'etcd', '--etcd-endpoints', '127.0.0.1:2379'], {}, 'etcd-endpoints', /"127\.0\.0\.1:2379" is not an http\(s\):\/\/host:port URL/],
    [['--datastore', 'etcd', '--etcd-endpoints', 'http://e:2379', '--lease-ttl', '0'], {}, 'lease-ttl', /at least 1 second/],
    [['--lease-ttl', '-1'], {}, 'lease-ttl', /^--lease-ttl: expected an integer between 0 and 86400/],
    [['--datastore-file', 'nodes.json'], {}, 'datastore-file', /^--datastore-file: expected an absolute path, got "nodes\.json"/],
    [['--state-dir', 'rel'], {}, 'state-dir', /absolute path/],
    [['--cni-conf-dir', ''], {}, 'cni-conf-dir', /absolute path/],
    [['--install-cni-binary', 'dist/bin/flatnet'], {}, 'install-cni-binary', /absolute path/],
    [['--listen', '9473'], {}, 'listen', /^--listen: expected host:port/],
    [['--listen', '127.0.0.1:70000'], {}, 'listen', /port 70000 is out of range/],
    [['--listen', 'example.com:80'], {}, 'listen', /expected host:port/],
    [['--reconcile-interval', '0'], {}, 'reconcile-interval', /^--reconcile-interval: expected seconds between 0\.1 and 3600, got 0/],
    [['--log-level', 'loud'], {}, 'log-level', /^--log-level: expected one of fatal, error, warn, info, debug, trace, got "loud"/],
    [[], { FLATNETD_MASQUERADE: 'maybe' }, 'masquerade', /^--masquerade \(from FLATNETD_MASQUERADE\): expected true or false, got "maybe"/],
    [['--mtu', '1400', '--mtu', '1500'], {}, 'mtu', /^--mtu: given more than once/],
    [[], { NODE_NAME: 'bad name!' }, 'node-name', /^--node-name \(from NODE_NAME\): invalid node name "bad name!"/],
  ]
  for (const [argv, env, flag, message] of cases) {
    const e = await failure(
      ['--node-name', 'n1', ...argv].filter((_, i) => !(Object.hasOwn(env, 'NODE_NAME') && i < 2)),
      env,
    )
    t.equal(e.flag, flag, `${[...argv, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' ')} → flag ${flag}`)
    t.match(e.message, message, `${[...argv, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' ')} → message`)
  }
})

t.test('unknown flags, stray arguments, a flag without its value and a bad config file are refused', async (t) => {
  t.match((await failure(['--node-name', 'n1', '--bogus', '1'])).message, /Unknown argument: bogus/)
  t.match((await failure(['--node-name', 'n1', 'extra'])).message, /extra/)
  t.match((await failure(['--node-name', 'n1', '--mtu'])).message, /mtu/)
  const dir = mkdtempSync(join(tmpdir(), 'fnt-dconf-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const unknownKey = join(dir, 'unknown.json')
  writeFileSync(unknownKey, JSON.stringify({ nodeName: 'n1', colour: 'blue' }))
  t.match((await failure(['--config', unknownKey])).message, /config file .*unknown\.json: unknown option "colour"/)
  const notJson = join(dir, 'broken.json')
  writeFileSync(notJson, '{ nodeName: ')
  const e = await failure(['--config', notJson])
  t.equal(e.flag, 'config')
  t.match(e.message, /--config .*broken\.json: not valid JSON/)
  t.match((await failure(['--config', join(dir, 'absent.json')])).message, /--config .*absent\.json: ENOENT/)
  const wrongType = join(dir, 'type.json')
  writeFileSync(wrongType, JSON.stringify({ nodeName: 'n1', mtu: '1400x' }))
  t.match((await failure(['--config', wrongType])).message, new RegExp(`^--mtu \\(from config file ${wrongType.replaceAll('.', '\\.')}\\): expected a number`))
})

t.test('--help returns the help text, listing every flag and its environment name', async (t) => {
  const r = await loadDaemonConfig(['--help'], {})
  t.equal(r.kind, 'help')
  if (r.kind !== 'help') return
  for (const s of ['--node-name', 'NODE_NAME', '--cluster-cidr', 'FLATNETD_CLUSTER_CIDR', '--no-masquerade', '--reconcile-interval', '--install-cni-binary']) t.match(r.text, s)
})

t.test('validateDaemonConfig works on merged plain data (no yargs)', async (t) => {
  const c = validateDaemonConfig(mergeDaemonOptions({ cli: { 'node-name': 'x', masquerade: false }, env: { FLATNETD_LEASE_TTL: '30' } }))
  t.equal(c.masquerade, false)
  t.same(c.datastore, { kind: 'file', path: '/var/lib/flatnet/nodes.json', leaseTtlSeconds: 30 })
})

t.test("kubernetes datastore: Node.spec.podCIDRs by default, flatnet claims in the pod's namespace", async (t) => {
  const c = await load(['--node-name', 'kind-worker', '--datastore', 'kubernetes'])
  t.same(c.datastore, { kind: 'kubernetes', subnetSource: 'podCIDRs', clusterCidr: '10.244.0.0/16', clusterCidrs: ['10.244.0.0/16'] })
  const f = await load(['--node-name', 'w', '--datastore', 'kubernetes', '--kubernetes-subnet-source', 'flatnet', '--kubeconfig', '/etc/kube.conf'], { POD_NAMESPACE: 'flatnet' })
  t.same(f.datastore, { kind: 'kubernetes', subnetSource: 'flatnet', clusterCidr: '10.244.0.0/16', clusterCidrs: ['10.244.0.0/16'], kubeconfig: '/etc/kube.conf', claimNamespace: 'flatnet' })
  t.match((await failure(['--node-name', 'w', '--datastore', 'kubernetes', '--kubernetes-subnet-source', 'auto'])).message, /--kubernetes-subnet-source.*podCIDRs or flatnet/)
  t.match((await failure(['--node-name', 'w', '--datastore', 'kubernetes', '--claim-namespace', 'Bad_NS'])).message, /--claim-namespace.*not a Kubernetes namespace/)
  t.match((await failure(['--node-name', 'w', '--datastore', 'kubernetes', '--kubeconfig', 'rel/path'])).flag, 'kubeconfig')
  t.match((await failure(['--node-name', 'w', '--datastore', 'consul'])).message, /expected file, etcd or kubernetes/)
})

t.test("--cni-path takes the runtime's CNI_PATH, colon or comma separated", async (t) => {
  t.same((await load(['--node-name', 'n', '--cni-path', '/opt/cni/bin:/usr/lib/cni'])).cniPath, ['/opt/cni/bin', '/usr/lib/cni'])
  t.same((await load(['--node-name', 'n', '--cni-path', '/a,/b'])).cniPath, ['/a', '/b'])
  t.equal((await failure(['--node-name', 'n', '--cni-path', '/a:rel'])).flag, 'cni-path')
})

t.test('dual-stack: --cluster-cidr takes one range per family, primary first; prefix lengths default 24 / 64 by family', async (t) => {
  const dual = await load(['--node-name', 'n', '--cluster-cidr', '10.244.0.0/16, fd00:10:244::/56'])
  t.same(dual.clusterCidrs, ['10.244.0.0/16', 'fd00:10:244::/56'])
  t.equal(dual.clusterCidr, '10.244.0.0/16', 'the primary range is the first')
  t.same(dual.nodePrefixLengths, [24, 64])
  t.equal(dual.nodePrefixLength, 24)
  const v6first = await load(['--node-name', 'n', '--cluster-cidr', 'fd00:10:244::/56,10.244.0.0/16', '--service-cidr', 'fd00:10:96::/112,10.96.0.0/16'])
  t.same(v6first.clusterCidrs, ['fd00:10:244::/56', '10.244.0.0/16'], 'IPv6 primary: the order given is kept')
  t.same(v6first.nodePrefixLengths, [64, 24])
  const v6only = await load(['--node-name', 'n', '--cluster-cidr', 'fd00:10:244::/56', '--service-cidr', 'fd00:10:96::/112'])
  t.same([v6only.clusterCidrs, v6only.nodePrefixLengths], [['fd00:10:244::/56'], [64]], 'IPv6-only is accepted')
  t.same(v6only.datastore, { kind: 'file', path: '/var/lib/flatnet/nodes.json' })
  const k = await load(['--node-name', 'n', '--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56', '--datastore', 'kubernetes'])
  t.same(k.datastore, { kind: 'kubernetes', subnetSource: 'podCIDRs', clusterCidr: '10.244.0.0/16', clusterCidrs: ['10.244.0.0/16', 'fd00:10:244::/56'] })
  const fromFile = validateDaemonConfig(
    mergeDaemonOptions({ cli: {}, env: {}, file: { path: '/f.json', values: { nodeName: 'n', clusterCidr: ['10.244.0.0/16', 'fd00::/48'], nodePrefixLength: [26, 60] } } }),
  )
  t.same(
    [fromFile.clusterCidrs, fromFile.nodePrefixLengths],
    [
      ['10.244.0.0/16', 'fd00::/48'],
      [26, 60],
    ],
    'JSON arrays (and numbers) in the config file',
  )
  t.same(
    validateDaemonConfig(mergeDaemonOptions({ cli: {}, env: {}, file: { path: '/f.json', values: { nodeName: 'n', nodePrefixLength: 25 } } })).nodePrefixLengths,
    [25],
    'a single number still works',
  )
})

t.test('--node-prefix-length: one per cluster range, and never more than 16 bits longer than its range (as kube-controller-manager)', async (t) => {
  t.same((await load(['--node-name', 'n', '--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56', '--node-prefix-length', '26,72'])).nodePrefixLengths, [26, 72])
  const tooLong = await failure(['--node-name', 'n', '--cluster-cidr', '10.244.0.0/16,fd00:10:244::/48', '--node-prefix-length', '24,80'])
  t.equal(tooLong.flag, 'node-prefix-length')
  t.match(tooLong.message, /^--node-prefix-length: node subnet prefix length \/80 is 32 bits longer than the cluster range fd00:10:244::\/48 \(--cluster-cidr\): at most 16 bits \(\/64 or shorter\)/)
  const defaultTooLong = await failure(['--node-name', 'n', '--cluster-cidr', '10.244.0.0/16,fd00::/32'])
  t.match(defaultTooLong.message, /\/64 is 32 bits longer than the cluster range fd00::\/32/, 'the default /64 is judged too: a /32 range needs an explicit mask')
  t.match(
    (await failure(['--node-name', 'n', '--cluster-cidr', '10.0.0.0/8', '--service-cidr', '172.20.0.0/16', '--node-prefix-length', '28'])).message,
    /\/28 is 20 bits longer than the cluster range 10\.0\.0\.0\/8/,
  )
  const count = await failure(['--node-name', 'n', '--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56', '--node-prefix-length', '24'])
  t.match(count.message, /^--node-prefix-length: expected one prefix length per cluster range \(2: 10\.244\.0\.0\/16, fd00:10:244::\/56\), got 1 \(24\)/)
  t.match((await failure(['--node-name', 'n', '--node-prefix-length', '24.5'])).message, /expected an integer prefix length, got "24\.5"/)
  t.match((await failure(['--node-name', 'n', '--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56', '--node-prefix-length', '24,128'])).message, /\/128 of cluster range fd00:10:244::\/56 is unusable/)
})

t.test('--node-ip: one per family, each of a family with a cluster range, kept in cluster-range order', async (t) => {
  const dual = ['--node-name', 'n', '--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56']
  const both = await load([...dual, '--node-ip', 'fd00::2,192.168.1.2'])
  t.same(both.nodeIPs, ['192.168.1.2', 'fd00::2'], 'sorted into --cluster-cidr order')
  t.equal(both.nodeIP, '192.168.1.2', 'nodeIP is the primary family')
  const v6Given = await load([...dual, '--node-ip', 'fd00::2'])
  t.same([v6Given.nodeIP, v6Given.nodeIPs], [undefined, ['fd00::2']], 'the primary family is left to detection')
  t.same((await load([...dual], { HOST_IP: '192.168.1.2,fd00::2' })).nodeIPs, ['192.168.1.2', 'fd00::2'], 'HOST_IP may carry the list (status.hostIPs)')
  t.match((await failure([...dual, '--node-ip', '192.168.1.2,192.168.1.3'])).message, /^--node-ip: 192\.168\.1\.3: one node address per IP family, 192\.168\.1\.2 is IPv4 too/)
  t.match(
    (await failure(['--node-name', 'n', '--cluster-cidr', 'fd00:10:244::/56', '--service-cidr', 'fd00:10:96::/112', '--node-ip', '192.168.1.2'])).message,
    /192\.168\.1\.2 is IPv4, no cluster range is \(fd00:10:244::\/56 is IPv6\)/,
  )
})

t.test('--service-cidr must overlap no cluster range, of either family', async (t) => {
  const e = await failure(['--node-name', 'n', '--cluster-cidr', '10.244.0.0/16,fd00:10::/56', '--service-cidr', '10.96.0.0/16,fd00:10:0:1::/112'])
  t.equal(e.flag, 'service-cidr')
  t.match(e.message, /fd00:10:0:1::\/112 overlaps the cluster range fd00:10::\/56 \(--cluster-cidr\)/)
})
