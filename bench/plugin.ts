// Plugin benchmark: flatnet vs the Go reference (ptp + host-local), side by side in one run, on
// real namespaces, each call made like a runtime makes it (a clean environment: CNI_* + PATH;
// this machine's NODE_EXTRA_CA_CERTS alone adds ~80 ms to every Node start, and runtimes do not set it).
//
//   node bench/run.mjs plugin [--pods 100] [--parallel 32]
//
// Measures, interleaving the plugins call by call so that machine noise hits both alike:
//   - sequential ADD and DEL latency over --pods pods (median, p95)
//   - --parallel-way parallel ADD (and DEL) throughput over --pods pods, two alternating rounds
//   - the baselines of the same run: `node -e 0` (process start) and `flatnet` VERSION
//     (start + loading the bundle), plus the kernel's own veth create/delete cost
//   - peak RSS of single plugin calls (GNU time)
// Prints a table, writes JSON to bench/results/, removes every namespace, veth and file it made.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
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
import { benchCleanup, childrenCpuMs, peakRssMiB, pool, progress, summarize, timed, type Summary, type Timed } from './measure.js'

const root = fileURLToPath(new URL('..', import.meta.url))

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const v = Number(process.argv[i + 1])
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer`)
  return v
}

const PODS = option('pods', 100)
if (PODS < 1) throw new Error('--pods: at least 1')
const PARALLEL = option('parallel', 32)
const RSS_SAMPLES = 5
// pods of each phase are reused as the batch's namespaces, so a batch can be no larger
const CPU_BATCH = Math.min(30, PODS)
const WARMUP = 3
if (PODS > 250) throw new Error('--pods: at most 250 (one /24 per plugin and phase)')

interface Plugin {
  label: string
  binary: string
  conflist(spec: { name: string; range: TestRange; dataDir: string }): Conflist
  namespaces: Netns[]
  range: TestRange
}

/** The runtime's call: CNI_* + PATH, config on stdin; a failure aborts the benchmark. */
async function cni(plugin: Plugin, command: CniCommand, list: Conflist, ns: Netns, containerId: string): Promise<Timed> {
  const env = runtimeEnv(command, { CNI_CONTAINERID: containerId, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', CNI_PATH: REFERENCE_CNI_DIR })
  const run = await timed([plugin.binary], env, JSON.stringify(pluginConfig(list)))
  if (run.code !== 0 || (command === 'ADD' && !run.stdout.includes('"ips"'))) {
    throw new Error(`${plugin.label} ${command} ${containerId}: exit ${run.code}: ${run.stdout.trim()} ${run.stderr.trim()}`)
  }
  return run
}

const { teardown, cleanUp } = benchCleanup()

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (network namespaces, veths)')
  for (const f of [flatnetBinary, join(REFERENCE_CNI_DIR, 'ptp'), join(REFERENCE_CNI_DIR, 'host-local'), '/usr/bin/time']) {
    if (!existsSync(f)) throw new Error(`${f} is missing (./build.sh; scripts/install-deps.sh)`)
  }
  const started = Date.now()
  const loadAtStart = loadavg()[0]!
  const { prefix, dir } = testDir(teardown, 'bench')
  const nss = new TestNamespaces('bench')
  teardown.teardown(() => nss.removeAll())
  const [refRange, flatRange] = testRanges(2) as [TestRange, TestRange]
  const ref: Plugin = { label: 'ptp+host-local', binary: join(REFERENCE_CNI_DIR, 'ptp'), conflist: referenceConflist, namespaces: [], range: refRange }
  const flat: Plugin = { label: 'flatnet', binary: flatnetBinary, conflist: flatnetConflist, namespaces: [], range: flatRange }
  const plugins = [flat, ref]

  progress(`creating ${2 * PODS + 2} namespaces…`)
  for (let i = 0; i < PODS; i++) {
    ref.namespaces.push(await nss.create(`r${i}`))
    flat.namespaces.push(await nss.create(`f${i}`))
  }
  const scratchNs = await nss.create('kernel')
  const scratchPeer = await nss.create('kpeer')

  const phaseList = (p: Plugin, phase: string): Conflist => p.conflist({ name: `${prefix}-${p === flat ? 'flat' : 'ref'}-${phase}`, range: p.range, dataDir: join(dir, phase) })
  const id = (p: Plugin, phase: string, i: number) => `${prefix}-${p === flat ? 'f' : 'r'}-${phase}-${i}`

  const nodeEnv = { PATH: runtimeEnv('VERSION').PATH! }
  const versionEnv = runtimeEnv('VERSION')
  const nodeStart = () => timed([process.execPath, '-e', '0'], nodeEnv)
  const flatVersion = () => timed([flatnetBinary], versionEnv)
  // Loading the two native modules flatnet ships (dist/lib) into a bare node: their share of a start.
  const natives = ['netlink.node', 'netns.node'].map((f) => join(flatnetBinary, '..', '..', 'lib', f))
  const nativeLoad = () => timed([process.execPath, '-e', natives.map((f) => `require(${JSON.stringify(f)})`).join(';')], nodeEnv)

  // Warm the page cache and the kernel paths; not counted.
  progress('warming up…')
  for (let i = 0; i < WARMUP; i++) {
    await nodeStart()
    await flatVersion()
    for (const p of plugins) {
      const list = phaseList(p, 'warm')
      await cni(p, 'ADD', list, p.namespaces[i]!, id(p, 'warm', i))
      await cni(p, 'DEL', list, p.namespaces[i]!, id(p, 'warm', i))
    }
  }

  // Sequential: per pod, one ADD of each plugin and one of each baseline, interleaved.
  progress(`sequential ADD of ${PODS} pods per plugin…`)
  const seq = { add: new Map<Plugin, number[]>(), del: new Map<Plugin, number[]>() }
  for (const p of plugins) {
    seq.add.set(p, [])
    seq.del.set(p, [])
  }
  const baseline = { node: [] as number[], version: [] as number[], natives: [] as number[] }
  for (let i = 0; i < PODS; i++) {
    for (const p of i % 2 ? plugins : [...plugins].reverse()) {
      seq.add.get(p)!.push((await cni(p, 'ADD', phaseList(p, 'seq'), p.namespaces[i]!, id(p, 'seq', i))).ms)
    }
    baseline.node.push((await nodeStart()).ms)
    baseline.version.push((await flatVersion()).ms)
    baseline.natives.push((await nativeLoad()).ms)
  }
  progress(`sequential DEL of ${PODS} pods per plugin…`)
  for (let i = 0; i < PODS; i++) {
    for (const p of i % 2 ? plugins : [...plugins].reverse()) {
      seq.del.get(p)!.push((await cni(p, 'DEL', phaseList(p, 'seq'), p.namespaces[i]!, id(p, 'seq', i))).ms)
    }
  }

  // Kernel floor: a veth pair across two namespaces (like host ↔ pod) created and deleted by `ip`,
  // minus what starting `ip` costs.
  progress('kernel floor (ip link add/del veth)…')
  const kernel = { ipStart: [] as number[], add: [] as number[], del: [] as number[] }
  for (let i = 0; i < 30; i++) {
    kernel.ipStart.push((await timed(['ip', '-n', scratchNs.name, 'link', 'show', 'lo'], nodeEnv)).ms)
    kernel.add.push((await timed(['ip', '-n', scratchNs.name, 'link', 'add', 'bench0', 'type', 'veth', 'peer', 'name', 'bench1', 'netns', scratchPeer.name], nodeEnv)).ms)
    kernel.del.push((await timed(['ip', '-n', scratchNs.name, 'link', 'del', 'bench0'], nodeEnv)).ms)
  }

  // CPU per call: batches of one kind of call, children's CPU time before and after.
  progress(`CPU time per call (batches of ${CPU_BATCH})…`)
  const cpuPerCall = async (calls: (i: number) => Promise<unknown>): Promise<number> => {
    const before = childrenCpuMs()
    for (let i = 0; i < CPU_BATCH; i++) await calls(i)
    return (childrenCpuMs() - before) / CPU_BATCH
  }
  const cpu = {
    nodeStart: await cpuPerCall(() => nodeStart()),
    nodeWithNatives: await cpuPerCall(() => nativeLoad()),
    flatnetVersion: await cpuPerCall(() => flatVersion()),
    add: {} as Record<string, number>,
    del: {} as Record<string, number>,
  }
  for (const p of plugins) {
    const list = phaseList(p, 'cpu')
    cpu.add[p.label] = await cpuPerCall((i) => cni(p, 'ADD', list, p.namespaces[i]!, id(p, 'cpu', i)))
    cpu.del[p.label] = await cpuPerCall((i) => cni(p, 'DEL', list, p.namespaces[i]!, id(p, 'cpu', i)))
  }

  // Parallel: PARALLEL calls in flight; two rounds, alternating which plugin goes first.
  const par = { add: new Map<Plugin, number[]>(), del: new Map<Plugin, number[]>(), addLatency: new Map<Plugin, number[]>() }
  for (const p of plugins) {
    par.add.set(p, [])
    par.del.set(p, [])
    par.addLatency.set(p, [])
  }
  for (const round of [0, 1]) {
    for (const p of round ? [...plugins].reverse() : plugins) {
      progress(`parallel round ${round + 1}: ${p.label}…`)
      const list = phaseList(p, `par${round}`)
      const adds = await pool(
        p.namespaces.map((ns, i) => () => cni(p, 'ADD', list, ns, id(p, `par${round}`, i))),
        PARALLEL,
      )
      par.add.get(p)!.push((PODS * 1000) / adds.wallMs)
      par.addLatency.get(p)!.push(...adds.results.map((r) => r.ms))
      const dels = await pool(
        p.namespaces.map((ns, i) => () => cni(p, 'DEL', list, ns, id(p, `par${round}`, i))),
        PARALLEL,
      )
      par.del.get(p)!.push((PODS * 1000) / dels.wallMs)
    }
  }

  // Peak RSS of single calls.
  progress('peak RSS…')
  const rss = { add: new Map<Plugin, number[]>(), del: new Map<Plugin, number[]>(), node: [] as number[] }
  for (const p of plugins) {
    rss.add.set(p, [])
    rss.del.set(p, [])
  }
  for (let i = 0; i < RSS_SAMPLES; i++) {
    rss.node.push((await peakRssMiB([process.execPath, '-e', '0'], nodeEnv, dir)).mib)
    for (const p of plugins) {
      const list = phaseList(p, 'rss')
      const env = (command: CniCommand) => runtimeEnv(command, { CNI_CONTAINERID: id(p, 'rss', i), CNI_NETNS: p.namespaces[i]!.path, CNI_IFNAME: 'eth0', CNI_PATH: REFERENCE_CNI_DIR })
      const add = await peakRssMiB([p.binary], env('ADD'), dir, JSON.stringify(pluginConfig(list)))
      if (add.run.code !== 0) throw new Error(`${p.label} ADD under GNU time: ${add.run.stdout}${add.run.stderr}`)
      rss.add.get(p)!.push(add.mib)
      const del = await peakRssMiB([p.binary], env('DEL'), dir, JSON.stringify(pluginConfig(list)))
      if (del.run.code !== 0) throw new Error(`${p.label} DEL under GNU time: ${del.run.stdout}${del.run.stderr}`)
      rss.del.get(p)!.push(del.mib)
    }
  }

  const s = (xs: number[]) => summarize(xs)
  const results = {
    when: new Date().toISOString(),
    machine: { kernel: execFileSync('uname', ['-r']).toString().trim(), cpus: cpus().length, node: process.version },
    commit: gitCommit(),
    pods: PODS,
    parallel: PARALLEL,
    baseline: { nodeStart: s(baseline.node), flatnetVersion: s(baseline.version), nodeWithNatives: s(baseline.natives) },
    kernel: { ipStart: s(kernel.ipStart), vethAdd: s(kernel.add), vethDel: s(kernel.del) },
    cpuMsPerCall: cpu,
    loadAverage: { atStart: loadAtStart, atEnd: loadavg()[0]! },
    plugins: Object.fromEntries(
      plugins.map((p) => [
        p.label,
        {
          add: s(seq.add.get(p)!),
          del: s(seq.del.get(p)!),
          parallelAddPodsPerSec: par.add.get(p)!,
          parallelDelPodsPerSec: par.del.get(p)!,
          parallelAddLatency: s(par.addLatency.get(p)!),
          peakRssMiB: { add: s(rss.add.get(p)!), del: s(rss.del.get(p)!) },
        },
      ]),
    ),
    nodeStartPeakRssMiB: s(rss.node),
    durationSec: (Date.now() - started) / 1000,
  }
  report(results)
  const out = join(root, 'bench', 'results')
  mkdirSync(out, { recursive: true })
  const file = join(out, `plugin-${results.when.replace(/[:.]/g, '-')}.json`)
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

interface PluginFigures {
  add: Summary
  del: Summary
  parallelAddPodsPerSec: number[]
  parallelDelPodsPerSec: number[]
  parallelAddLatency: Summary
  peakRssMiB: { add: Summary; del: Summary }
}

function report(r: {
  pods: number
  parallel: number
  baseline: { nodeStart: Summary; flatnetVersion: Summary; nodeWithNatives: Summary }
  kernel: { ipStart: Summary; vethAdd: Summary; vethDel: Summary }
  cpuMsPerCall: { nodeStart: number; nodeWithNatives: number; flatnetVersion: number; add: Record<string, number>; del: Record<string, number> }
  loadAverage: { atStart: number; atEnd: number }
  machine: { cpus: number }
  plugins: Record<string, PluginFigures>
  nodeStartPeakRssMiB: Summary
}): void {
  const f = r.plugins['flatnet']!
  const g = r.plugins['ptp+host-local']!
  const node = r.baseline.nodeStart.median
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
  const ms = (x: number) => x.toFixed(1)
  const rows: string[][] = [
    ['', 'flatnet', 'ptp+host-local', 'flatnet/ref', 'flatnet − node'],
    ['ADD median (ms)', ms(f.add.median), ms(g.add.median), `${(f.add.median / g.add.median).toFixed(2)}x`, `${f.add.median - node >= 0 ? '+' : ''}${ms(f.add.median - node)}`],
    ['ADD p95 (ms)', ms(f.add.p95), ms(g.add.p95), `${(f.add.p95 / g.add.p95).toFixed(2)}x`, `+${ms(f.add.p95 - node)}`],
    ['DEL median (ms)', ms(f.del.median), ms(g.del.median), `${(f.del.median / g.del.median).toFixed(2)}x`, `${f.del.median - node >= 0 ? '+' : ''}${ms(f.del.median - node)}`],
    ['DEL p95 (ms)', ms(f.del.p95), ms(g.del.p95), `${(f.del.p95 / g.del.p95).toFixed(2)}x`, `+${ms(f.del.p95 - node)}`],
    [
      `${r.parallel}-way ADD (pods/s)`,
      mean(f.parallelAddPodsPerSec).toFixed(0),
      mean(g.parallelAddPodsPerSec).toFixed(0),
      `${(mean(f.parallelAddPodsPerSec) / mean(g.parallelAddPodsPerSec)).toFixed(2)}x`,
      '',
    ],
    [`${r.parallel}-way ADD latency med/p95`, `${ms(f.parallelAddLatency.median)}/${ms(f.parallelAddLatency.p95)}`, `${ms(g.parallelAddLatency.median)}/${ms(g.parallelAddLatency.p95)}`, '', ''],
    [
      `${r.parallel}-way DEL (pods/s)`,
      mean(f.parallelDelPodsPerSec).toFixed(0),
      mean(g.parallelDelPodsPerSec).toFixed(0),
      `${(mean(f.parallelDelPodsPerSec) / mean(g.parallelDelPodsPerSec)).toFixed(2)}x`,
      '',
    ],
    [
      'CPU per ADD (ms, user+sys)',
      ms(r.cpuMsPerCall.add['flatnet']!),
      ms(r.cpuMsPerCall.add['ptp+host-local']!),
      `${(r.cpuMsPerCall.add['flatnet']! / r.cpuMsPerCall.add['ptp+host-local']!).toFixed(2)}x`,
      `+${ms(r.cpuMsPerCall.add['flatnet']! - r.cpuMsPerCall.nodeStart)}`,
    ],
    [
      'CPU per DEL (ms, user+sys)',
      ms(r.cpuMsPerCall.del['flatnet']!),
      ms(r.cpuMsPerCall.del['ptp+host-local']!),
      `${(r.cpuMsPerCall.del['flatnet']! / r.cpuMsPerCall.del['ptp+host-local']!).toFixed(2)}x`,
      `+${ms(r.cpuMsPerCall.del['flatnet']! - r.cpuMsPerCall.nodeStart)}`,
    ],
    ['peak RSS ADD (MiB, max)', f.peakRssMiB.add.max.toFixed(1), g.peakRssMiB.add.max.toFixed(1), '', `node -e 0: ${r.nodeStartPeakRssMiB.max.toFixed(1)}`],
    ['peak RSS DEL (MiB, max)', f.peakRssMiB.del.max.toFixed(1), g.peakRssMiB.del.max.toFixed(1), '', ''],
  ]
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)))
  console.log(`\nflatnet vs ptp+host-local — ${r.pods} pods sequential, ${r.parallel}-way parallel (2 rounds), env: CNI_* + PATH only`)
  for (const row of rows) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   '))

  const version = r.baseline.flatnetVersion.median
  console.log(`\nbaselines (same run): node -e 0 median ${ms(node)} ms (p95 ${ms(r.baseline.nodeStart.p95)}); flatnet VERSION median ${ms(version)} ms`)
  const c = r.cpuMsPerCall
  console.log(
    `CPU per call (ms): node -e 0 ${ms(c.nodeStart)}; + flatnet's natives ${ms(c.nodeWithNatives)}; flatnet VERSION ${ms(c.flatnetVersion)}; ` +
      `flatnet ADD ${ms(c.add['flatnet']!)} = start ${ms(c.nodeStart)} + load ${ms(c.flatnetVersion - c.nodeStart)} + work ${ms(c.add['flatnet']! - c.flatnetVersion)}`,
  )
  const kAdd = Math.max(0, r.kernel.vethAdd.median - r.kernel.ipStart.median)
  const kDel = Math.max(0, r.kernel.vethDel.median - r.kernel.ipStart.median)
  const nat = r.baseline.nodeWithNatives.median - node
  console.log("where flatnet's median time goes (medians, ms):")
  console.log(`  ADD ${ms(f.add.median)} = process start ${ms(node)} + load until VERSION answers ${ms(version - node)} + netlink/fs/kernel work ${ms(f.add.median - version)}`)
  console.log(`  DEL ${ms(f.del.median)} = process start ${ms(node)} + load until VERSION answers ${ms(version - node)} + netlink/fs/kernel work ${ms(f.del.median - version)}`)
  console.log(`  for scale: loading dist/lib/{netlink,netns}.node into a bare node costs ${ms(nat)}; the kernel alone (via ip) creates a veth pair in ${ms(kAdd)} and deletes it in ${ms(kDel)}`)

  // Only the load found at start says something about other work: by the end the benchmark's own
  // parallel phase is in the load average too.
  const busy = r.loadAverage.atStart
  if (busy > r.machine.cpus) {
    console.log(
      `\nWARNING: the machine was busy (load average ${busy.toFixed(1)} on ${r.machine.cpus} cores): wall-clock figures are noisy; the CPU rows are steadier. Re-run on a quiet machine for the README.`,
    )
  }
  const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED')
  console.log('targets (issue 2):')
  console.log(`  ADD median ≤ node -e 0 + 10 ms: ${ms(f.add.median)} ≤ ${ms(node + 10)} → ${verdict(f.add.median <= node + 10)}`)
  console.log(`  DEL median ≤ node -e 0 + 25 ms: ${ms(f.del.median)} ≤ ${ms(node + 25)} → ${verdict(f.del.median <= node + 25)}`)
  const rssMax = Math.max(f.peakRssMiB.add.max, f.peakRssMiB.del.max)
  console.log(`  peak RSS of one call ≤ 60 MB: ${rssMax.toFixed(1)} MiB → ${verdict(rssMax * 1.048576 <= 60)}`)
}

try {
  await main()
} finally {
  await cleanUp()
}
