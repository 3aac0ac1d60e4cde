// Fast-path benchmark: flatnet's native entry served by a warm flatnetd CNI socket, against the
// Go reference (ptp + host-local), flatnet's Node fallback and a bare `node -e 0`, side by side in
// one run, calls interleaved pod by pod, each made like a runtime makes it (CNI_* + PATH only).
//
//   node bench/run.mjs fastpath [--pods 200] [--parallel 32]
//
// The server is flatnetd's CNI socket module (daemon/cniServer.ts) in a process of its own
// (daemon/testing/cniServerMain.ts): the same code the daemon runs, without the reconcilers that
// would program this host. Measures:
//   - sequential ADD and DEL over --pods pods: median and p95 per path
//   - --parallel-way ADD throughput (pods/s), fast path vs reference vs fallback
//   - peak RSS of the entry per call (GNU time), fast path
//   - where a fast ADD's time goes: process start + socket round trip (a fast VERSION), the
//     plugin's own work in a warm process (invokePlugin in this process), the kernel's veth
//     create/delete (ip link, minus ip's own start)
// Prints a table, writes JSON to bench/results/, removes every namespace, veth and file it made.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startCniTestServer } from '../daemon/testing/cniServerProcess.js'
import {
  REFERENCE_CNI_DIR,
  TestNamespaces,
  flatnetBinary,
  flatnetConflist,
  pluginConfig,
  referenceConflist,
  runtimeEnv,
  testDir,
  testRanges,
  type CniCommand,
  type Conflist,
  type Netns,
  type TestRange,
} from '../e2e/helpers/index.js'
import { warmThreadPool } from '../net/netns.js'
import { invokePlugin } from '../plugin/invoke.js'
import { benchCleanup, peakRssMiB, pool, progress, summarize, timed, type Summary, type Timed } from './measure.js'

const root = fileURLToPath(new URL('..', import.meta.url))

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const v = Number(process.argv[i + 1])
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer`)
  return v
}

const PODS = option('pods', 200)
const PARALLEL = option('parallel', 32)
const WARMUP = 3
const RSS_SAMPLES = 5
if (PODS > 250) throw new Error('--pods: at most 250 (one /24 per path)')

interface Path {
  label: string
  binary: string
  /** Variables besides CNI_* and PATH: where the entry finds the socket (or, for the fallback, does not). */
  extraEnv: Record<string, string>
  conflist(spec: { name: string; range: TestRange; dataDir: string }): Conflist
  namespaces: Netns[]
  range: TestRange
}

const { teardown, cleanUp } = benchCleanup()

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (network namespaces, veths)')
  for (const f of [flatnetBinary, join(flatnetBinary, '..', 'flatnet-node'), join(REFERENCE_CNI_DIR, 'ptp'), join(REFERENCE_CNI_DIR, 'host-local'), '/usr/bin/time']) {
    if (!existsSync(f)) throw new Error(`${f} is missing (./build.sh; scripts/install-deps.sh)`)
  }
  const started = Date.now()
  const loadAtStart = loadavg()[0]!
  const { prefix, dir } = testDir(teardown, 'fastb')
  const nss = new TestNamespaces('fastb')
  teardown.teardown(() => nss.removeAll())
  const socketPath = join(dir, 'cni.sock')
  const server = await startCniTestServer(undefined, socketPath)
  teardown.teardown(() => server.stop())

  const ranges = testRanges(3) as [TestRange, TestRange, TestRange]
  const fast: Path = { label: 'flatnet fast', binary: flatnetBinary, extraEnv: { FLATNET_CNI_SOCKET: socketPath }, conflist: flatnetConflist, namespaces: [], range: ranges[0] }
  const ref: Path = { label: 'ptp+host-local', binary: join(REFERENCE_CNI_DIR, 'ptp'), extraEnv: {}, conflist: referenceConflist, namespaces: [], range: ranges[1] }
  const fallback: Path = { label: 'flatnet fallback', binary: flatnetBinary, extraEnv: { FLATNET_CNI_SOCKET: join(dir, 'absent.sock') }, conflist: flatnetConflist, namespaces: [], range: ranges[2] }
  const paths = [fast, ref, fallback]

  progress(`creating ${3 * PODS} namespaces…`)
  for (let i = 0; i < PODS; i++) for (const p of paths) p.namespaces.push(await nss.create(`${paths.indexOf(p)}-${i}`))
  const scratchNs = await nss.create('kernel')
  const scratchPeer = await nss.create('kpeer')

  const listOf = (p: Path, phase: string): Conflist => p.conflist({ name: `${prefix}-${paths.indexOf(p)}-${phase}`, range: p.range, dataDir: join(dir, phase) })
  const id = (p: Path, phase: string, i: number) => `${prefix}-${paths.indexOf(p)}-${phase}-${i}`
  const envOf = (p: Path, command: CniCommand, ns: Netns, containerId: string) => ({
    ...runtimeEnv(command, { CNI_CONTAINERID: containerId, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', CNI_PATH: REFERENCE_CNI_DIR }),
    ...p.extraEnv,
  })
  const cni = async (p: Path, command: CniCommand, list: Conflist, ns: Netns, containerId: string): Promise<Timed> => {
    const r = await timed([p.binary], envOf(p, command, ns, containerId), JSON.stringify(pluginConfig(list)))
    if (r.code !== 0 || (command === 'ADD' && !r.stdout.includes('"ips"'))) throw new Error(`${p.label} ${command} ${containerId}: exit ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`)
    return r
  }
  const nodeEnv = { PATH: runtimeEnv('VERSION').PATH! }
  const nodeStart = () => timed([process.execPath, '-e', '0'], nodeEnv)
  const fastVersion = () => timed([flatnetBinary], { ...runtimeEnv('VERSION'), FLATNET_CNI_SOCKET: socketPath })
  const trueStart = () => timed(['/bin/true'], nodeEnv)

  progress('warming up…')
  for (let i = 0; i < WARMUP; i++) {
    await nodeStart()
    await fastVersion()
    for (const p of paths) {
      await cni(p, 'ADD', listOf(p, 'warm'), p.namespaces[i]!, id(p, 'warm', i))
      await cni(p, 'DEL', listOf(p, 'warm'), p.namespaces[i]!, id(p, 'warm', i))
    }
  }

  progress(`sequential ADD and DEL of ${PODS} pods per path…`)
  const seq = new Map(paths.map((p) => [p, { add: [] as number[], del: [] as number[] }]))
  const base = { node: [] as number[], fastVersion: [] as number[], exec: [] as number[] }
  for (let i = 0; i < PODS; i++) {
    const order = i % 2 ? paths : [...paths].reverse()
    for (const p of order) seq.get(p)!.add.push((await cni(p, 'ADD', listOf(p, 'seq'), p.namespaces[i]!, id(p, 'seq', i))).ms)
    base.node.push((await nodeStart()).ms)
    base.fastVersion.push((await fastVersion()).ms)
    base.exec.push((await trueStart()).ms)
  }
  for (let i = 0; i < PODS; i++) {
    for (const p of i % 2 ? paths : [...paths].reverse()) seq.get(p)!.del.push((await cni(p, 'DEL', listOf(p, 'seq'), p.namespaces[i]!, id(p, 'seq', i))).ms)
  }

  progress("the plugin's own work in a warm process (invokePlugin here)…")
  await warmThreadPool()
  const inProcess = { add: [] as number[], del: [] as number[] }
  const n = Math.min(60, PODS)
  for (let i = 0; i < n; i++) {
    const list = listOf(fast, 'inproc')
    const env = (c: CniCommand) => envOf(fast, c, fast.namespaces[i]!, id(fast, 'inproc', i))
    const stdin = Buffer.from(JSON.stringify(pluginConfig(list)))
    let t0 = process.hrtime.bigint()
    const add = await invokePlugin(env('ADD'), () => stdin)
    inProcess.add.push(Number(process.hrtime.bigint() - t0) / 1e6)
    if (add.exitCode !== 0) throw new Error(`in-process ADD: ${JSON.stringify(add.document)}`)
    t0 = process.hrtime.bigint()
    const del = await invokePlugin(env('DEL'), () => stdin)
    inProcess.del.push(Number(process.hrtime.bigint() - t0) / 1e6)
    if (del.exitCode !== 0) throw new Error(`in-process DEL: ${JSON.stringify(del.document)}`)
  }

  progress('kernel floor (ip link add/del veth)…')
  const kernel = { ipStart: [] as number[], add: [] as number[], del: [] as number[] }
  for (let i = 0; i < 30; i++) {
    kernel.ipStart.push((await timed(['ip', '-n', scratchNs.name, 'link', 'show', 'lo'], nodeEnv)).ms)
    kernel.add.push((await timed(['ip', '-n', scratchNs.name, 'link', 'add', 'bench0', 'type', 'veth', 'peer', 'name', 'bench1', 'netns', scratchPeer.name], nodeEnv)).ms)
    kernel.del.push((await timed(['ip', '-n', scratchNs.name, 'link', 'del', 'bench0'], nodeEnv)).ms)
  }

  const par = new Map(paths.map((p) => [p, { addPodsPerSec: 0, delPodsPerSec: 0, addLatency: [] as number[] }]))
  for (const p of [fast, ref, fallback]) {
    progress(`${PARALLEL}-way parallel: ${p.label}…`)
    const list = listOf(p, 'par')
    const adds = await pool(
      p.namespaces.map((ns, i) => () => cni(p, 'ADD', list, ns, id(p, 'par', i))),
      PARALLEL,
    )
    const dels = await pool(
      p.namespaces.map((ns, i) => () => cni(p, 'DEL', list, ns, id(p, 'par', i))),
      PARALLEL,
    )
    par.set(p, { addPodsPerSec: (PODS * 1000) / adds.wallMs, delPodsPerSec: (PODS * 1000) / dels.wallMs, addLatency: adds.results.map((r) => r.ms) })
  }

  progress('peak RSS of the entry…')
  const rss = { add: [] as number[], del: [] as number[] }
  for (let i = 0; i < RSS_SAMPLES; i++) {
    const list = JSON.stringify(pluginConfig(listOf(fast, 'rss')))
    for (const c of ['ADD', 'DEL'] as const) {
      const r = await peakRssMiB([fast.binary], envOf(fast, c, fast.namespaces[i]!, id(fast, 'rss', i)), dir, list)
      if (r.run.code !== 0) throw new Error(`fast ${c} under GNU time: ${r.run.stdout}${r.run.stderr}`)
      rss[c === 'ADD' ? 'add' : 'del'].push(r.mib)
    }
  }

  const s = summarize
  const results = {
    when: new Date().toISOString(),
    machine: { kernel: execFileSync('uname', ['-r']).toString().trim(), cpus: cpus().length, node: process.version },
    commit: gitCommit(),
    pods: PODS,
    parallel: PARALLEL,
    loadAverage: { atStart: loadAtStart, atEnd: loadavg()[0]! },
    paths: Object.fromEntries(
      paths.map((p) => [
        p.label,
        {
          add: s(seq.get(p)!.add),
          del: s(seq.get(p)!.del),
          parallelAddPodsPerSec: par.get(p)!.addPodsPerSec,
          parallelDelPodsPerSec: par.get(p)!.delPodsPerSec,
          parallelAddLatency: s(par.get(p)!.addLatency),
        },
      ]),
    ),
    baseline: { nodeStart: s(base.node), fastVersion: s(base.fastVersion), execTrue: s(base.exec) },
    inProcess: { add: s(inProcess.add), del: s(inProcess.del) },
    kernel: { ipStart: s(kernel.ipStart), vethAdd: s(kernel.add), vethDel: s(kernel.del) },
    entryPeakRssMiB: { add: s(rss.add), del: s(rss.del) },
    durationSec: 0,
  }
  results.durationSec = (Date.now() - started) / 1000
  report(results)
  const out = join(root, 'bench', 'results')
  mkdirSync(out, { recursive: true })
  const file = join(out, `fastpath-${results.when.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n')
  console.log(`\nJSON: ${file}  (${results.durationSec.toFixed(0)} s)`)
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD']).toString().trim()
  } catch {
    return undefined
  }
}

interface PathFigures {
  add: Summary
  del: Summary
  parallelAddPodsPerSec: number
  parallelDelPodsPerSec: number
  parallelAddLatency: Summary
}

function report(r: {
  pods: number
  parallel: number
  paths: Record<string, PathFigures>
  baseline: { nodeStart: Summary; fastVersion: Summary; execTrue: Summary }
  inProcess: { add: Summary; del: Summary }
  kernel: { ipStart: Summary; vethAdd: Summary; vethDel: Summary }
  entryPeakRssMiB: { add: Summary; del: Summary }
  loadAverage: { atStart: number; atEnd: number }
}): void {
  const f = r.paths['flatnet fast']!
  const g = r.paths['ptp+host-local']!
  const b = r.paths['flatnet fallback']!
  const ms = (x: number) => x.toFixed(1)
  const ratio = (a: number, c: number) => `${(a / c).toFixed(2)}x`
  const rows: string[][] = [
    ['', 'fast', 'ptp+host-local', 'fallback', 'fast/ref', 'fallback/ref'],
    ['ADD median (ms)', ms(f.add.median), ms(g.add.median), ms(b.add.median), ratio(f.add.median, g.add.median), ratio(b.add.median, g.add.median)],
    ['ADD p95 (ms)', ms(f.add.p95), ms(g.add.p95), ms(b.add.p95), ratio(f.add.p95, g.add.p95), ratio(b.add.p95, g.add.p95)],
    ['DEL median (ms)', ms(f.del.median), ms(g.del.median), ms(b.del.median), ratio(f.del.median, g.del.median), ratio(b.del.median, g.del.median)],
    ['DEL p95 (ms)', ms(f.del.p95), ms(g.del.p95), ms(b.del.p95), ratio(f.del.p95, g.del.p95), ratio(b.del.p95, g.del.p95)],
    [
      `${r.parallel}-way ADD (pods/s)`,
      f.parallelAddPodsPerSec.toFixed(0),
      g.parallelAddPodsPerSec.toFixed(0),
      b.parallelAddPodsPerSec.toFixed(0),
      ratio(f.parallelAddPodsPerSec, g.parallelAddPodsPerSec),
      ratio(b.parallelAddPodsPerSec, g.parallelAddPodsPerSec),
    ],
    [
      `${r.parallel}-way DEL (pods/s)`,
      f.parallelDelPodsPerSec.toFixed(0),
      g.parallelDelPodsPerSec.toFixed(0),
      b.parallelDelPodsPerSec.toFixed(0),
      ratio(f.parallelDelPodsPerSec, g.parallelDelPodsPerSec),
      ratio(b.parallelDelPodsPerSec, g.parallelDelPodsPerSec),
    ],
  ]
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)))
  console.log(`\nflatnet fast path vs ptp+host-local vs flatnet fallback — ${r.pods} pods sequential, ${r.parallel}-way parallel, env: CNI_* + PATH only`)
  for (const row of rows) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   '))
  console.log(
    `node -e 0 median ${ms(r.baseline.nodeStart.median)} ms; entry peak RSS ADD ${r.entryPeakRssMiB.add.max.toFixed(1)} MiB, DEL ${r.entryPeakRssMiB.del.max.toFixed(1)} MiB (max of ${r.entryPeakRssMiB.add.n})`,
  )
  console.log('\nwhere a fast ADD goes (medians, ms):')
  console.log(`  exec of a static binary (/bin/true, measured from this Node process) ${ms(r.baseline.execTrue.median)}`)
  console.log(`  entry start + socket round trip + VERSION in the daemon             ${ms(r.baseline.fastVersion.median)}`)
  console.log(`  the plugin's ADD in a warm process (netlink, store, kernel)          ${ms(r.inProcess.add.median)}   (DEL ${ms(r.inProcess.del.median)})`)
  console.log(
    `  of which the kernel's veth create alone (ip link add − ip start)     ${ms(r.kernel.vethAdd.median - r.kernel.ipStart.median)}   (delete ${ms(r.kernel.vethDel.median - r.kernel.ipStart.median)})`,
  )
  console.log(`  fast ADD total                                                       ${ms(f.add.median)}   (rest: ${ms(f.add.median - r.baseline.fastVersion.median - r.inProcess.add.median)})`)
  console.log(`load average ${r.loadAverage.atStart.toFixed(2)} → ${r.loadAverage.atEnd.toFixed(2)}`)
}

main().then(cleanUp, async (e) => {
  process.stderr.write(`fastpath bench: ${(e as Error).stack ?? e}\n`)
  await cleanUp()
  process.exit(1)
})
