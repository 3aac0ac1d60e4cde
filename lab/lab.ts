// The lab's operations, as `flatnetctl lab …` and the e2e tests call them. Each one that changes
// the lab holds the lab lock and writes the state file after every step that creates something,
// so an interrupted command leaves a lab that `lab down` (or the next command) understands.
import { readdir, rm } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { readConflist } from './cniRuntime.js'
import { daemonRunning, waitDaemonReady } from './daemon.js'
import { startEtcd } from './etcd.js'
import { errorText } from './exec.js'
import {
  BACKENDS,
  DEFAULT_IP_FAMILY,
  DEFAULT_LAB_NAME,
  DEFAULT_LAB_ROOT,
  DEFAULT_SEGMENTS,
  DEFAULT_TOPOLOGY,
  IP_FAMILIES,
  LAB_NETWORK,
  MAX_SEGMENTS,
  ROUTED_NETWORK,
  TOPOLOGIES,
  NETNS_PREFIX,
  defaultClusterCidrs,
  familiesOf,
  labLayout,
  labNetworkOf,
  nodeLayout,
  type LabBackend,
  type LabIpFamily,
  type LabLayout,
  type LabTopology,
} from './layout.js'
import { deleteNetns, listNetns } from './namespaces.js'
import { createNode, destroyNode, effectiveBackend, planNode, removeFromDatastore, setSubnets, startNodeDaemon, stopNodeDaemon, waitRoutesConverged } from './nodes.js'
import { addPod, deletePod, nextPodName, type PodExtras } from './pods.js'
import { DEFAULT_POD_NAMESPACE, parsePodRef, podRef, portText } from './podSpec.js'
import { withLabLock } from './lock.js'
import { forgetPod, openLabObjects, recordPod, withPodRecords } from './objectStore.js'
import { applyKubeDns, DEMO_LABELS, DEMO_PORTS, demoServices, routeLoadBalancerPool, startAddonsPod } from './clusterServices.js'
import { podEtcDir } from './pods.js'
import { LAB_STATE_KIND, LAB_STATE_VERSION, LabMissingError, labExists, readLabState, writeLabState, type LabNode, type LabPod, type LabState } from './state.js'
import { createNodeNetwork, createRoutedNetwork, routedOutsideAddresses, routedSegments } from './topology.js'

/** Which lab: by name (default "default") under a root directory (default /run/flatnet-lab). */
export interface LabRef {
  name?: string
  root?: string
}

export type Progress = (line: string) => void

export function layoutOf(ref: LabRef): LabLayout {
  return labLayout(ref.name ?? DEFAULT_LAB_NAME, ref.root ?? DEFAULT_LAB_ROOT)
}

const DEFAULT_READY_TIMEOUT_MS = 30_000
const CONVERGE_TIMEOUT_MS = 15_000

export interface LabUpOptions extends LabRef {
  nodes: number
  podsPerNode: number
  datastore: 'file' | 'etcd'
  /** ipv4 (default), ipv6 or dual: the families of the node network, the nodes and the pods. */
  ipFamily?: LabIpFamily
  /** flat (default): one L2 segment; routed: nodes round-robin over `segments` segments joined by a router. */
  topology?: LabTopology
  /** Segments of a routed lab (default 2, at most 9). */
  segments?: number
  /** Every flatnetd's --backend; absent: the flag is not passed (the daemon's default, auto). */
  backend?: LabBackend
  /** One cluster range per family, in family order (default: kind's 10.244.0.0/16, fd00:10:244::/56). */
  clusterCidrs?: string[]
  daemonLogLevel?: string
  /** The cluster DNS, the LoadBalancer controller and the demo Services (default true; file datastore only). */
  services?: boolean
  readyTimeoutMs?: number
  /** Leave a half-built lab in place when `up` fails (for reading its logs); default: remove it. */
  keepOnFailure?: boolean
  progress?: Progress
}

function byNodeThenName(a: LabPod, b: LabPod, state: LabState): number {
  const ida = state.nodes.find((n) => n.name === a.node)?.id ?? 0
  const idb = state.nodes.find((n) => n.name === b.node)?.id ?? 0
  return ida - idb || a.name.length - b.name.length || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
}

function sortPods(state: LabState): void {
  state.pods.sort((a, b) => byNodeThenName(a, b, state))
}

/** Runs `fn` over items with at most `limit` at a time; rejects with every failure after all ran. */
async function eachLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  const errors: string[] = []
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      try {
        results[i] = await fn(items[i]!)
      } catch (err) {
        errors.push(errorText(err))
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  if (errors.length) throw new Error(errors.join('\n'))
  return results
}

/** The cluster ranges of an `up`: the defaults of its families, or the given ones when they are one per family, in order. */
export function clusterCidrsFor(ipFamily: LabIpFamily, given?: readonly string[]): string[] {
  if (!IP_FAMILIES.includes(ipFamily)) throw new Error(`lab up: --ip-family must be one of ${IP_FAMILIES.join(', ')}, got ${JSON.stringify(ipFamily)}`)
  if (!given || given.length === 0) return defaultClusterCidrs(ipFamily)
  const want = familiesOf(ipFamily)
  const have = given.map((c) => (c.includes(':') ? 6 : 4))
  if (have.length !== want.length || have.some((f, i) => f !== want[i])) {
    const names = want.map((f) => `IPv${f}`).join(', then ')
    throw new Error(`lab up: --cluster-cidr ${given.join(',')} does not fit --ip-family ${ipFamily}: give one range per family (${names})`)
  }
  return [...given]
}

/** What every pod of the lab gets beyond its identity: the cluster DNS's resolv.conf, when the lab has one. */
function podDns(state: LabState): Pick<PodExtras, 'nameservers'> {
  return state.clusterDns ? { nameservers: state.clusterDns.nameservers } : {}
}

async function addPodsTo(lab: LabLayout, state: LabState, nodes: LabNode[], perNode: number, progress: Progress): Promise<LabPod[]> {
  const plan = nodes.flatMap((node) => Array.from({ length: perNode }, () => ({ node, name: nextPodName(node) })))
  const added: LabPod[] = []
  // The demo Services select these labels and ports (clusterServices.ts), when the lab has Services.
  const demo: PodExtras = state.clusterDns ? { labels: { ...DEMO_LABELS }, ports: [...DEMO_PORTS], ...podDns(state) } : {}
  try {
    await eachLimited(plan, 8, async ({ node, name }) => {
      const pod = await addPod(lab, node, name, demo)
      added.push(pod)
      progress(`${pod.name}: ${pod.addresses.join(', ')} on ${node.name}`)
    })
  } finally {
    state.pods.push(...added)
    sortPods(state)
    await writeLabState(lab, state)
  }
  await withPodRecords(state, async (store) => {
    for (const pod of added) await recordPod(store, state, pod, true)
  })
  await writeLabState(lab, state)
  return added
}

export async function labUp(options: LabUpOptions): Promise<LabState> {
  const lab = layoutOf(options)
  const progress = options.progress ?? (() => {})
  if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > LAB_NETWORK.lastNodeHost - LAB_NETWORK.firstNodeHost + 1) {
    throw new Error(`lab up: --nodes must be an integer from 1 to ${LAB_NETWORK.lastNodeHost - LAB_NETWORK.firstNodeHost + 1}, got ${options.nodes}`)
  }
  if (!Number.isInteger(options.podsPerNode) || options.podsPerNode < 0 || options.podsPerNode > 253) {
    throw new Error(`lab up: --pods-per-node must be an integer from 0 to 253, got ${options.podsPerNode}`)
  }
  const ipFamily = options.ipFamily ?? DEFAULT_IP_FAMILY
  const clusterCidrs = clusterCidrsFor(ipFamily, options.clusterCidrs)
  const families = familiesOf(ipFamily)
  const networks = families.map(labNetworkOf)
  const topology = options.topology ?? DEFAULT_TOPOLOGY
  if (!TOPOLOGIES.includes(topology)) throw new Error(`lab up: --topology must be one of ${TOPOLOGIES.join(', ')}, got ${JSON.stringify(topology)}`)
  if (options.backend !== undefined && !BACKENDS.includes(options.backend)) throw new Error(`lab up: --backend must be one of ${BACKENDS.join(', ')}, got ${JSON.stringify(options.backend)}`)
  const segmentCount = options.segments ?? DEFAULT_SEGMENTS
  if (topology === 'flat' && options.segments !== undefined && options.segments !== 1) throw new Error(`lab up: --segments ${options.segments} needs --topology routed (a flat lab is one segment)`)
  if (topology === 'routed' && (!Number.isInteger(segmentCount) || segmentCount < 2 || segmentCount > MAX_SEGMENTS)) {
    throw new Error(`lab up: --segments must be an integer from 2 to ${MAX_SEGMENTS} for a routed lab, got ${segmentCount}`)
  }
  const segments = topology === 'routed' ? routedSegments(segmentCount, families) : undefined
  const outsideAddresses = segments ? routedOutsideAddresses(families) : networks.map((n) => n.outsideAddress)
  // The lock comes first: two `lab up` of one name would otherwise both pass the checks below and
  // the loser's cleanup would delete the winner's namespaces. The loser is refused here, having
  // created nothing (the directory and its lock file already exist: the winner made them).
  return withLabLock(
    lab,
    'lab up',
    async () => {
      if (labExists(lab)) throw new Error(`lab up: lab ${lab.name} is already up (${lab.stateFile}); remove it first with: flatnetctl lab down${nameFlag(lab)}`)
      const leftovers = await listNetns(lab.prefix)
      if (leftovers.length) {
        await removeIfOnlyLock(lab)
        throw new Error(`lab up: leftovers of an earlier lab ${lab.name} exist (${leftovers.join(', ')}); remove them with: flatnetctl lab down${nameFlag(lab)}`)
      }
      // No state and no namespaces: whatever files an earlier lab left here belong to nobody.
      await clearDirExceptLock(lab)
      const state: LabState = {
        kind: LAB_STATE_KIND,
        formatVersion: LAB_STATE_VERSION,
        name: lab.name,
        createdAt: new Date().toISOString(),
        ipFamily,
        topology,
        ...(options.backend ? { backend: options.backend } : {}),
        clusterCidr: clusterCidrs[0]!,
        clusterCidrs,
        network: {
          cidr: segments ? ROUTED_NETWORK.aggregate[families[0]!] : networks[0]!.cidr,
          cidrs: segments ? families.map((f) => ROUTED_NETWORK.aggregate[f]) : networks.map((n) => n.cidr),
          ...(segments ? { segments, routerNetns: lab.routerNetns } : {}),
          netns: lab.netNetns,
          bridge: LAB_NETWORK.bridge,
          outsideNetns: lab.outsideNetns,
          outsideAddress: outsideAddresses[0]!,
          outsideAddresses,
          infraAddress: networks[0]!.infraAddress,
          infraAddresses: networks.map((n) => n.infraAddress),
        },
        datastore: { kind: 'file', path: lab.datastoreFile },
        daemonLogLevel: options.daemonLogLevel ?? 'info',
        nextNodeId: 1,
        nodes: [],
        pods: [],
      }
      try {
        await writeLabState(lab, state)
        if (segments) {
          await createRoutedNetwork(lab, families, segments)
          progress(
            `node network ${state.network.cidrs.join(', ')}: ${segments.length} segments (${segments.map((s) => `${s.bridge} ${s.cidrs.join(' ')}`).join('; ')}) in ${lab.netNetns}, joined by the router ${lab.routerNetns}; outside ${outsideAddresses.join(', ')} behind it in ${lab.outsideNetns}`,
          )
        } else {
          await createNodeNetwork(lab, families)
          progress(`node network ${state.network.cidrs.join(', ')} on a bridge in ${lab.netNetns}; outside ${state.network.outsideAddresses.join(', ')} in ${lab.outsideNetns}`)
        }
        if (options.datastore === 'etcd') {
          const etcd = await startEtcd(lab, state.network.infraAddress)
          state.datastore = { kind: 'etcd', endpoints: etcd.endpoints, socket: etcd.socket, dataDir: etcd.dataDir, pid: etcd.pid, log: etcd.log }
          await writeLabState(lab, state)
          progress(`etcd at ${etcd.endpoints.join(',')} (pid ${etcd.pid})`)
        }
        const nodes: LabNode[] = []
        for (let i = 0; i < options.nodes; i++) {
          const node = planNode(lab, state)
          state.nodes.push(node) // before planning the next one: addresses come from state.nodes
          nodes.push(node)
        }
        try {
          await Promise.all(nodes.map((node) => createNode(lab, state, node)))
        } finally {
          await writeLabState(lab, state)
        }
        await Promise.all(
          nodes.map(async (node) => {
            setSubnets(state, node, await waitDaemonReady(lab, node, options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS))
            progress(`${node.name}: ${node.addresses.join(', ')}, flatnetd ready (pid ${node.daemonPid}), ${subnetsText(node)}`)
          }),
        )
        await writeLabState(lab, state)
        await waitRoutesConverged(state, CONVERGE_TIMEOUT_MS)
        progress(
          segments && effectiveBackend(state) === 'host-gw'
            ? 'routes converged: every node routes to its on-link peers (backend host-gw: a peer behind the router gets no route)'
            : `routes converged: every node routes to its ${nodes.length - 1} peer${nodes.length === 2 ? '' : 's'}${state.backend || segments ? ` (backend ${effectiveBackend(state)}${segments ? ', off-link peers over VXLAN' : ''})` : ''}`,
        )
        const services = options.services !== false && state.datastore.kind === 'file'
        if (services) await startClusterServices(lab, state, nodes[0]!, progress)
        await addPodsTo(lab, state, nodes, options.podsPerNode, progress)
        if (services) await applyDemoServices(state, progress)
        return state
      } catch (err) {
        if (!options.keepOnFailure) await teardown(lab).catch(() => undefined)
        throw new Error(
          `lab up ${lab.name}: ${errorText(err)}${options.keepOnFailure ? `\n(the half-built lab is kept for inspection in ${lab.dir}; remove it with flatnetctl lab down${nameFlag(lab)})` : ''}`,
        )
      }
    },
    { waitMs: 0, create: true },
  )
}

/**
 * The cluster DNS before any pod (each pod's resolv.conf names it): the kube-dns Service, the
 * add-ons pod serving it on `node`, and the outside's route to the LoadBalancer pool.
 */
async function startClusterServices(lab: LabLayout, state: LabState, node: LabNode, progress: Progress): Promise<void> {
  const store = await openLabObjects(state)
  try {
    state.clusterDns = { nameservers: await applyKubeDns(store, state) }
    await writeLabState(lab, state)
    const addons = await startAddonsPod(lab, state, node)
    state.clusterAddons = addons
    await writeLabState(lab, state)
    await recordPod(store, state, addons, false)
    await writeLabState(lab, state)
  } finally {
    await store.close()
  }
  await routeLoadBalancerPool(state)
  progress(`cluster DNS ${state.clusterDns.nameservers.join(', ')} (Service kube-system/kube-dns, pod kube-system/coredns on ${node.name}); LoadBalancer pool routed via the nodes`)
}

/**
 * The add-ons pod of a removed node is rescheduled, as its Deployment would be: deleted with the
 * node (its namespace, its Pod object) and started again on the first node left.
 */
async function moveAddonsPod(lab: LabLayout, state: LabState, gone: LabNode, warnings: string[]): Promise<void> {
  const addons = state.clusterAddons!
  await deletePod(lab, undefined, addons).catch((err) => warnings.push(errorText(err)))
  state.clusterAddons = undefined
  await writeLabState(lab, state)
  const store = await openLabObjects(state)
  try {
    await forgetPod(store, addons).catch((err) => warnings.push(errorText(err)))
    const next = state.nodes[0]
    if (!next) return void warnings.push(`the cluster DNS went with ${gone.name}: no node is left to run it`)
    state.clusterAddons = await startAddonsPod(lab, state, next)
    await writeLabState(lab, state)
    await recordPod(store, state, state.clusterAddons, false)
  } catch (err) {
    warnings.push(`restart the cluster add-ons after removing ${gone.name}: ${errorText(err)}`)
  } finally {
    await store.close()
  }
}

async function applyDemoServices(state: LabState, progress: Progress): Promise<void> {
  const store = await openLabObjects(state)
  try {
    for (const svc of demoServices(state)) {
      const { object } = await store.apply(svc)
      const ports = (object.spec?.ports ?? []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',')
      progress(
        `Service ${object.metadata?.namespace}/${object.metadata?.name}: ${object.spec?.type ?? 'ClusterIP'} ${(object.spec?.clusterIPs ?? []).join(', ') || '(no cluster IP)'} ${ports} → app=demo pods`,
      )
    }
  } finally {
    await store.close()
  }
}

/** Removes the lab directory when it holds nothing but the lock file (made by this `lab up`). */
async function removeIfOnlyLock(lab: LabLayout): Promise<void> {
  const entries = await readdir(lab.dir).catch(() => [] as string[])
  if (entries.every((e) => e === basename(lab.lockFile))) await rm(lab.dir, { recursive: true, force: true })
}

async function clearDirExceptLock(lab: LabLayout): Promise<void> {
  for (const entry of await readdir(lab.dir)) {
    if (entry !== basename(lab.lockFile)) await rm(join(lab.dir, entry), { recursive: true, force: true })
  }
}

/** "subnet 10.244.1.0/24" or "subnets 10.244.1.0/24, fd00:10:244:1::/64". */
export function subnetsText(node: { subnets?: string[]; subnet?: string }): string {
  const subnets = node.subnets ?? (node.subnet ? [node.subnet] : [])
  return `subnet${subnets.length === 1 ? '' : 's'} ${subnets.join(', ') || 'none yet'}`
}

function nameFlag(lab: LabLayout): string {
  return lab.name === DEFAULT_LAB_NAME ? '' : ` --name ${lab.name}`
}

export interface DownReport {
  name: string
  namespaces: string[]
  removedDir: boolean
}

/**
 * Deletes every namespace of the lab (and the processes in them) and its directory. The caller
 * holds the lab lock when the directory exists; the lock file goes with the directory.
 */
async function teardown(lab: LabLayout): Promise<DownReport> {
  const namespaces = await listNetns(lab.prefix)
  const errors: string[] = []
  await Promise.all(namespaces.map((ns) => deleteNetns(ns).catch((err) => errors.push(errorText(err)))))
  // The pods' resolv.conf files (pods.ts podEtcDir), found by the lab's prefix like its namespaces.
  for (const entry of await readdir('/etc/netns').catch(() => [] as string[])) {
    if (entry.startsWith(lab.prefix)) await rm(podEtcDir(entry), { recursive: true, force: true })
  }
  // A directory holding only the lock file is the one this `down` locked: nothing of a lab.
  const removedDir = (await readdir(lab.dir).catch(() => [] as string[])).some((e) => e !== basename(lab.lockFile))
  await rm(lab.dir, { recursive: true, force: true })
  if (errors.length) throw new Error(`lab down ${lab.name}: ${errors.join('; ')}`)
  return { name: lab.name, namespaces, removedDir }
}

/**
 * Removes the lab: processes, namespaces, files, etcd. Needs no state file: everything is found
 * by the lab's namespace prefix and directory. Safe to run twice.
 */
export async function labDown(ref: LabRef): Promise<DownReport> {
  return downLocked(layoutOf(ref))
}

/**
 * teardown under the lab lock, waiting for a command in flight (a lab crashed mid-command holds
 * no lock: the kernel dropped it with the process). Without a lab directory there is nothing to
 * lock and no command in flight: leftover namespaces are removed all the same.
 */
async function downLocked(lab: LabLayout): Promise<DownReport> {
  try {
    return await withLabLock(lab, 'lab down', () => teardown(lab))
  } catch (err) {
    if (err instanceof LabMissingError) return teardown(lab)
    throw err
  }
}

/** Removes every lab on this machine (all `fnlab-*` namespaces and the lab root). */
export async function labDownAll(root = DEFAULT_LAB_ROOT): Promise<DownReport[]> {
  const names = new Set<string>()
  for (const ns of await listNetns(NETNS_PREFIX)) names.add(ns.slice(NETNS_PREFIX.length).split('-')[0]!)
  for (const entry of await readdir(root).catch(() => [] as string[])) names.add(entry)
  const reports: DownReport[] = []
  for (const name of [...names].sort()) {
    try {
      reports.push(await downLocked(labLayout(name, root)))
    } catch (err) {
      // A directory entry that is not a valid lab name: nothing of ours to sweep but the entry.
      if (/lab name/.test(errorText(err))) await rm(`${root}/${name}`, { recursive: true, force: true })
      else throw err
    }
  }
  return reports
}

function findNode(state: LabState, name: string): LabNode {
  const node = state.nodes.find((n) => n.name === name)
  if (!node) throw new Error(`lab ${state.name}: no node ${JSON.stringify(name)} (nodes: ${state.nodes.map((n) => n.name).join(', ') || 'none'})`)
  return node
}

export interface NodeAddOptions extends LabRef {
  pods?: number
  readyTimeoutMs?: number
  progress?: Progress
}

export async function labNodeAdd(options: NodeAddOptions): Promise<{ node: LabNode; pods: LabPod[] }> {
  const lab = layoutOf(options)
  const progress = options.progress ?? (() => {})
  return withLabLock(lab, 'lab node add', async () => {
    const state = await readLabState(lab)
    const node = planNode(lab, state)
    state.nodes.push(node)
    await writeLabState(lab, state)
    try {
      await createNode(lab, state, node)
      await writeLabState(lab, state)
      setSubnets(state, node, await waitDaemonReady(lab, node, options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS))
      await writeLabState(lab, state)
      progress(`${node.name}: ${node.addresses.join(', ')}, flatnetd ready (pid ${node.daemonPid}), ${subnetsText(node)}`)
      await waitRoutesConverged(state, CONVERGE_TIMEOUT_MS)
    } catch (err) {
      // Undo: a node that never became part of the lab must not keep a subnet or a namespace.
      await stopNodeDaemon(lab, node, 'SIGKILL').catch(() => undefined)
      await removeFromDatastore(lab, state, node.name).catch(() => undefined)
      await destroyNode(node).catch(() => undefined)
      state.nodes = state.nodes.filter((n) => n !== node)
      await writeLabState(lab, state)
      throw new Error(`lab node add: ${errorText(err)}`)
    }
    if (state.clusterDns) await routeLoadBalancerPool(state)
    const pods = await addPodsTo(lab, state, [node], options.pods ?? 0, progress)
    return { node, pods }
  })
}

export interface NodeDelReport {
  node: string
  podsDeleted: string[]
  datastore: string
  /** Things that went wrong but did not stop the removal (e.g. a plugin DEL that failed). */
  warnings: string[]
}

/**
 * Takes a node out of the cluster as an operator would: DEL its pods through the plugin, stop its
 * flatnetd, remove it from the datastore (`flatnetctl node remove`), delete its namespace.
 */
export async function labNodeDel(options: LabRef & { node: string }): Promise<NodeDelReport> {
  const lab = layoutOf(options)
  return withLabLock(lab, 'lab node del', async () => {
    const state = await readLabState(lab)
    const node = findNode(state, options.node)
    const warnings: string[] = []
    const pods = state.pods.filter((p) => p.node === node.name)
    await Promise.all(
      pods.map(async (pod) => {
        try {
          await deletePod(lab, node, pod)
        } catch (err) {
          warnings.push(errorText(err))
          await deleteNetns(pod.netns).catch((e) => warnings.push(errorText(e)))
        }
      }),
    )
    state.pods = state.pods.filter((p) => p.node !== node.name)
    await writeLabState(lab, state)
    await withPodRecords(state, async (store) => {
      for (const pod of pods) await forgetPod(store, pod).catch((err) => warnings.push(errorText(err)))
    })
    await stopNodeDaemon(lab, node, 'SIGTERM')
    await writeLabState(lab, state)
    const datastore = await removeFromDatastore(lab, state, node.name)
    await destroyNode(node)
    state.nodes = state.nodes.filter((n) => n !== node)
    await writeLabState(lab, state)
    if (state.clusterDns) await routeLoadBalancerPool(state).catch((err) => warnings.push(errorText(err)))
    if (state.clusterAddons?.node === node.name) await moveAddonsPod(lab, state, node, warnings)
    return { node: node.name, podsDeleted: pods.map((p) => p.name), datastore, warnings }
  })
}

/** Stops a node's flatnetd (SIGTERM, or SIGKILL to play a crash); its routes and pods stay. */
export async function labNodeStop(options: LabRef & { node: string; kill?: boolean }): Promise<string> {
  const lab = layoutOf(options)
  return withLabLock(lab, 'lab node stop', async () => {
    const state = await readLabState(lab)
    const node = findNode(state, options.node)
    const outcome = await stopNodeDaemon(lab, node, options.kill ? 'SIGKILL' : 'SIGTERM')
    await writeLabState(lab, state)
    return outcome
  })
}

/** Starts a node's flatnetd again and waits until it is ready. */
export async function labNodeStart(options: LabRef & { node: string; readyTimeoutMs?: number }): Promise<LabNode> {
  const lab = layoutOf(options)
  return withLabLock(lab, 'lab node start', async () => {
    const state = await readLabState(lab)
    const node = findNode(state, options.node)
    try {
      await startNodeDaemon(lab, state, node, options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS)
    } finally {
      await writeLabState(lab, state)
    }
    return node
  })
}

export interface PodAddOptions extends LabRef, PodExtras {
  node: string
  /** The pod's name (default: the node's next `podNx`). */
  podName?: string
}

/** Finds a pod by `[namespace/]name`. */
export function findPod(state: LabState, ref: string): LabPod {
  const { namespace, name } = parsePodRef(ref)
  const pod = state.pods.find((p) => p.name === name && (p.k8sNamespace ?? DEFAULT_POD_NAMESPACE) === namespace)
  if (!pod) throw new Error(`lab ${state.name}: no pod ${JSON.stringify(ref)} (pods: ${state.pods.map(podRef).join(', ') || 'none'})`)
  return pod
}

export async function labPodAdd(options: PodAddOptions): Promise<LabPod> {
  const lab = layoutOf(options)
  return withLabLock(lab, 'lab pod add', async () => {
    const state = await readLabState(lab)
    const node = findNode(state, options.node)
    const explicit = options.podName !== undefined || options.namespace !== undefined
    const name = options.podName ?? nextPodName(node)
    const namespace = explicit ? (options.namespace ?? DEFAULT_POD_NAMESPACE) : undefined
    const ref = podRef({ name, k8sNamespace: namespace })
    if (state.pods.some((p) => podRef(p) === ref)) throw new Error(`lab pod add: lab ${state.name} already has a pod ${ref}`)
    await writeLabState(lab, state)
    const pod = await addPod(lab, node, name, { namespace, labels: options.labels, ports: options.ports, ...podDns(state) })
    try {
      // Its namespace is created when missing: `lab pod add -n x` is a shortcut, not kubectl.
      await withPodRecords(state, (store) => recordPod(store, state, pod, true))
    } catch (err) {
      // A pod the object store does not know would run outside every policy: take it down again.
      await deletePod(lab, node, pod).catch(() => undefined)
      throw new Error(`lab pod add ${podRef(pod)}: store its Pod object: ${errorText(err)}`)
    }
    state.pods.push(pod)
    sortPods(state)
    await writeLabState(lab, state)
    return pod
  })
}

export async function labPodDel(options: LabRef & { pod: string }): Promise<LabPod> {
  const lab = layoutOf(options)
  return withLabLock(lab, 'lab pod del', async () => {
    const state = await readLabState(lab)
    const pod = findPod(state, options.pod)
    await deletePod(
      lab,
      state.nodes.find((n) => n.name === pod.node),
      pod,
    )
    state.pods = state.pods.filter((p) => p !== pod)
    await writeLabState(lab, state)
    await withPodRecords(state, (store) => forgetPod(store, pod))
    return pod
  })
}

export interface LabStatus {
  name: string
  dir: string
  ipFamily: LabIpFamily
  topology: LabTopology
  /** The backend the daemons run (given to `lab up`, or the daemon's default). */
  backend: LabBackend
  clusterCidr: string
  clusterCidrs: string[]
  datastore: { kind: 'file'; path: string } | { kind: 'etcd'; endpoints: string[]; pid?: number }
  network: LabState['network']
  /** `address`/`subnet`: the primary family's; `addresses`/`subnets`: one per family. */
  nodes: Array<{
    name: string
    namespace: string
    address: string
    addresses: string[]
    /** Its L2 segment (0 in a flat lab). */
    segment: number
    subnet: string | null
    subnets: string[]
    daemon: { running: boolean; pid: number | null }
    log: string
    pods: number
  }>
  /** `name` is `[namespace/]name` (podSpec.ts podRef); `namespace` is the network namespace. */
  pods: Array<{ name: string; namespace: string; node: string; address: string; addresses: string[]; containerId: string; labels: Record<string, string>; ports: string[] }>
  /** The cluster DNS and its add-ons pod (clusterServices.ts); absent in a lab without Services. */
  clusterDns?: { nameservers: string[]; pod?: { name: string; namespace: string; node: string; addresses: string[] } }
}

/** The lab as it is now: from the state file, with live facts (daemon alive, conflist subnet). */
export async function labStatus(ref: LabRef): Promise<LabStatus> {
  const lab = layoutOf(ref)
  const state = await readLabState(lab)
  const nodes = await Promise.all(
    state.nodes.map(async (n) => {
      const dirs = nodeLayout(lab, n.name)
      const list = await readConflist(dirs.conflist).catch(() => undefined)
      const ranges = list?.plugins.find((p) => p.type === 'flatnet')?.ranges
      const subnets = Array.isArray(ranges) && ranges.length && ranges.every((r) => typeof r === 'string') ? (ranges as string[]) : (n.subnets ?? [])
      const running = daemonRunning(n)
      return {
        name: n.name,
        namespace: n.netns,
        address: n.address,
        addresses: n.addresses,
        segment: n.segment ?? 0,
        subnet: subnets[0] ?? null,
        subnets,
        daemon: { running, pid: running ? n.daemonPid! : null },
        log: dirs.log,
        pods: state.pods.filter((p) => p.node === n.name).length,
      }
    }),
  )
  const ds = state.datastore
  return {
    name: state.name,
    dir: lab.dir,
    ipFamily: state.ipFamily,
    topology: state.topology,
    backend: effectiveBackend(state),
    clusterCidr: state.clusterCidr,
    clusterCidrs: state.clusterCidrs,
    datastore: ds.kind === 'file' ? { kind: 'file', path: ds.path } : { kind: 'etcd', endpoints: ds.endpoints, pid: ds.pid },
    network: state.network,
    nodes,
    pods: state.pods.map((p) => ({
      name: podRef(p),
      namespace: p.netns,
      node: p.node,
      address: p.address,
      addresses: p.addresses,
      containerId: p.containerId,
      labels: p.labels ?? {},
      ports: (p.ports ?? []).map(portText),
    })),
    ...(state.clusterDns
      ? {
          clusterDns: {
            nameservers: state.clusterDns.nameservers,
            ...(state.clusterAddons
              ? { pod: { name: podRef(state.clusterAddons), namespace: state.clusterAddons.netns, node: state.clusterAddons.node, addresses: state.clusterAddons.addresses } }
              : {}),
          },
        }
      : {}),
  }
}
