// Nodes of the lab: a namespace on the node network, its own directories, a real flatnetd.
import { rm } from 'node:fs/promises'
import { flatnetBinary } from './binaries.js'
import { daemonFlags, daemonRunning, startDaemon, stopDaemon, waitDaemonReady, type DaemonSettings } from './daemon.js'
import { cleanEnvArgv, inNetns, nodeBinary, runOk, sleep } from './exec.js'
import { VXLAN_DEVICE_PREFIX, backendOfRoute, byDestination, flatnetRoutes, type PeerBackend, type PeerRoute } from './kernelView.js'
import {
  DEFAULT_BACKEND,
  LAB_NETWORK,
  bridgePortName,
  familiesOf,
  hostOfAddress,
  labAddress,
  nodeLayout,
  nodeName,
  nodeNetns,
  segmentAddress,
  segmentOfNode,
  serviceCidrsOf,
  type LabBackend,
  type LabLayout,
} from './layout.js'
import { deleteNetns } from './namespaces.js'
import { attachNode } from './topology.js'
import type { LabNode, LabState } from './state.js'

export { daemonFlags }

const familyOf = (text: string) => (text.includes(':') ? 6 : 4)

export function daemonSettings(state: LabState, node: LabNode): DaemonSettings {
  // An IPv4 lab leaves the node IP to flatnetd's detection (the default route's interface), as
  // most installs do; with IPv6 the lab names each node's addresses, one per family.
  const nodeIPs = state.ipFamily === 'ipv4' ? undefined : node.addresses
  return { clusterCidrs: state.clusterCidrs, serviceCidrs: serviceCidrsOf(state.ipFamily), nodeIPs, datastore: state.datastore, logLevel: state.daemonLogLevel, backend: state.backend }
}

/** The backend the lab's daemons run: the one given to `lab up`, else flatnetd's default. */
export function effectiveBackend(state: Pick<LabState, 'backend'>): LabBackend {
  return state.backend ?? DEFAULT_BACKEND
}

/** Two nodes are on-link when they share an L2 segment (a flat lab has one). */
export function onLink(a: Pick<LabNode, 'segment'>, b: Pick<LabNode, 'segment'>): boolean {
  return (a.segment ?? 0) === (b.segment ?? 0)
}

/**
 * What a node should use to reach a peer: host-gw needs the peer on-link (flatnetd leaves an
 * off-link peer without a route), vxlan is used for every peer, auto picks host-gw on-link and
 * VXLAN otherwise (the daemon contract of issue 12).
 */
export function expectedBackend(backend: LabBackend, peerOnLink: boolean): PeerBackend {
  if (backend === 'vxlan') return 'vxlan'
  if (backend === 'host-gw') return peerOnLink ? 'host-gw' : 'none'
  return peerOnLink ? 'host-gw' : 'vxlan'
}

/** The next node of the lab: fresh id, the lowest free host number of the node network (same in every family). */
export function planNode(lab: LabLayout, state: LabState): LabNode {
  const id = state.nextNodeId++
  const families = familiesOf(state.ipFamily)
  // Host numbers are unique across segments too (node2 is 172.30.1.12): a node reads the same
  // whatever segment it is on.
  const used = new Set(state.nodes.map((n) => hostOfAddress(n.address)))
  let host = LAB_NETWORK.firstNodeHost
  while (host <= LAB_NETWORK.lastNodeHost && used.has(host)) host++
  if (host > LAB_NETWORK.lastNodeHost) throw new Error(`add a node to lab ${lab.name}: the node network ${state.network.cidrs.join(', ')} has no free address left`)
  const name = nodeName(id)
  const segments = state.network.segments
  const segment = segments ? segmentOfNode(id, segments.length) : undefined
  const addresses = families.map((f) => (segment === undefined ? labAddress(host, f) : segmentAddress(segment, host, f)))
  return {
    name,
    id,
    netns: nodeNetns(lab, name),
    address: addresses[0]!,
    addresses,
    bridgePort: bridgePortName(id),
    ...(segment === undefined ? {} : { segment }),
    dir: nodeLayout(lab, name).dir,
    podsCreated: 0,
  }
}

/** Creates the node's namespace and starts its flatnetd (does not wait for it). */
export async function createNode(lab: LabLayout, state: LabState, node: LabNode): Promise<void> {
  const segment = node.segment === undefined ? undefined : state.network.segments?.[node.segment]
  await attachNode(lab, node, familiesOf(state.ipFamily), segment)
  node.daemonPid = await startDaemon(lab, node, daemonSettings(state, node))
}

export async function startNodeDaemon(lab: LabLayout, state: LabState, node: LabNode, readyTimeoutMs: number): Promise<void> {
  if (daemonRunning(node)) throw new Error(`start flatnetd of ${node.name}: already running (pid ${node.daemonPid})`)
  node.daemonPid = await startDaemon(lab, node, daemonSettings(state, node))
  setSubnets(state, node, await waitDaemonReady(lab, node, readyTimeoutMs))
}

/**
 * Records the node's subnets (the conflist's ranges, cluster-range order); `subnet` is the first.
 * A ready flatnetd holds one subnet per cluster range: anything else (a dual-stack lab whose
 * daemon wrote only an IPv4 range) is an error naming the node and what it wrote.
 */
export function setSubnets(state: LabState, node: LabNode, subnets: string[]): void {
  const want = familiesOf(state.ipFamily)
  const have = subnets.map(familyOf)
  if (have.length !== want.length || have.some((f, i) => f !== want[i])) {
    throw new Error(
      `flatnetd of ${node.name} is ready with ranges [${subnets.join(', ')}] in its conflist; the ${state.ipFamily} lab needs one subnet per cluster range (${state.clusterCidrs.join(', ')})`,
    )
  }
  node.subnets = subnets
  node.subnet = subnets[0]
}

export async function stopNodeDaemon(lab: LabLayout, node: LabNode, signal: 'SIGTERM' | 'SIGKILL'): Promise<string> {
  const outcome = await stopDaemon(lab, node, signal)
  delete node.daemonPid
  return outcome
}

/**
 * Removes the node from the cluster's datastore the way an operator does: `flatnetctl node
 * remove`, run from the net namespace, which reaches both the shared file and the lab's etcd.
 */
export async function removeFromDatastore(lab: LabLayout, state: LabState, name: string): Promise<string> {
  const ds = state.datastore
  const where = ds.kind === 'file' ? ['--datastore', 'file', '--datastore-file', ds.path] : ['--datastore', 'etcd', '--etcd-endpoints', ds.endpoints.join(',')]
  const argv = cleanEnvArgv({}, inNetns(lab.netNetns, [nodeBinary, flatnetBinary('flatnetctl'), 'node', 'remove', name, '--ignore-missing', ...where]))
  const result = await runOk(argv, { what: `flatnetctl node remove ${name}`, timeoutMs: 30_000 })
  return result.stdout.trim()
}

/** Deletes the node's namespace (with whatever still runs there) and its directories. */
export async function destroyNode(node: LabNode): Promise<void> {
  await deleteNetns(node.netns)
  await rm(node.dir, { recursive: true, force: true })
}

/** A route a node should have to a peer's subnet, and by which backend. */
export interface ExpectedRoute extends PeerRoute {
  backend: Exclude<PeerBackend, 'none'>
}

/**
 * Routes every node should have: per family, one per other node with a subnet of that family, by
 * the backend the lab expects for that pair (expectedBackend): host-gw via that node's address of
 * the same family, vxlan by flatnet's VXLAN device; none to an off-link peer under host-gw. IPv4
 * first, as flatnetRoutes lists them.
 */
export function expectedPeerRoutes(state: Pick<LabState, 'nodes' | 'backend'>, node: LabNode): ExpectedRoute[] {
  const peers = state.nodes.filter((n) => n.name !== node.name)
  return [4, 6].flatMap((family) =>
    peers
      .flatMap((n): ExpectedRoute[] => {
        const dst = (n.subnets ?? (n.subnet ? [n.subnet] : [])).find((s) => familyOf(s) === family)
        const gateway = n.addresses.find((a) => familyOf(a) === family)
        const backend = expectedBackend(effectiveBackend(state), onLink(node, n))
        if (!dst || !gateway || backend === 'none') return []
        return [backend === 'host-gw' ? { dst, gateway, backend } : { dst, backend }]
      })
      .sort(byDestination),
  )
}

/** host-gw routes must go via the peer's node address; a VXLAN route only has to use flatnet's device. */
export function routesMatch(have: readonly PeerRoute[], want: readonly ExpectedRoute[]): boolean {
  return (
    have.length === want.length &&
    have.every((r, i) => {
      const w = want[i]!
      return r.dst === w.dst && backendOfRoute(r) === w.backend && (w.backend !== 'host-gw' || r.gateway === w.gateway)
    })
  )
}

function routeText(r: PeerRoute | ExpectedRoute): string {
  if ('backend' in r) return r.backend === 'vxlan' ? `${r.dst} dev ${VXLAN_DEVICE_PREFIX}*` : `${r.dst} via ${r.gateway}`
  return `${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}${r.dev ? ` dev ${r.dev}` : ''}`
}

/** Waits until every running node has exactly the routes to its peers (the cluster converged). */
export async function waitRoutesConverged(state: LabState, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const nodes = state.nodes.filter((n) => n.daemonPid !== undefined)
    const views = await Promise.all(nodes.map(async (n) => ({ node: n, have: await flatnetRoutes(n.netns), want: expectedPeerRoutes(state, n) })))
    const behind = views.filter((v) => !routesMatch(v.have, v.want))
    if (behind.length === 0) return
    if (Date.now() > deadline) {
      const show = (rs: Array<PeerRoute | ExpectedRoute>) => (rs.length ? rs.map(routeText).join(', ') : 'none')
      throw new Error(`routes did not converge within ${timeoutMs} ms: ${behind.map((v) => `${v.node.name} has [${show(v.have)}], expected [${show(v.want)}]`).join('; ')}`)
    }
    await sleep(100)
  }
}
