// The fuzz cases of plugin/fuzz.test.ts, each run through the native entry twice — once answered
// by flatnetd's CNI socket (the fast path), once with no daemon (the entry runs the Node plugin)
// — and the two answers compared byte for byte: exit code and every stdout byte. The fast path's
// promise is "same bytes out either way" (stderr too, which runtimes copy into their logs); plugin/fuzz.test.ts already judges the fallback's bytes
// against the spec, so equality here carries that judgement over to the fast path.
//
// Cases that wire a real pod ("live") run ADD then DEL on one path, then on the other: their
// success documents hold the address, which the allocator's cursor moves between the two runs,
// so addresses are masked before comparing; everything else must match exactly. One exception,
// inherent to the path: a CNI_NETNS relative to the opening process (/proc/self/…), see below.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { flatnetBinary, runOk, testDir, testNamespaces, testRanges } from '../../e2e/helpers/index.js'
import { startCniTestServer } from '../../daemon/testing/cniServerProcess.js'
import { generateFuzzCases, type FuzzCase } from '../testing/fuzzCases.js'
import { makeNode } from '../testing/testHarness.js'
import { netSnapshot, runSeed, settledNetSnapshot, snapshotDiff } from '../testing/reliabilityHarness.js'

const CASES = Number(process.env.FLATNET_FUZZ_BINARY_CASES ?? 200)

/**
 * A CNI_NETNS under /proc/self/ or /dev/fd/ names an object of whichever process opens it: the
 * entry itself on the fast path (its stdin is the runtime's pipe or socket), the Node plugin on
 * the fallback (its stdin is the pipe the entry hands it). Both refuse it with the same code;
 * the message names what each found there.
 */
const processRelative = (c: FuzzCase) => /^\/(proc\/self|proc\/thread-self|dev\/fd)\//.test(c.env.CNI_NETNS ?? '')
const errorCodeOnly = (s: string) => {
  try {
    return String((JSON.parse(s) as { code?: unknown }).code)
  } catch {
    return s
  }
}

interface Answer {
  exitCode: number
  stdout: string
  stderr: string
}

/** The entry inside the node namespace with exactly `env`, stdin bytes; `socket` picks the path. */
function callEntry(node: string, env: Record<string, string>, stdin: Buffer, cwd: string, socket: string): Promise<Answer> {
  const vars = Object.entries({ ...env, FLATNET_CNI_SOCKET: socket }).map(([k, v]) => `${k}=${v}`)
  const argv = ['netns', 'exec', node, '/usr/bin/env', '-i', `PATH=${process.env.PATH}`, ...vars, flatnetBinary]
  return new Promise((resolve, reject) => {
    const child = spawn('ip', argv, { cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stderr.on('data', (d: Buffer) => err.push(d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stdin.on('error', () => {}) // a plugin that refuses before reading stdin closes it early
    child.stdin.end(stdin)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ exitCode: code ?? (signal === 'SIGKILL' ? 137 : 128), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() })
    })
  })
}

/** A success document's addresses and MACs vary between two live ADDs; nothing else may. */
const strict = (s: string) => s
const maskLive = (s: string) => s.replace(/"(address|gateway|mac)":"[^"]*"/g, '"$1":"…"').replace(/"sandbox":"[^"]*"/g, '"sandbox":"…"')

t.test('every fuzz case gets the same exit code and stdout bytes on the fast path as on the fallback', async (t) => {
  const seed = runSeed()
  t.comment(`seed ${seed} (replay with FLATNET_TEST_SEED=${seed})`)
  const spaces = testNamespaces(t, 'fzfast')
  const { dir: root } = testDir(t, 'fzfast')
  const dataDir = join(root, 'data')
  const fixtures = join(root, 'fixtures')
  const cwd = join(root, 'cwd')
  for (const d of [dataDir, fixtures, cwd, join(fixtures, 'dir')]) mkdirSync(d, { recursive: true })
  writeFileSync(join(fixtures, 'file'), 'not a namespace\n')
  symlinkSync(join(fixtures, 'file'), join(fixtures, 'symlink'))
  await runOk(['mkfifo', join(fixtures, 'fifo')])
  const socketFile = createServer()
  await new Promise<void>((resolve) => socketFile.listen(join(fixtures, 'socket'), resolve))
  t.teardown(() => new Promise<void>((resolve) => socketFile.close(() => resolve())))

  const node = await spaces.create('node')
  await makeNode(node)
  await runOk(['ip', 'netns', 'exec', node.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
  const pod = await spaces.create('pod')
  await runOk(['ip', '-n', pod.name, 'link', 'set', 'lo', 'up'])
  const busy = await spaces.create('busy')
  await runOk(['ip', '-n', busy.name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0'])
  const [range] = testRanges(1)
  const ctx = {
    dataDir,
    range: range.cidr,
    marker: 'fnfzfast',
    missing: join(root, 'no-such-netns'),
    podNetns: pod.path,
    busyPodNetns: busy.path,
    notNetns: { file: join(fixtures, 'file'), dir: join(fixtures, 'dir'), fifo: join(fixtures, 'fifo'), socket: join(fixtures, 'socket'), symlink: join(fixtures, 'symlink') },
  }
  const before = { node: await settledNetSnapshot(node), pod: await netSnapshot(pod) }

  const server = await startCniTestServer(node.name, join(root, 'cni.sock'))
  t.teardown(() => server.stop())
  const noDaemon = join(root, 'no-daemon.sock')

  const cases = generateFuzzCases(seed + 1, CASES, ctx).filter((c) => c.binaryOk)
  const differences: string[] = []
  const label = (c: FuzzCase) => `#${c.id} ${c.env.CNI_COMMAND ?? '(no verb)'} ${c.what}`
  let withStderr = 0
  const compare = (c: FuzzCase, step: string, fast: Answer, fallback: Answer, mask: (s: string) => string) => {
    if (fallback.stderr) withStderr++
    if (fast.exitCode !== fallback.exitCode) differences.push(`${label(c)} ${step}: exit ${fast.exitCode} on the fast path, ${fallback.exitCode} on the fallback`)
    else if (mask(fast.stdout) !== mask(fallback.stdout))
      differences.push(`${label(c)} ${step}: stdout differs\n  fast:     ${JSON.stringify(fast.stdout.slice(0, 400))}\n  fallback: ${JSON.stringify(fallback.stdout.slice(0, 400))}`)
    else if (mask === strict && fast.stderr !== fallback.stderr)
      differences.push(`${label(c)} ${step}: stderr differs\n  fast:     ${JSON.stringify(fast.stderr.slice(0, 400))}\n  fallback: ${JSON.stringify(fallback.stderr.slice(0, 400))}`)
  }

  let fastAnswered = 0
  const runOne = async (c: FuzzCase) => {
    const stdin = Buffer.from(c.stdin, 'base64')
    if (!c.live) {
      const [fast, fallback] = await Promise.all([callEntry(node.name, c.env, stdin, cwd, server.socketPath), callEntry(node.name, c.env, stdin, cwd, noDaemon)])
      compare(c, 'call', fast, fallback, processRelative(c) ? errorCodeOnly : strict)
      fastAnswered++
      return
    }
    // One path at a time: both would wire the same pod namespace.
    const answers: Record<'fast' | 'fallback', { add: Answer; del?: Answer }> = { fast: { add: { exitCode: -1, stdout: '', stderr: '' } }, fallback: { add: { exitCode: -1, stdout: '', stderr: '' } } }
    for (const [path, socket] of [
      ['fallback', noDaemon],
      ['fast', server.socketPath],
    ] as const) {
      const add = await callEntry(node.name, c.env, stdin, cwd, socket)
      const del = add.exitCode === 0 && c.env.CNI_COMMAND === 'ADD' ? await callEntry(node.name, { ...c.env, CNI_COMMAND: 'DEL' }, stdin, cwd, socket) : undefined
      answers[path] = { add, del }
    }
    compare(c, 'call', answers.fast.add, answers.fallback.add, maskLive)
    if (answers.fast.del || answers.fallback.del)
      compare(c, 'DEL after it', answers.fast.del ?? { exitCode: -1, stdout: '', stderr: '' }, answers.fallback.del ?? { exitCode: -1, stdout: '', stderr: '' }, strict)
    fastAnswered++
  }
  const calm = cases.filter((c) => !c.live)
  let next = 0
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < calm.length) await runOne(calm[next++])
    }),
  )
  for (const c of cases.filter((c) => c.live)) await runOne(c)

  t.ok(server.alive(), 'flatnetd stayed up through every case')
  t.equal(fastAnswered, cases.length, 'every case ran on both paths')
  // Proof that the fast path answered (an entry that fell back would make equality trivial).
  const served = (await server.metrics())
    .split('\n')
    .filter((l) => l.startsWith('flatnet_cni_calls_total{'))
    .map((l) => ({ result: /result="([^"]+)"/.exec(l)?.[1], n: Number(l.split(' ').pop()) }))
  const total = served.reduce((a, s) => a + s.n, 0)
  const declined = served.filter((s) => s.result === 'declined').reduce((a, s) => a + s.n, 0)
  const fastCalls = cases.length + cases.filter((c) => c.live && c.env.CNI_COMMAND === 'ADD').length
  t.ok(total >= cases.length && total <= fastCalls, `flatnetd served the fast-path calls (${total}, one per case plus each live DEL)`)
  t.equal(declined, 0, 'none declined')
  t.ok(withStderr > 0, `${withStderr} answers carried stderr lines, compared too`)
  t.same(differences, [], `${cases.length} cases (${cases.filter((c) => c.live).length} live): identical answers on both paths`)
  t.same(snapshotDiff(before.node, await netSnapshot(node)), { added: [], removed: [] }, 'node: no link, address, route or rule left')
  t.same(snapshotDiff(before.pod, await netSnapshot(pod)), { added: [], removed: [] }, 'pod: only lo, as before')
})
