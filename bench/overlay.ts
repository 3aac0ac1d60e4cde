// Overlay benchmark (issue 12): single-stream TCP throughput pod→pod between nodes on different L2
// segments, through flatnet's VXLAN backend vs. the same VXLAN topology built by hand with iproute2;
// and, on a flat lab, flatnet's VXLAN (--backend vxlan) vs. flatnet's host-gw (what VXLAN costs).
//
//   node bench/run.mjs overlay [--rounds 2] [--seconds 5] [--reference-only]
//
// flatnet routed: a real routed lab (2 nodes on 2 segments joined by the lab's router, 1 pod each,
// backend auto → VXLAN between them): pods wired by the real `flatnet`, the VXLAN device,
// neighbour, FDB entries and routes programmed by the real flatnetd.
// reference routed: the same shape by hand in the same run — two bridges, a router namespace
// forwarding between 172.31.0.0/24 and 172.31.1.0/24, a node on each, on each node a VXLAN device
// (VNI 1, UDP 8472, nolearning, local = node address, MTU 1450, the node subnet's network address
// /32, a fixed MAC), per peer a permanent neighbour, an FDB entry and `<peer subnet> via <peer
// subnet network address> dev <vxlan> onlink`; one pod per node on a ptp-style veth with the MTU
// flatnet gave its pods (read from the lab, so both carry the same segment sizes).
// flatnet flat: two flat labs, `--backend vxlan` and `--backend host-gw`, 2 nodes × 1 pod each.
// iperf3 (`-t <seconds> -J`, one TCP stream) runs interleaved per round (reference, flatnet, vxlan
// flat, host-gw flat) so machine noise hits all alike; reported: the medians and the ratios.
// Traffic flows only between namespaces this run created. Prints a table, writes JSON to
// bench/results/, removes its labs, its namespaces and every iperf3 it started.
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TestNamespaces, run, runOk, type Netns } from '../e2e/helpers/index.js'
import { labStatus, labUp, type LabBackend, type LabStatus, type LabTopology } from '../lab/index.js'
import { labForTest, labSkipReason } from '../lab/testing/testLabs.js'
import { iperfOnce, type IperfEnd, type IperfSample } from './iperf.js'
import { benchCleanup, median, progress } from './measure.js'

const root = fileURLToPath(new URL('..', import.meta.url))

function option(name: string, fallback: number, max: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const value = Number(process.argv[i + 1])
  if (!Number.isInteger(value) || value < 1 || value > max) throw new Error(`--${name}: an integer from 1 to ${max}, got ${process.argv[i + 1]}`)
  return value
}

const ROUNDS = option('rounds', 2, 10)
const SECONDS = option('seconds', 5, 60)
const TARGET_RATIO = 0.95
const VXLAN = { vni: 1, port: 8472, device: 'flatnet.vxlan', overhead: 50 } as const

/** The reference: two segments and a router, the lab's style with other prefixes (its own namespaces anyway). */
const REFERENCE = {
  router: ['172.31.0.1', '172.31.1.1'],
  nodes: [
    { address: '172.31.0.11', gateway: '172.31.0.1', subnet: '10.245.0.0/24', network: '10.245.0.0', podGateway: '10.245.0.1', pod: '10.245.0.2', mac: '02:66:6e:00:00:01' },
    { address: '172.31.1.12', gateway: '172.31.1.1', subnet: '10.245.1.0/24', network: '10.245.1.0', podGateway: '10.245.1.1', pod: '10.245.1.2', mac: '02:66:6e:00:00:02' },
  ],
} as const

const { teardown, cleanUp, forget } = benchCleanup()

async function ipBatch(netns: Netns, commands: readonly string[], what: string): Promise<void> {
  await runOk(['ip', '-n', netns.name, '-batch', '-'], { input: commands.join('\n') + '\n', what })
}

async function sysctls(netns: Netns, settings: readonly string[]): Promise<void> {
  await runOk(['ip', 'netns', 'exec', netns.name, 'sysctl', '-qw', ...settings], { what: `sysctl ${settings.join(' ')} in ${netns.name}` })
}

/** The MTU of an interface in a namespace (what flatnet gave a pod's eth0). */
async function mtuOf(netns: string, ifname: string): Promise<number> {
  const { stdout } = await runOk(['ip', '-n', netns, '-j', 'link', 'show', 'dev', ifname], { what: `MTU of ${ifname} in ${netns}` })
  const mtu = (JSON.parse(stdout) as Array<{ mtu?: number }>)[0]?.mtu
  if (typeof mtu !== 'number') throw new Error(`MTU of ${ifname} in ${netns}: not in ${stdout.slice(0, 200)}`)
  return mtu
}

/** The routed VXLAN topology by hand: what flatnet's lab, plugin and daemon would build, minus flatnet. */
async function buildReference(nss: TestNamespaces, podMtu: number): Promise<{ server: IperfEnd; client: IperfEnd }> {
  const net = await nss.create('net')
  const router = await nss.create('router')
  await ipBatch(net, ['link set lo up', ...[0, 1].flatMap((s) => [`link add br${s} type bridge mcast_snooping 0`, `link set br${s} up`])], `reference bridges in ${net.name}`)
  await sysctls(router, ['net.ipv4.ip_forward=1'])
  await ipBatch(
    router,
    ['link set lo up', ...[0, 1].flatMap((s) => [`link add seg${s} type veth peer name r${s} netns ${net.name}`, `address add ${REFERENCE.router[s]}/24 dev seg${s}`, `link set seg${s} up`])],
    `reference router ${router.name}`,
  )
  await ipBatch(
    net,
    [0, 1].flatMap((s) => [`link set r${s} master br${s}`, `link set r${s} up`]),
    `plug the reference router in ${net.name}`,
  )
  const pods: IperfEnd[] = []
  const nodes: Netns[] = []
  for (const [i, spec] of REFERENCE.nodes.entries()) {
    const node = await nss.create(`node${i + 1}`)
    nodes.push(node)
    await sysctls(node, ['net.ipv4.ip_forward=1'])
    await ipBatch(net, [`link add n${i + 1} type veth peer name eth0 netns ${node.name}`, `link set n${i + 1} master br${i}`, `link set n${i + 1} up`], `plug reference node ${node.name}`)
    await ipBatch(
      node,
      [
        'link set lo up',
        `address add ${spec.address}/24 dev eth0`,
        'link set eth0 up',
        `route add default via ${spec.gateway} dev eth0`,
        `link add ${VXLAN.device} type vxlan id ${VXLAN.vni} local ${spec.address} dstport ${VXLAN.port} nolearning`,
        `link set ${VXLAN.device} address ${spec.mac} mtu ${1500 - VXLAN.overhead}`,
        `address add ${spec.network}/32 dev ${VXLAN.device}`,
        `link set ${VXLAN.device} up`,
      ],
      `configure reference node ${node.name}`,
    )
    const pod = await nss.create(`pod${i + 1}`)
    const hostVeth = `vp${i + 1}`
    await ipBatch(
      node,
      [
        `link add ${hostVeth} mtu ${podMtu} type veth peer name eth0 mtu ${podMtu} netns ${pod.name}`,
        `link set ${hostVeth} up`,
        `address add ${spec.podGateway}/32 dev ${hostVeth}`,
        `route add ${spec.pod}/32 dev ${hostVeth} scope link`,
      ],
      `host end of reference pod ${pod.name}`,
    )
    await ipBatch(
      pod,
      ['link set lo up', `address add ${spec.pod}/32 dev eth0`, 'link set eth0 up', `route add ${spec.podGateway} dev eth0 scope link`, `route add default via ${spec.podGateway} dev eth0`],
      `eth0 of reference pod ${pod.name}`,
    )
    pods.push({ netns: pod.name, address: spec.pod })
  }
  for (const [i, node] of nodes.entries()) {
    const peer = REFERENCE.nodes[1 - i]!
    // neighbour, then FDB (bridge(8): `ip -batch` has no fdb), then route: the kernel never has to resolve anything (issue 12's order)
    await ipBatch(node, [`neighbour add ${peer.network} lladdr ${peer.mac} dev ${VXLAN.device} nud permanent`], `VXLAN neighbour in reference node ${node.name}`)
    await runOk(['bridge', '-n', node.name, 'fdb', 'append', peer.mac, 'dev', VXLAN.device, 'dst', peer.address, 'self', 'permanent'], { what: `VXLAN FDB entry in reference node ${node.name}` })
    await ipBatch(node, [`route add ${peer.subnet} via ${peer.network} dev ${VXLAN.device} onlink`], `route to the peer's pods in reference node ${node.name}`)
  }
  return { server: pods[0]!, client: pods[1]! }
}

/** A 2-node × 1-pod lab; returns its two pods (server on node1, client on node2) and its status. */
async function buildLab(topology: LabTopology, backend: LabBackend | undefined): Promise<{ server: IperfEnd; client: IperfEnd; status: LabStatus }> {
  const skip = labSkipReason()
  if (skip) throw new Error(skip)
  const name = labForTest(teardown, 'vxlab')
  await labUp({ name, nodes: 2, podsPerNode: 1, datastore: 'file', topology, ...(backend ? { backend } : {}), daemonLogLevel: 'warn' })
  const status = await labStatus({ name })
  const podOf = (node: string) => {
    const p = status.pods.find((x) => x.node === node)
    if (!p) throw new Error(`lab ${name}: no pod on ${node}`)
    return { netns: p.namespace, address: p.address }
  }
  return { server: podOf('node1'), client: podOf('node2'), status }
}

type Label = 'reference-vxlan-routed' | 'flatnet-vxlan-routed' | 'flatnet-vxlan-flat' | 'flatnet-host-gw-flat'

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (network namespaces, veths)')
  const iperfVersion = (await run(['iperf3', '--version'])).stdout.split('\n')[0]?.trim()
  if (!iperfVersion) throw new Error('iperf3 is missing (apt-get install iperf3)')
  const started = Date.now()
  const loadAtStart = loadavg()[0]!
  if (process.argv.includes('--reference-only')) {
    // A sanity check of the hand-built topology alone (no lab, no comparison): one run, pod MTU 1450.
    const nss = new TestNamespaces('vxlab')
    teardown.teardown(() => nss.removeAll())
    const reference = await buildReference(nss, 1500 - VXLAN.overhead)
    const s = await iperfOnce(reference.server, reference.client, SECONDS, { teardown: teardown.teardown.bind(teardown), forget })
    console.log(`hand-built routed VXLAN, pod→pod: ${s.gbps.toFixed(2)} Gbit/s (${s.retransmits} retransmits)`)
    return
  }

  progress('bringing up a routed flatnet lab (2 nodes on 2 segments, backend auto)…')
  const routed = await buildLab('routed', undefined)
  const podMtu = await mtuOf(routed.server.netns, 'eth0')
  progress(`flatnet gave its pods MTU ${podMtu}; building the same VXLAN topology by hand…`)
  const nss = new TestNamespaces('vxlab')
  teardown.teardown(() => nss.removeAll())
  const reference = await buildReference(nss, podMtu)
  progress('bringing up flat labs with --backend vxlan and --backend host-gw…')
  const flatVxlan = await buildLab('flat', 'vxlan')
  const flatHostGw = await buildLab('flat', 'host-gw')

  const topologies: Array<{ label: Label; server: IperfEnd; client: IperfEnd }> = [
    { label: 'reference-vxlan-routed', ...reference },
    { label: 'flatnet-vxlan-routed', server: routed.server, client: routed.client },
    { label: 'flatnet-vxlan-flat', server: flatVxlan.server, client: flatVxlan.client },
    { label: 'flatnet-host-gw-flat', server: flatHostGw.server, client: flatHostGw.client },
  ]
  const samples: Array<IperfSample & { topology: Label; round: number }> = []
  for (let round = 1; round <= ROUNDS; round++) {
    for (const topo of topologies) {
      const s = { topology: topo.label, round, ...(await iperfOnce(topo.server, topo.client, SECONDS, { teardown: teardown.teardown.bind(teardown), forget })) }
      samples.push(s)
      progress(`round ${round} ${topo.label}: ${s.gbps.toFixed(2)} Gbit/s (${s.retransmits} retransmits)`)
    }
  }
  const gbps = (label: Label) => samples.filter((s) => s.topology === label).map((s) => s.gbps)
  const medians = Object.fromEntries(topologies.map((t) => [t.label, median(gbps(t.label))])) as Record<Label, number>
  const comparisons = [
    {
      id: 'vxlan-vs-hand-built',
      title: 'routed: flatnet VXLAN / hand-built VXLAN',
      ratio: medians['flatnet-vxlan-routed'] / medians['reference-vxlan-routed'],
      target: TARGET_RATIO,
    },
    { id: 'vxlan-vs-host-gw', title: 'flat: flatnet VXLAN / flatnet host-gw', ratio: medians['flatnet-vxlan-flat'] / medians['flatnet-host-gw-flat'] },
  ].map((c) => ({ ...c, met: c.target === undefined ? undefined : c.ratio >= c.target }))

  const results = {
    benchmark: 'overlay',
    when: new Date(started).toISOString(),
    durationSec: (Date.now() - started) / 1000,
    machine: { cpus: cpus().length, kernel: release(), loadAtStart, loadAtEnd: loadavg()[0]! },
    iperf3: iperfVersion,
    method: { rounds: ROUNDS, secondsPerRun: SECONDS, streams: 1, protocol: 'TCP', order: 'per round: reference, flatnet routed, flatnet vxlan flat, flatnet host-gw flat', podMtu },
    topologies: {
      reference: { ...reference, vxlan: VXLAN, nodes: REFERENCE.nodes },
      labs: [routed, flatVxlan, flatHostGw].map((l) => ({ lab: l.status.name, topology: l.status.topology, backend: l.status.backend, server: l.server, client: l.client })),
    },
    samples,
    medians,
    comparisons,
    target: { ratio: TARGET_RATIO, met: comparisons[0]!.met },
  }
  const table = topologies.map(
    (t) =>
      `${t.label.padEnd(24)} ${medians[t.label].toFixed(2).padStart(6)} Gbit/s  (${gbps(t.label)
        .map((x) => x.toFixed(1))
        .join(', ')})`,
  )
  console.log(`\noverlay — ${iperfVersion}, 1 TCP stream, ${SECONDS} s per run, ${ROUNDS} rounds interleaved; median (rounds); pod MTU ${podMtu}`)
  for (const line of table) console.log(line)
  for (const c of comparisons) console.log(`${c.title}: ${c.ratio.toFixed(3)}×${c.target ? ` (target ≥ ${c.target}×: ${c.met ? 'met' : 'NOT met'})` : ''}`)
  console.log(`${results.machine.cpus} CPUs, load ${loadAtStart.toFixed(2)} → ${results.machine.loadAtEnd.toFixed(2)} (a loaded machine makes these indicative only)`)
  const out = join(root, 'bench', 'results')
  mkdirSync(out, { recursive: true })
  const file = join(out, `overlay-${results.when.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n')
  console.log(`\nJSON: ${file}  (${results.durationSec.toFixed(0)} s)`)
}

main()
  .catch((err) => {
    console.error(`bench overlay: ${(err as Error).stack ?? err}`)
    process.exitCode = 1
  })
  .finally(() => cleanUp())
