// Fuzzing the plugin's inputs — the stdin JSON and every CNI_* variable — with generated cases
// (plugin/testing/fuzzCases.ts), each judged against the outcomes the spec allows for it:
//   - exit 1 and exactly one JSON error object on stdout ({cniVersion, code, msg, details}) with
//     an allowed code, a message naming the variable or key at fault, no stack trace; or exit 0
//     where the input is in fact valid (VERSION, DEL without a namespace, oddities that work);
//   - no link, address, route or rule created on the node or in any pod namespace;
//   - no file written anywhere but the data dir (the whole test tree is snapshotted, and the
//     marker every traversal payload carries is searched for on the host's usual targets).
// Most cases run in-process (invokePlugin, bundled into one driver process inside the node
// namespace); a few hundred more go through the real binary exactly as a runtime calls it.
// FLATNET_FUZZ_CASES / FLATNET_FUZZ_BINARY_CASES raise the counts; FLATNET_TEST_SEED replays a run.
import t from 'tap'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build } from 'esbuild'
import { flatnetBinary, run, runOk, testDir, testNamespaces, testRanges } from '../e2e/helpers/index.js'
import { generateFuzzCases, type FuzzCase } from './testing/fuzzCases.js'
import type { FuzzOutcome } from './testing/fuzzDriver.js'
import { makeNode } from './testing/testHarness.js'
import { dirSnapshot, netSnapshot, runSeed, settledNetSnapshot, snapshotDiff } from './testing/reliabilityHarness.js'

const IN_PROCESS = Number(process.env.FLATNET_FUZZ_CASES ?? 1000)
const THROUGH_BINARY = Number(process.env.FLATNET_FUZZ_BINARY_CASES ?? 300)
const SUPPORTED = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']
const repo = fileURLToPath(new URL('..', import.meta.url))

/** Everything wrong with one outcome, judged against the case's allowed outcomes. */
function judge(c: FuzzCase, o: { exitCode: number; stdout: string; undo?: { exitCode: number; stdout: string } }): string[] {
  const problems: string[] = []
  const verb = c.env.CNI_COMMAND
  if (o.exitCode === 0) {
    if (!c.expect.includes(0)) problems.push(`succeeded, expected code ${c.expect.join('/')}`)
    if (verb === 'ADD' || verb === 'VERSION') {
      let doc: Record<string, unknown> | undefined
      try {
        doc = JSON.parse(o.stdout)
      } catch {
        problems.push(`success output is not JSON: ${o.stdout.slice(0, 200)}`)
      }
      if (doc && verb === 'ADD' && !Array.isArray(doc.ips)) problems.push('ADD result has no ips')
      if (doc && verb === 'VERSION' && !Array.isArray(doc.supportedVersions)) problems.push('VERSION has no supportedVersions')
      if (o.stdout.split('\n').length !== 2) problems.push('success output is not exactly one line')
    } else if (o.stdout !== '') {
      problems.push(`${verb} printed on success: ${o.stdout.slice(0, 200)}`)
    }
  } else if (o.exitCode === 1) {
    const lines = o.stdout.split('\n')
    if (lines.length !== 2 || lines[1] !== '') problems.push(`stdout is not exactly one line: ${JSON.stringify(o.stdout.slice(0, 300))}`)
    let err: Record<string, unknown> | undefined
    try {
      err = JSON.parse(lines[0])
    } catch {
      problems.push(`stdout is not JSON: ${JSON.stringify(o.stdout.slice(0, 300))}`)
    }
    if (err) {
      const extra = Object.keys(err).filter((k) => !['cniVersion', 'code', 'msg', 'details'].includes(k))
      if (extra.length) problems.push(`error has unknown keys ${extra.join(',')}`)
      if (!SUPPORTED.includes(err.cniVersion as string)) problems.push(`error cniVersion ${JSON.stringify(err.cniVersion)}`)
      if (!Number.isInteger(err.code)) problems.push(`code ${JSON.stringify(err.code)} is not an integer`)
      else if (!c.expect.includes(err.code as number)) problems.push(`code ${err.code} (${String(err.msg).slice(0, 160)}), expected ${c.expect.join('/')}`)
      if (typeof err.msg !== 'string' || err.msg === '') problems.push('msg missing or empty')
      if (err.details !== undefined && typeof err.details !== 'string') problems.push('details is not a string')
      if (c.msgIncludes && typeof err.msg === 'string' && !err.msg.includes(c.msgIncludes)) problems.push(`msg does not name ${c.msgIncludes}: ${err.msg.slice(0, 160)}`)
    }
    if (/\n\s+at \S|\.(?:[cm]?js|ts):\d+:\d+/.test(o.stdout)) problems.push('a stack trace on stdout')
  } else {
    problems.push(`exit ${o.exitCode} (crash or signal), stdout ${JSON.stringify(o.stdout.slice(0, 200))}`)
  }
  if (o.undo && (o.undo.exitCode !== 0 || o.undo.stdout !== '')) problems.push(`DEL after the live ADD failed: ${o.undo.stdout}`)
  return problems
}

/** Runs the binary inside the node namespace with exactly `env`, stdin bytes, from `cwd`. */
function callBinary(node: string, env: Record<string, string>, stdin: Buffer, cwd: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const argv = ['netns', 'exec', node, '/usr/bin/env', '-i', `PATH=${process.env.PATH}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`), flatnetBinary]
  return new Promise((resolve, reject) => {
    const child = spawn('ip', argv, { cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => err.push(d))
    child.stdin.on('error', () => {}) // a plugin that refuses before reading stdin closes it early
    child.stdin.end(stdin)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ exitCode: code ?? (signal === 'SIGKILL' ? 137 : 128), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() })
    })
  })
}

async function inBatches<T>(items: T[], size: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: size }, async () => {
      while (next < items.length) await fn(items[next++])
    }),
  )
}

/** Places a stray file from a traversal payload would land, outside the test tree. */
const HOST_TARGETS = ['/', '/tmp', '/etc', '/run', '/var/lib', '/var/tmp', '/var/lib/cni', '/etc/cni/net.d', '/run/netns', '/opt/cni/bin']
const markerHits = (marker: string, dirs: string[]) =>
  dirs
    .filter((d) => existsSync(d))
    .flatMap((d) =>
      readdirSync(d)
        .filter((n) => n.includes(marker))
        .map((n) => join(d, n)),
    )

t.test('fuzzed inputs: one valid JSON error with an allowed code, nothing created, nothing written outside the data dir', async (t) => {
  const seed = runSeed()
  t.comment(`fuzz seed ${seed} (replay with FLATNET_TEST_SEED=${seed})`)
  const marker = `fnfz${randomBytes(4).toString('hex')}`
  const spaces = testNamespaces(t, 'fuzz')
  const { dir: root } = testDir(t, 'fuzz')
  const { dir: work } = testDir(t, 'fuzzdrv')
  const dataDir = join(root, 'a', 'b', 'data')
  const fixtures = join(root, 'fixtures')
  const cwd = join(root, 'cwd')
  for (const d of [dataDir, fixtures, cwd, join(fixtures, 'dir')]) mkdirSync(d, { recursive: true })
  writeFileSync(join(fixtures, 'file'), 'not a namespace\n')
  symlinkSync(join(fixtures, 'file'), join(fixtures, 'symlink'))
  await runOk(['mkfifo', join(fixtures, 'fifo')])
  // A unix socket file (opening it: ENXIO), listening for the whole test: closing would unlink it.
  const socketServer = createServer()
  await new Promise<void>((resolve) => socketServer.listen(join(fixtures, 'socket'), resolve))
  t.teardown(() => new Promise<void>((resolve) => socketServer.close(() => resolve())))

  const node = await spaces.create('node')
  await makeNode(node)
  // A live ADD turns forwarding on (its job); start with it on so that only leftovers differ.
  await runOk(['ip', 'netns', 'exec', node.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
  // ADD brings a pod's lo up (and leaves it so): start with it up, so that only leftovers differ.
  const pod = await spaces.create('pod')
  await runOk(['ip', '-n', pod.name, 'link', 'set', 'lo', 'up'])
  const busy = await spaces.create('busy')
  await runOk(['ip', '-n', busy.name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0'])
  const [range] = testRanges(1)
  const ctx = {
    dataDir,
    range: range.cidr,
    marker,
    missing: join(root, 'no-such-netns'),
    podNetns: pod.path,
    busyPodNetns: busy.path,
    notNetns: { file: join(fixtures, 'file'), dir: join(fixtures, 'dir'), fifo: join(fixtures, 'fifo'), socket: join(fixtures, 'socket'), symlink: join(fixtures, 'symlink') },
  }

  const before = {
    node: await settledNetSnapshot(node),
    pod: await netSnapshot(pod),
    busy: await settledNetSnapshot(busy),
    tree: dirSnapshot(root).filter((l) => !l.split(' ')[1].startsWith('a/b/data/')),
    host: markerHits(marker, HOST_TARGETS),
  }

  // ---- in-process, through invokePlugin, in one driver process inside the node namespace
  const inProcess = generateFuzzCases(seed, IN_PROCESS, ctx)
  const driver = join(work, 'fuzzDriver.cjs')
  const requireHere = createRequire(import.meta.url)
  await build({
    entryPoints: [join(repo, 'plugin', 'testing', 'fuzzDriver.ts')],
    outfile: driver,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'error',
    // net/native.ts finds the addon next to its own source; the bundle lives elsewhere.
    define: { 'import.meta.url': JSON.stringify(pathToFileURL(join(repo, 'net', 'native.ts')).href) },
    plugins: [{ name: 'netlink-external', setup: (b) => b.onResolve({ filter: /^netlink(\/|$)/ }, (a) => ({ path: requireHere.resolve(a.path), external: true })) }],
  })
  const casesFile = join(work, 'cases.jsonl')
  const resultsFile = join(work, 'results.jsonl')
  writeFileSync(casesFile, '')
  for (const c of inProcess) appendFileSync(casesFile, JSON.stringify(c) + '\n')
  const drive = await run(['ip', 'netns', 'exec', node.name, '/usr/bin/env', '-i', `PATH=${process.env.PATH}`, process.execPath, driver, casesFile, resultsFile], { cwd, timeoutMs: 600_000 })
  t.equal(
    drive.code,
    0,
    `the driver ran every case (last: ${drive.stderr
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('case '))
      .pop()}): ${drive.stderr.slice(-2000)}`,
  )
  const outcomes = existsSync(resultsFile)
    ? readFileSync(resultsFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as FuzzOutcome)
    : []
  t.equal(outcomes.length, inProcess.length, 'an outcome for every case')
  const inProcessProblems: string[] = []
  for (const o of outcomes) {
    const c = inProcess[o.id]
    for (const p of judge(c, o)) inProcessProblems.push(`#${c.id} ${c.env.CNI_COMMAND ?? '(no verb)'} ${c.what}: ${p}`)
  }
  t.same(inProcessProblems, [], `${inProcess.length} in-process cases judged`)

  // ---- through the binary, as a runtime calls it (non-live in parallel, live ones one at a time)
  const binaryCases = generateFuzzCases(seed + 1, THROUGH_BINARY, ctx).filter((c) => c.binaryOk)
  const binaryProblems: string[] = []
  const runOne = async (c: FuzzCase) => {
    const stdin = Buffer.from(c.stdin, 'base64')
    const r = await callBinary(node.name, c.env, stdin, cwd)
    let undo: { exitCode: number; stdout: string } | undefined
    if (c.live && r.exitCode === 0 && c.env.CNI_COMMAND === 'ADD') undo = await callBinary(node.name, { ...c.env, CNI_COMMAND: 'DEL' }, stdin, cwd)
    for (const p of judge(c, { ...r, undo })) binaryProblems.push(`binary #${c.id} ${c.env.CNI_COMMAND ?? '(no verb)'} ${c.what}: ${p}`)
    if (r.exitCode !== 0 && r.exitCode !== 1) binaryProblems.push(`binary #${c.id} stderr: ${r.stderr.slice(0, 500)}`)
  }
  await inBatches(
    binaryCases.filter((c) => !c.live),
    4,
    runOne,
  )
  for (const c of binaryCases.filter((c) => c.live)) await runOne(c)
  t.same(binaryProblems, [], `${binaryCases.length} cases through the binary judged`)

  // ---- what must not have changed
  t.same(snapshotDiff(before.node, await netSnapshot(node)), { added: [], removed: [] }, 'node: no link, address, route or rule left')
  t.same(snapshotDiff(before.pod, await netSnapshot(pod)), { added: [], removed: [] }, 'pod: only lo, as before')
  t.same(snapshotDiff(before.busy, await netSnapshot(busy)), { added: [], removed: [] }, 'the pod with an eth0 of its own: untouched')
  const tree = dirSnapshot(root).filter((l) => !l.split(' ')[1].startsWith('a/b/data/'))
  t.same(snapshotDiff(before.tree, tree), { added: [], removed: [] }, 'the test tree outside the data dir: unchanged (cwd, fixtures, parents of the data dir)')
  t.same(
    dirSnapshot(root).filter((l) => l.includes(marker)),
    [],
    'no file named by a payload anywhere in the test tree, data dir included',
  )
  t.same(markerHits(marker, HOST_TARGETS), before.host, `no file named by a payload in ${HOST_TARGETS.join(' ')}`)
  // Random damage may turn "fuzz" into another valid name (its store is then made, inside the data dir).
  t.same(
    readdirSync(dataDir).filter((n) => !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(n)),
    [],
    'the data dir holds only stores named by valid network names',
  )

  const all = [...inProcess, ...binaryCases]
  const byVerb = new Map<string, number>()
  const byCode = new Map<string, number>()
  for (const c of all) {
    const verb = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'].includes(c.env.CNI_COMMAND ?? '') ? (c.env.CNI_COMMAND as string) : 'bad CNI_COMMAND'
    byVerb.set(verb, (byVerb.get(verb) ?? 0) + 1)
    byCode.set(c.expect.join('/'), (byCode.get(c.expect.join('/')) ?? 0) + 1)
  }
  const fmt = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')
  t.comment(
    `fuzz: ${inProcess.length} cases in-process + ${binaryCases.length} through the binary = ${all.length} (${all.filter((c) => c.live).length} live); verbs: ${fmt(byVerb)}; expected outcome (0 = success): ${fmt(byCode)}`,
  )
})
