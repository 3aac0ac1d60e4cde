// Data-plane benchmark (issues 3 and 9): single-stream TCP throughput pod→pod, on the same node
// and across nodes in IPv4, and across nodes in IPv6, through flatnet's wiring vs. the same
// topology built by hand with iproute2.
//
//   node bench/run.mjs dataplane [--rounds 2] [--seconds 5]
//
// flatnet: a real dual-stack lab (2 nodes × 2 pods): pods wired by the real `flatnet` binary, peer
// routes programmed by the real flatnetd (with its masquerade and anti-spoofing tables in place,
// as in production).
// reference: the same shape by hand in the same run — a bridge namespace, two node namespaces
// whose eth0 sits on the bridge (172.30.1.0/24 and fd00:172:31::/64), two pods per node on
// ptp-style veths (pod IP/32 and IP/128, `gw dev eth0 scope link` + `default via gw`; gateway
// /32 and /128 and a host route back on the host end; IPv6 addresses `nodad`), forwarding on in
// both families and `<other node's pod /24 and /64> via <other node IP>` on each node.
// iperf3 (`-t <seconds> -J`, one TCP stream) runs for each case and topology, interleaved
// reference, flatnet, reference, flatnet… so that machine noise hits both alike; reported is the
// median per case and the ratio flatnet/reference against the target (≥ 0.95×).
// Traffic flows only between namespaces this run created. Prints a table, writes JSON to
// bench/results/, removes the lab, its own namespaces and every iperf3 it started.
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TestNamespaces, run, runOk, type Netns } from '../e2e/helpers/index.js'
import { labStatus, labUp, type LabStatus } from '../lab/index.js'
import { labForTest, labSkipReason } from '../lab/testing/testLabs.js'
import { iperfOnce, type IperfSample } from './iperf.js'
import { benchCleanup, median, progress } from './measure.js'

const root = fileURLToPath(new URL('..', import.meta.url))

function option(name: string, fallback: number, max: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const v = Number(process.argv[i + 1])
  if (!Number.isInteger(v) || v < 1 || v > max) throw new Error(`--${name} needs an integer from 1 to ${max}`)
  return v
}

const ROUNDS = option('rounds', 2, 10)
const SECONDS = option('seconds', 5, 60)
const TARGET_RATIO = 0.95

/** The reference's node network and pod ranges: the lab's style, other prefixes (separate namespaces anyway). */
const REFERENCE = {
  nodeNetwork: '172.30.1.0/24',
  nodeNetwork6: 'fd00:172:31::/64',
  nodes: [
    { address: '172.30.1.11', podPrefix: '10.245.0', address6: 'fd00:172:31::11', podPrefix6: 'fd00:10:245:0' },
    { address: '172.30.1.12', podPrefix: '10.245.1', address6: 'fd00:172:31::12', podPrefix6: 'fd00:10:245:1' },
  ],
} as const

/** One end of a measurement: the pod's namespace and its address of each family. */
interface PodEnd {
  netns: string
  address: string
  address6: string
}

type Family = 4 | 6
const addressIn = (end: PodEnd, family: Family) => (family === 4 ? end.address : end.address6)

/** The three pods a topology offers: the server, a client on its node, a client on the other node. */
interface Topology {
  label: 'reference' | 'flatnet'
  server: PodEnd
  sameNodeClient: PodEnd
  crossNodeClient: PodEnd
}

type CaseId = 'same-node' | 'cross-node' | 'cross-node-ipv6'
const CASES: ReadonlyArray<{ id: CaseId; title: string; family: Family; client: (t: Topology) => PodEnd }> = [
  { id: 'same-node', title: 'pod→pod same node', family: 4, client: (t) => t.sameNodeClient },
  { id: 'cross-node', title: 'pod→pod across nodes', family: 4, client: (t) => t.crossNodeClient },
  { id: 'cross-node-ipv6', title: 'pod→pod across nodes, IPv6', family: 6, client: (t) => t.crossNodeClient },
]

interface Sample {
  topology: Topology['label']
  case: CaseId
  round: number
  from: string
  to: string
  /** Receiver-side goodput (iperf3 end.sum_received). */
  gbps: number
  retransmits: number
  senderCpuPercent: number
  receiverCpuPercent: number
}

const { teardown, cleanUp, forget } = benchCleanup()

/** iproute2 commands in one namespace, one process (`ip -n NS -batch -`). */
async function ipBatch(netns: Netns, commands: readonly string[], what: string): Promise<void> {
  await runOk(['ip', '-n', netns.name, '-batch', '-'], { input: commands.join('\n') + '\n', what })
}

/**
 * A new namespace starts with the kernel's IPv6 defaults (forwarding off, DAD on) whatever the
 * host has: set what the reference needs before its interfaces exist.
 */
async function sysctls(netns: Netns, settings: readonly string[]): Promise<void> {
  await runOk(['ip', 'netns', 'exec', netns.name, 'sysctl', '-qw', ...settings], { what: `sysctl ${settings.join(' ')} in ${netns.name}` })
}
const NO_DAD = ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']

/** The reference topology, built by hand: what flatnet's plugin and daemon would build, minus flatnet. */
async function buildReference(nss: TestNamespaces): Promise<Topology> {
  const net = await nss.create('net')
  // MLD snooping can drop the nodes' neighbour solicitations (see lab/topology.ts).
  await ipBatch(net, ['link set lo up', 'link add br0 type bridge mcast_snooping 0', 'link set br0 up'], `create the reference bridge in ${net.name}`)
  const pods: PodEnd[][] = []
  const nodes: Netns[] = []
  for (const [i, spec] of REFERENCE.nodes.entries()) {
    const node = await nss.create(`node${i + 1}`)
    nodes.push(node)
    // A new namespace copies the root's current ip_forward rather than a default: set it where we route.
    await sysctls(node, ['net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', ...NO_DAD])
    await ipBatch(net, [`link add n${i + 1} type veth peer name eth0 netns ${node.name}`, `link set n${i + 1} master br0`, `link set n${i + 1} up`], `plug reference node ${node.name} into the bridge`)
    await ipBatch(
      node,
      ['link set lo up', `address add ${spec.address}/24 dev eth0`, `address add ${spec.address6}/64 dev eth0 nodad`, 'link set eth0 up'],
      `configure eth0 of reference node ${node.name}`,
    )
    const gateway = `${spec.podPrefix}.1`
    const gateway6 = `${spec.podPrefix6}::1`
    const onNode: PodEnd[] = []
    for (const [j, letter] of ['a', 'b'].entries()) {
      const pod = await nss.create(`pod${i + 1}${letter}`)
      await sysctls(pod, NO_DAD)
      const address = `${spec.podPrefix}.${j + 2}`
      const address6 = `${spec.podPrefix6}::${j + 2}`
      const hostVeth = `vp${i + 1}${letter}`
      await ipBatch(
        node,
        [
          `link add ${hostVeth} type veth peer name eth0 netns ${pod.name}`,
          `link set ${hostVeth} up`,
          `address add ${gateway}/32 dev ${hostVeth}`,
          `address add ${gateway6}/128 dev ${hostVeth} nodad`,
          `route add ${address}/32 dev ${hostVeth} scope link`,
          `route add ${address6}/128 dev ${hostVeth}`,
        ],
        `wire the host end ${hostVeth} of reference pod ${pod.name}`,
      )
      await ipBatch(
        pod,
        [
          'link set lo up',
          `address add ${address}/32 dev eth0`,
          `address add ${address6}/128 dev eth0 nodad`,
          'link set eth0 up',
          `route add ${gateway} dev eth0 scope link`,
          `route add default via ${gateway} dev eth0`,
          `route add ${gateway6} dev eth0`,
          `route add default via ${gateway6} dev eth0`,
        ],
        `wire eth0 of reference pod ${pod.name}`,
      )
      onNode.push({ netns: pod.name, address, address6 })
    }
    pods.push(onNode)
  }
  for (const [i, node] of nodes.entries()) {
    const peer = REFERENCE.nodes[1 - i]!
    await ipBatch(
      node,
      [`route add ${peer.podPrefix}.0/24 via ${peer.address} dev eth0`, `route add ${peer.podPrefix6}::/64 via ${peer.address6} dev eth0`],
      `route to the peer's pods in reference node ${node.name}`,
    )
  }
  return { label: 'reference', server: pods[0]![0]!, sameNodeClient: pods[0]![1]!, crossNodeClient: pods[1]![0]! }
}

/** The flatnet side: a real dual-stack lab, pods wired by the plugin, routes by flatnetd. */
async function buildLab(): Promise<{ topology: Topology; status: LabStatus }> {
  const skip = labSkipReason()
  if (skip) throw new Error(skip)
  const name = labForTest(teardown, 'dataplane')
  await labUp({ name, nodes: 2, podsPerNode: 2, datastore: 'file', ipFamily: 'dual', daemonLogLevel: 'warn' })
  const status = await labStatus({ name })
  const [first, second] = status.nodes
  if (!first || !second) throw new Error(`lab ${name}: expected 2 nodes, status shows ${status.nodes.length}`)
  const podsOf = (node: string) =>
    status.pods
      .filter((p) => p.node === node)
      .map((p) => {
        const address6 = p.addresses.find((a) => a.includes(':'))
        if (!address6) throw new Error(`lab ${name}: pod ${p.name} has no IPv6 address (${p.addresses.join(', ')})`)
        return { netns: p.namespace, address: p.address, address6 }
      })
  const [server, sameNodeClient] = podsOf(first.name)
  const [crossNodeClient] = podsOf(second.name)
  if (!server || !sameNodeClient || !crossNodeClient) throw new Error(`lab ${name}: expected 2 pods per node, status shows ${status.pods.length} pods`)
  return { topology: { label: 'flatnet', server, sameNodeClient, crossNodeClient }, status }
}

/** One TCP stream for SECONDS from `client` to `server` in one family (bench/iperf.ts); both iperf3 processes are gone on return. */
function iperf(serverEnd: PodEnd, clientEnd: PodEnd, family: Family): Promise<IperfSample> {
  return iperfOnce({ netns: serverEnd.netns, address: addressIn(serverEnd, family) }, { netns: clientEnd.netns, address: addressIn(clientEnd, family) }, SECONDS, {
    teardown: teardown.teardown,
    forget,
  })
}

interface CaseResult {
  case: CaseId
  title: string
  referenceGbps: number[]
  flatnetGbps: number[]
  referenceMedian: number
  flatnetMedian: number
  ratio: number
  met: boolean
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (network namespaces, veths)')
  const iperfVersion = (await run(['iperf3', '--version'])).stdout.split('\n')[0]?.trim()
  if (!iperfVersion) throw new Error('iperf3 is missing (apt-get install iperf3)')
  const started = Date.now()
  const loadAtStart = loadavg()[0]!

  const nss = new TestNamespaces('dataplane')
  teardown.teardown(() => nss.removeAll())
  progress('building the reference topology by hand…')
  const reference = await buildReference(nss)
  progress('bringing up a 2-node × 2-pod flatnet lab…')
  const lab = await buildLab()
  const flatnet = lab.topology

  const samples: Sample[] = []
  for (let round = 1; round <= ROUNDS; round++) {
    for (const c of CASES) {
      for (const topology of [reference, flatnet]) {
        const s = { topology: topology.label, case: c.id, round, ...(await iperf(topology.server, c.client(topology), c.family)) }
        samples.push(s)
        progress(`round ${round} ${c.title} ${topology.label}: ${s.gbps.toFixed(2)} Gbit/s (${s.retransmits} retransmits)`)
      }
    }
  }

  const cases: CaseResult[] = CASES.map((c) => {
    const of = (label: Topology['label']) => samples.filter((s) => s.case === c.id && s.topology === label).map((s) => s.gbps)
    const referenceGbps = of('reference')
    const flatnetGbps = of('flatnet')
    const ratio = median(flatnetGbps) / median(referenceGbps)
    return { case: c.id, title: c.title, referenceGbps, flatnetGbps, referenceMedian: median(referenceGbps), flatnetMedian: median(flatnetGbps), ratio, met: ratio >= TARGET_RATIO }
  })

  const results = {
    benchmark: 'dataplane',
    when: new Date(started).toISOString(),
    durationSec: (Date.now() - started) / 1000,
    machine: { cpus: cpus().length, kernel: release(), loadAtStart, loadAtEnd: loadavg()[0]! },
    iperf3: iperfVersion,
    method: { rounds: ROUNDS, secondsPerRun: SECONDS, streams: 1, protocol: 'TCP', order: 'per round and case: reference, then flatnet' },
    topologies: {
      reference: { ...reference, nodeNetworks: [REFERENCE.nodeNetwork, REFERENCE.nodeNetwork6], nodes: REFERENCE.nodes },
      flatnet: {
        ...flatnet,
        lab: lab.status.name,
        nodeNetworks: lab.status.network.cidrs,
        nodes: lab.status.nodes.map((n) => ({ name: n.name, addresses: n.addresses, subnets: n.subnets })),
      },
    },
    samples,
    cases,
    target: { ratio: TARGET_RATIO, met: cases.every((c) => c.met) },
  }
  report(results)
  const out = join(root, 'bench', 'results')
  mkdirSync(out, { recursive: true })
  const file = join(out, `dataplane-${results.when.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n')
  console.log(`\nJSON: ${file}  (${results.durationSec.toFixed(0)} s)`)
}

function report(r: { cases: CaseResult[]; iperf3: string; machine: { cpus: number; loadAtStart: number; loadAtEnd: number }; target: { met: boolean } }): void {
  const gbps = (xs: number[]) => `${median(xs).toFixed(2)} (${xs.map((x) => x.toFixed(1)).join(', ')})`
  const head = ['case', 'reference Gbit/s', 'flatnet Gbit/s', 'flatnet/ref', `≥ ${TARGET_RATIO}×`]
  const rows = r.cases.map((c) => [c.title, gbps(c.referenceGbps), gbps(c.flatnetGbps), `${c.ratio.toFixed(3)}×`, c.met ? 'met' : 'NOT met'])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  console.log(`\ndata plane — ${r.iperf3}, 1 TCP stream, ${SECONDS} s per run, ${ROUNDS} rounds interleaved (reference, flatnet, …); median (rounds)`)
  for (const row of [head, ...rows]) console.log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('   '))
  console.log(
    `\nreference: the same veth/route topology built by hand with iproute2 in this run. ${r.machine.cpus} CPUs, load ${r.machine.loadAtStart.toFixed(2)} → ${r.machine.loadAtEnd.toFixed(2)}.`,
  )
  console.log(`target (issues 3 and 9): flatnet ≥ ${TARGET_RATIO}× the reference in every case → ${r.target.met ? 'met' : 'NOT met'}`)
}

main()
  .catch((err) => {
    console.error(`bench dataplane: ${(err as Error).stack ?? err}`)
    process.exitCode = 1
  })
  .finally(() => cleanUp())
