// What NetworkPolicy costs the data plane: `node bench/run.mjs netpol-dataplane [--rounds N]
// [--connections N] [--seconds N]` (defaults 3 rounds, 2000 connections, 5 s; ~2 min).
//
// A real 2-node lab (file datastore): x/client on node1, x/server on node2. Two arms, interleaved
// round by round: no policy, and 100 NetworkPolicies that select both pods — 50 isolate the
// server for ingress and allow the client on a list of ports, 50 isolate the client for egress
// and allow the server on the same ports — so every new connection is judged twice (egress on
// node1, ingress on node2) against 100 rules' sets. Each arm measures:
// - connect rate: one process in the client pod opens and closes N TCP connections to the server
//   one after another (connect; the server closes at once) — the whole path a new connection takes
//   through both nodes' conntrack and policy chains, and back;
// - throughput: one iperf3 TCP stream for --seconds (bench/iperf.ts).
// Before each policy arm the verdicts are checked: the allowed port connects, a port the policies
// do not name is refused — so the arm is measured with the policies really in force.
import { loadavg } from 'node:os'
import { spawn } from 'node:child_process'
import type { ClusterObject, ObjectKey } from '../daemon/objects/index.js'
import { run } from '../e2e/helpers/index.js'
import { labApply, labDelete } from '../lab/objects.js'
import { clientServerLab, numberFlag, runBench, writeResult } from './clientServerLab.js'
import { IPERF_PORT, iperfOnce } from './iperf.js'
import { benchCleanup, median, progress } from './measure.js'

const ROUNDS = numberFlag('--rounds', 3)
const CONNECTIONS = numberFlag('--connections', 2000)
const SECONDS = numberFlag('--seconds', 5)
const POLICIES = 100
const ACCEPT_PORT = 9001
const CLOSED_PORT = 9002

const { teardown, cleanUp, forget } = benchCleanup()

/** Listens on both ports in the server pod; every connection is closed once accepted. */
const SERVER = `const net = require('node:net')
for (const port of process.argv.slice(1)) net.createServer((c) => { c.on('error', () => {}); c.end() }).listen(Number(port), () => process.stdout.write('listening ' + port + '\\n'))`

/** Opens N connections one after another, each closed by the server; prints the elapsed milliseconds. */
const CLIENT = `const net = require('node:net')
const [host, port, n] = process.argv.slice(1)
let left = Number(n)
const t0 = process.hrtime.bigint()
const next = () => {
  if (left-- === 0) return process.stdout.write(JSON.stringify({ ms: Number(process.hrtime.bigint() - t0) / 1e6 }) + '\\n')
  // The server closes first, so TIME_WAIT stays on its side: the client's ephemeral ports never run out.
  const c = net.connect({ host, port: Number(port) })
  c.on('error', (e) => { process.stderr.write('connect: ' + e.message + '\\n'); process.exit(1) })
  c.on('close', next)
}
next()`

function policies(): ClusterObject[] {
  const ports = [80, ACCEPT_PORT, IPERF_PORT, 8080, 8443, 5432, 6379, 27017, 3306, 11211].map((port) => ({ port }))
  const out: ClusterObject[] = []
  for (let i = 0; i < POLICIES / 2; i++) {
    out.push({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { namespace: 'x', name: `server-in-${i}` },
      spec: { podSelector: { matchLabels: { role: 'server' } }, ingress: [{ from: [{ podSelector: { matchLabels: { role: 'client' } } }], ports: ports.slice(0, 1 + ((i + 1) % ports.length)) }] },
    } as ClusterObject)
    out.push({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { namespace: 'x', name: `client-out-${i}` },
      spec: {
        podSelector: { matchLabels: { role: 'client' } },
        policyTypes: ['Egress'],
        egress: [{ to: [{ podSelector: { matchLabels: { role: 'server' } } }], ports: ports.slice(0, 1 + ((i + 1) % ports.length)) }],
      },
    } as ClusterObject)
  }
  return out
}

async function main(): Promise<void> {
  const { name, client, server } = await clientServerLab(teardown, 'netpoldp')
  const ref = { name }

  const srv = spawn('ip', ['netns', 'exec', server.namespace, process.execPath, '-e', SERVER, String(ACCEPT_PORT), String(CLOSED_PORT)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const stopServer = () => srv.kill('SIGKILL')
  teardown.teardown(stopServer)
  await new Promise<void>((resolve, reject) => {
    let out = ''
    srv.stdout!.on('data', (d) => {
      out += d
      if ((out.match(/listening/g) ?? []).length === 2) resolve()
    })
    srv.once('exit', () => reject(new Error(`connection server in ${server.namespace} exited: ${out}`)))
  })
  const connectOnce = async (port: number) =>
    (await run(['ip', 'netns', 'exec', client.namespace, process.execPath, '-e', CLIENT, server.address, String(port), '1'], { timeoutMs: 10_000 })).code === 0
  const connectRate = async () => {
    const r = await run(['ip', 'netns', 'exec', client.namespace, process.execPath, '-e', CLIENT, server.address, String(ACCEPT_PORT), String(CONNECTIONS)], { timeoutMs: 300_000 })
    if (r.code !== 0) throw new Error(`connect loop ${client.name} → ${server.address}:${ACCEPT_PORT}: ${r.stderr.trim()}`)
    return CONNECTIONS / ((JSON.parse(r.stdout) as { ms: number }).ms / 1000)
  }
  const until = async (what: string, check: () => Promise<boolean>) => {
    for (const end = Date.now() + 30_000; !(await check());) if (Date.now() > end) throw new Error(`${what}: not so after 30 s`)
  }
  const withPolicies = policies()
  const keys = withPolicies.map((p): ObjectKey => ({ kind: 'NetworkPolicy', namespace: 'x', name: p.metadata!.name! }))
  const samples = { none: { rate: [] as number[], gbps: [] as number[] }, policies: { rate: [] as number[], gbps: [] as number[] } }
  const load0 = loadavg()[0]!
  for (let round = 0; round < ROUNDS; round++) {
    for (const arm of ['none', 'policies'] as const) {
      if (arm === 'policies') {
        await labApply(ref, withPolicies)
        await until(`${POLICIES} policies in force (port ${CLOSED_PORT} refused)`, async () => !(await connectOnce(CLOSED_PORT)))
      } else {
        await labDelete(ref, round === 0 ? [] : keys)
        await until('no policy in force (port 9002 connects)', () => connectOnce(CLOSED_PORT))
      }
      if (!(await connectOnce(ACCEPT_PORT))) throw new Error(`${arm}: ${client.name} → ${server.name}:${ACCEPT_PORT} refused`)
      const rate = await connectRate()
      const sample = await iperfOnce({ netns: server.namespace, address: server.address }, { netns: client.namespace, address: client.address }, SECONDS, { teardown: teardown.teardown, forget })
      samples[arm].rate.push(rate)
      samples[arm].gbps.push(sample.gbps)
      progress(`round ${round + 1}/${ROUNDS}, ${arm === 'none' ? 'no policy' : `${POLICIES} policies`}: ${rate.toFixed(0)} connections/s, ${sample.gbps.toFixed(2)} Gbit/s`)
    }
  }
  const summary = {
    rounds: ROUNDS,
    connections: CONNECTIONS,
    seconds: SECONDS,
    load: [load0, loadavg()[0]!],
    none: { connectionsPerSecond: median(samples.none.rate), gbps: median(samples.none.gbps) },
    policies: { connectionsPerSecond: median(samples.policies.rate), gbps: median(samples.policies.gbps) },
    samples,
  }
  const rateRatio = summary.policies.connectionsPerSecond / summary.none.connectionsPerSecond
  const gbpsRatio = summary.policies.gbps / summary.none.gbps
  const perConnectionUs = (1 / summary.policies.connectionsPerSecond - 1 / summary.none.connectionsPerSecond) * 1e6
  progress(
    `medians over ${ROUNDS} rounds (load ${load0.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}): connect rate ${summary.none.connectionsPerSecond.toFixed(0)} → ${summary.policies.connectionsPerSecond.toFixed(0)} /s with ${POLICIES} policies (${rateRatio.toFixed(2)}×, ${perConnectionUs.toFixed(1)} µs per connection), throughput ${summary.none.gbps.toFixed(2)} → ${summary.policies.gbps.toFixed(2)} Gbit/s (${gbpsRatio.toFixed(2)}×)`,
  )
  writeResult('netpol-dataplane', { ...summary, rateRatio, gbpsRatio, perConnectionUs })
}

runBench(main, cleanUp)
