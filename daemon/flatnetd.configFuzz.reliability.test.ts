// A seeded fuzz of flatnetd's configuration: bad values for every option, given on the command
// line, in the environment or in the JSON config file (with wrong JSON types there too), plus
// unknown flags and keys, duplicates, stray arguments, a malformed or missing config file. Every
// case must be refused with one line naming the option at fault — never a stack trace, never a
// start. Most run in-process through loadDaemonConfig; a deterministic share through the real
// binary in a throw-away namespace, which must exit 2 having created nothing: no conflist, no
// state files, no routes, no nftables table.
import { spawn } from 'node:child_process'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { DaemonConfigError, camelOf, envNameOf, type FlagName } from '../conf/daemonConfig.js'
import { loadDaemonConfig } from '../conf/daemonFlags.js'
import { inNetnsOk, runOk, testNamespaces } from '../e2e/helpers/index.js'
import { flatnetdBinary, flatnetdMissingReason, nodeNamespace, tempDir } from './testing/harness.js'

const SEED = 0x5eed5
const RANDOM_CASES = 600
const BINARY_CASES = 40

/** mulberry32: a tiny seeded generator, so a failing case can be replayed. */
function generator(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const paths = ['relative/dir', '../../etc', '/var/lib/../../etc/x', '', './x', '/tmp/a/../b']
/** Bad values as text (any source) per option; `fileOnly` values exist only in JSON. */
const badText: Partial<Record<FlagName, string[]>> = {
  'node-name': ['bad name!', '-starts-with-dash', 'a'.repeat(300), '../../etc', 'x/y', 'ends-'],
  'node-ip': ['abc', '::1', '1.2.3.4.5', '999.1.1.1', '10.0.0.1/24', '1.2.3.4; rm -rf /'],
  'cluster-cidr': ['10.0.0.0/33', 'abc', '300.1.1.1/8', 'fd00::/48,fd01::/48', '10.0.0.0/-1', '10.0.0.0', '$(reboot)/16'],
  'node-prefix-length': ['-1', '33', '8', 'abc', '99999999999999999999', '24.5', '31', '32', '1e3', '0x18'],
  datastore: ['redis', 'FILE', 'kubernetes; true', 'etcd '],
  'datastore-file': paths,
  'lease-ttl': ['-1', '86401', '1.5', 'x', '1e9', '9007199254740993'],
  'state-dir': paths,
  'cni-conf-dir': paths,
  'cni-bin-dir': paths,
  'cni-path': ['relative', '/ok:relative', '/a/../b'],
  'install-cni-binary': ['flatnet', '../flatnet', '/opt/../flatnet'],
  'ipam-data-dir': paths,
  mtu: ['0', '67', '65536', '-1500', 'big', '1e9', '1500.5', '4294967297'],
  listen: ['127.0.0.1', '127.0.0.1:99999', 'example.com:80', ':80', '[::1]', '0.0.0.0:-1', '1.2.3.4:80x', '999.0.0.1:80', 'http://127.0.0.1:80'],
  'reconcile-interval': ['-1', '0', '0.01', '3601', 'NaN', 'Infinity', 'soon', '-0.5', '1e999'],
  'log-level': ['verbose', 'INFO', '0'],
  masquerade: ['maybe', '2', 'on'],
  uninstall: ['perhaps', 'yes please'],
}
/** Values of the wrong JSON type, for the config file. */
const wrongTypes: Array<{ flag: FlagName; value: unknown }> = [
  { flag: 'node-name', value: 5 },
  { flag: 'node-name', value: ['a', 'b'] },
  { flag: 'node-name', value: { x: 1 } },
  { flag: 'mtu', value: '15OO' },
  { flag: 'mtu', value: [1500] },
  { flag: 'mtu', value: true },
  { flag: 'mtu', value: -0.5 },
  { flag: 'masquerade', value: 'maybe' },
  { flag: 'masquerade', value: 1 },
  { flag: 'listen', value: { host: '127.0.0.1' } },
  { flag: 'etcd-endpoints', value: [1] },
  { flag: 'etcd-endpoints', value: 5 },
  { flag: 'cni-path', value: { a: 1 } },
  { flag: 'reconcile-interval', value: '1 second' },
  { flag: 'reconcile-interval', value: false },
  { flag: 'node-prefix-length', value: 24.5 },
  { flag: 'state-dir', value: '/var/lib/flat\u0000net' },
  { flag: 'cni-conf-dir', value: '/etc/cni/\nnet.d' },
  { flag: 'datastore-file', value: 7 },
]

interface Case {
  name: string
  argv: string[]
  env: Record<string, string>
  /** Config file text, written to <dir>/case-N.json and passed with --config. */
  file?: string
  /** What the one-line message must contain. */
  names: string
}

function baseArgs(dir: string): string[] {
  return [
    '--node-name',
    'fuzz',
    '--node-ip',
    '192.168.88.1',
    '--datastore-file',
    join(dir, 'nodes.json'),
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    join(dir, 'net.d'),
    '--cni-bin-dir',
    join(dir, 'bin'),
    '--ipam-data-dir',
    join(dir, 'ipam'),
    '--listen',
    '127.0.0.1:9479',
  ]
}

/** Removes a flag (and its value) from an argv. */
function without(argv: string[], flag: FlagName): string[] {
  const i = argv.indexOf(`--${flag}`)
  return i < 0 ? argv : [...argv.slice(0, i), ...argv.slice(i + 2)]
}

function cases(dir: string): Case[] {
  const rnd = generator(SEED)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!
  const base = baseArgs(dir)
  const out: Case[] = [
    { name: 'unknown flag', argv: [...base, '--bogus', 'x'], env: {}, names: 'bogus' },
    { name: 'unknown flag without value', argv: [...base, '--no-such-thing'], env: {}, names: 'such-thing' },
    { name: 'stray argument', argv: [...base, 'extra'], env: {}, names: 'extra' },
    { name: 'flag given twice', argv: [...base, '--mtu', '1500', '--mtu', '1400'], env: {}, names: '--mtu' },
    { name: 'flag without its value', argv: [...base, '--mtu'], env: {}, names: 'mtu' },
    { name: 'no node name', argv: without(base, 'node-name'), env: {}, names: '--node-name' },
    { name: 'etcd without endpoints', argv: [...base, '--datastore', 'etcd'], env: {}, names: '--etcd-endpoints' },
    { name: 'etcd with lease-ttl 0', argv: [...base, '--datastore', 'etcd', '--etcd-endpoints', 'http://127.0.0.1:2379', '--lease-ttl', '0'], env: {}, names: '--lease-ttl' },
    { name: '/31 cluster range', argv: [...base, '--cluster-cidr', '10.0.0.0/31'], env: {}, names: '--node-prefix-length' },
    { name: '/31 cluster, /31 nodes', argv: [...base, '--cluster-cidr', '10.0.0.0/31', '--node-prefix-length', '31'], env: {}, names: '--node-prefix-length' },
    { name: 'node IP of the wrong family', argv: [...without(base, 'node-ip'), '--node-ip', 'fd00::1'], env: {}, names: '--node-ip' },
    { name: 'malformed JSON config file', argv: base, env: {}, file: '{"mtu": 1500,', names: '--config' },
    { name: 'config file not an object', argv: base, env: {}, file: '[1500]', names: '--config' },
    { name: 'config file empty', argv: base, env: {}, file: '', names: '--config' },
    { name: 'config file of garbage bytes', argv: base, env: {}, file: '\u0000\u00ff\u00fe{', names: '--config' },
    { name: 'config file with an unknown key', argv: base, env: {}, file: '{"nodeNmae": "x"}', names: 'nodeNmae' },
    { name: 'config file that does not exist', argv: [...base, '--config', join(dir, 'missing.json')], env: {}, names: '--config' },
    { name: 'config file is a directory', argv: [...base, '--config', dir], env: {}, names: '--config' },
    { name: 'deeply nested config value', argv: base, env: {}, file: `{"mtu": ${'['.repeat(5000)}${']'.repeat(5000)}}`, names: '--mtu' },
  ]
  for (const { flag, value } of wrongTypes) {
    const file: Record<string, unknown> = { [pick([flag, camelOf(flag)])]: value }
    if (flag === 'etcd-endpoints') file.datastore = 'etcd'
    out.push({ name: `config file ${flag} = ${JSON.stringify(value)}`, argv: without(base, flag), env: {}, file: JSON.stringify(file), names: `--${flag}` })
  }
  const flags = Object.keys(badText) as FlagName[]
  for (let i = 0; i < RANDOM_CASES; i++) {
    const flag = pick(flags)
    const value = pick(badText[flag]!)
    const channel = pick(['cli', 'env', 'file'] as const)
    // Endpoints are checked only with the etcd datastore; a node name is needed unless uninstalling.
    const extra = flag === 'etcd-endpoints' ? ['--datastore', 'etcd'] : []
    const argv = [...without(base, flag), ...extra]
    const c: Case = { name: `#${i} ${flag}=${JSON.stringify(value)} via ${channel}`, argv, env: {}, names: `--${flag}` }
    if (channel === 'cli') c.argv = [...argv, `--${flag}=${value}`]
    else if (channel === 'env') c.env = { [envNameOf(flag)]: value }
    else c.file = JSON.stringify({ [pick([flag, camelOf(flag)])]: value })
    // An empty value from the environment means "not set" (documented): then the default applies.
    if (channel === 'env' && value === '') continue
    out.push(c)
  }
  badText['etcd-endpoints'] = ['localhost:2379', 'ftp://x:1', 'http://x:1/path', 'http://:1', 'http://127.0.0.1:2379?x=1']
  for (const value of badText['etcd-endpoints']) {
    out.push({ name: `etcd-endpoints=${value}`, argv: [...base, '--datastore', 'etcd', '--etcd-endpoints', value], env: {}, names: '--etcd-endpoints' })
  }
  return out.map((c, i) => {
    if (c.file === undefined) return c
    const path = join(dir, `case-${i}.json`)
    writeFileSync(path, c.file)
    return { ...c, argv: [...c.argv, '--config', path] }
  })
}

function judge(t: Test, c: Case, message: string): boolean {
  const oneLine = !message.includes('\n')
  const named = message.includes(c.names)
  const noStack = !/\n\s+at |\bat .*\(.*:\d+:\d+\)/.test(message)
  if (!(oneLine && named && noStack)) t.fail(`${c.name}: expected one line naming ${c.names}, got ${JSON.stringify(message)}`)
  return oneLine && named && noStack
}

t.test('config fuzz through loadDaemonConfig: every case refused with one line naming the option', async (t) => {
  const dir = tempDir(t, 'dfuzz')
  const all = cases(dir)
  const before = readdirSync(dir).sort()
  let refused = 0
  for (const c of all) {
    try {
      await loadDaemonConfig(c.argv, c.env)
      t.fail(`${c.name}: accepted`)
    } catch (e) {
      if (!(e instanceof DaemonConfigError)) {
        t.fail(`${c.name}: not a DaemonConfigError: ${(e as Error).stack}`)
        continue
      }
      if (judge(t, c, e.message)) refused++
    }
  }
  t.comment(`in-process cases: ${all.length} (seed ${SEED}), refused cleanly: ${refused}`)
  t.equal(refused, all.length, `all ${all.length} cases refused cleanly`)
  t.same(readdirSync(dir).sort(), before, 'nothing created beside the case files')
})

t.test(`config fuzz through the binary: exit 2, one line on stderr, nothing created (${BINARY_CASES} cases)`, { skip: flatnetdMissingReason() }, async (t) => {
  const dir = tempDir(t, 'dfuzzb')
  const ns = await nodeNamespace(testNamespaces(t, 'dfuzzb'), '192.168.88.1/24')
  const all = cases(dir)
  const before = readdirSync(dir).sort()
  // A deterministic spread over the list: the fixed cases first, then every k-th random one.
  const fixed = all.filter((c) => !c.name.startsWith('#'))
  const random = all.filter((c) => c.name.startsWith('#'))
  const step = Math.max(1, Math.floor(random.length / Math.max(1, BINARY_CASES - fixed.length)))
  const chosen = [...fixed, ...random.filter((_, i) => i % step === 0)].slice(0, Math.max(BINARY_CASES, fixed.length))
  const runOne = (c: Case) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      // A clean environment: only PATH and the case's own variables (none of the runner's FLATNETD_*).
      const child = spawn('ip', ['netns', 'exec', ns.name, 'env', '-i', `PATH=${process.env.PATH}`, ...Object.entries(c.env).map(([k, v]) => `${k}=${v}`), flatnetdBinary, ...c.argv], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      // An accepted case would start a daemon that runs until stopped: kill it, the case fails.
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      child.on('close', (code) => {
        clearTimeout(timer)
        resolve({ code, stdout, stderr })
      })
    })
  let clean = 0
  for (let i = 0; i < chosen.length; i += 4) {
    const batch = chosen.slice(i, i + 4)
    const results = await Promise.all(batch.map(runOne))
    batch.forEach((c, j) => {
      const r = results[j]!
      const line = r.stderr.replace(/\n$/, '')
      const ok = r.code === 2 && r.stdout === '' && line.startsWith('flatnetd: ') && judge(t, c, line)
      if (!ok) t.fail(`${c.name}: exit ${r.code}, stdout ${JSON.stringify(r.stdout.slice(0, 300))}, stderr ${JSON.stringify(r.stderr.slice(0, 500))}`)
      else clean++
    })
  }
  t.comment(`binary cases: ${chosen.length}, exit 2 with one clean line: ${clean}`)
  t.equal(clean, chosen.length, `all ${chosen.length} refused by the binary with exit 2 and one line`)
  t.same(readdirSync(dir).sort(), before, 'no conflist, no state dir, no datastore file created')
  t.same((await runOk(['ip', '-n', ns.name, 'route', 'show', 'proto', '200'])).stdout.trim(), '', 'no route programmed')
  t.same((await inNetnsOk(ns, ['nft', 'list', 'tables'])).stdout.trim(), '', 'no nftables table')
})
