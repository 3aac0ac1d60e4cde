// The lab's memory: what it built (nodes, pods, processes), in `<lab dir>/lab.json`. Written
// atomically (temp file + rename) so a crash never leaves half a file. It is a convenience, not
// the truth: `lab down` works without it, and `lab status` reads live facts (daemon alive?
// subnet from the conflist) where they matter.
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { LabBackend, LabIpFamily, LabLayout, LabTopology } from './layout.js'
import type { PodPort } from './podSpec.js'

export const LAB_STATE_KIND = 'flatnet/lab'
export const LAB_STATE_VERSION = 1

/** An etcd lab's `socket`: etcd's unix socket, the lab's own way to its objects (absent in labs made before it). */
export type LabDatastore = { kind: 'file'; path: string } | { kind: 'etcd'; endpoints: string[]; socket?: string; dataDir: string; pid?: number; log: string }

export interface LabNode {
  name: string
  id: number
  netns: string
  /** eth0's address on the node network (of the primary family: `addresses[0]`). */
  address: string
  /** eth0's addresses, one per family of the lab, in the lab's family order. */
  addresses: string[]
  /** This node's veth end in the net namespace. */
  bridgePort: string
  /** Its L2 segment in a routed lab (absent in a flat lab: the one segment, 0). */
  segment?: number
  dir: string
  /** Pid of its flatnetd (it runs inside `netns`); absent while stopped. */
  daemonPid?: number
  /** The node subnet of the primary family, as the daemon wrote it into the conflist (`subnets[0]`). */
  subnet?: string
  /** The node's subnets (the conflist's `ranges`), one per cluster range, in cluster-range order. */
  subnets?: string[]
  /** How many pods were ever added here: names are never reused while the node lives. */
  podsCreated: number
}

/** What a runtime keeps about one attachment: enough to send DEL exactly as it would. */
export interface LabPod {
  name: string
  node: string
  netns: string
  containerId: string
  ifname: string
  /** The pod's address of the primary family, without prefix length (`addresses[0]`). */
  address: string
  /** The pod's addresses, without prefix length, in the order of the plugin's result (the conflist's `ranges`). */
  addresses: string[]
  /** The final result of the ADD chain: what a runtime caches and passes to DEL as prevResult. */
  result: Record<string, unknown>
  /** Its Kubernetes namespace; absent in state files of older labs: `default`. */
  k8sNamespace?: string
  labels?: Record<string, string>
  /** Its containerPorts, served by its responder (responder.ts). */
  ports?: PodPort[]
  /** The pod's responder process (inside `netns`); absent for pods of older labs. */
  responderPid?: number
  /** metadata.uid of its Pod object. */
  uid?: string
  createdAt?: string
}

export interface LabState {
  kind: typeof LAB_STATE_KIND
  formatVersion: typeof LAB_STATE_VERSION
  name: string
  createdAt: string
  /** ipv4, ipv6 or dual (kind's names): which families the node network, nodes and pods have. */
  ipFamily: LabIpFamily
  /** The primary cluster range (`clusterCidrs[0]`). */
  clusterCidr: string
  /** Every flatnetd's --cluster-cidr: one range per family, primary first. */
  clusterCidrs: string[]
  /** flat (one L2 segment) or routed (segments joined by a router); absent in older state: flat. */
  topology: LabTopology
  /** The --backend every flatnetd was given; absent: none given, the daemon's default (auto). */
  backend?: LabBackend
  /**
   * The node network; the singular fields are the primary family's, the lists have one entry per
   * family. In a routed lab `cidrs` is the whole node address space (every segment's).
   */
  network: {
    /** A routed lab's segments, in segment order: bridge, per-family CIDRs and the router's address on it. */
    segments?: Array<{ segment: number; bridge: string; cidrs: string[]; gateways: string[] }>
    /** A routed lab's router namespace. */
    routerNetns?: string
    cidr: string
    cidrs: string[]
    netns: string
    bridge: string
    outsideNetns: string
    outsideAddress: string
    outsideAddresses: string[]
    infraAddress: string
    infraAddresses: string[]
  }
  datastore: LabDatastore
  /** --log-level of every flatnetd. */
  daemonLogLevel: string
  /** Node ids are never reused within a lab, so a re-added node is recognisably new. */
  nextNodeId: number
  nodes: LabNode[]
  pods: LabPod[]
  /** The cluster DNS (clusterServices.ts): the kube-dns Service's cluster IPs, every pod's nameservers. Absent: no cluster DNS. */
  clusterDns?: { nameservers: string[] }
  /** The add-ons pod (kube-system/coredns: cluster DNS and LoadBalancer controller); not one of `pods`, the check's matrix leaves it out. */
  clusterAddons?: LabPod
}

export class LabMissingError extends Error {
  constructor(readonly layout: LabLayout) {
    super(`lab ${layout.name}: not running (no state file ${layout.stateFile}); start it with: flatnetctl lab up${layout.name === 'default' ? '' : ` --name ${layout.name}`}`)
  }
}

export function labExists(layout: LabLayout): boolean {
  return existsSync(layout.stateFile)
}

export function parseLabState(path: string, text: string): LabState {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new Error(`read lab state ${path}: invalid JSON: ${(err as Error).message}`)
  }
  const d = doc as Partial<LabState> | null
  if (!d || d.kind !== LAB_STATE_KIND || d.formatVersion !== LAB_STATE_VERSION || !Array.isArray(d.nodes) || !Array.isArray(d.pods)) {
    throw new Error(`read lab state ${path}: not a flatnet lab state file of format ${LAB_STATE_VERSION}; remove the lab with flatnetctl lab down`)
  }
  return upgradeState(d as LabState)
}

/**
 * A state written before labs had families (IPv4 only, no lists) reads as the IPv4 lab it is, so a
 * lab built by the previous flatnetctl is still understood (and removed) by this one.
 */
function upgradeState(s: LabState): LabState {
  s.ipFamily ??= 'ipv4'
  s.topology ??= 'flat'
  s.clusterCidrs ??= [s.clusterCidr]
  s.network.cidrs ??= [s.network.cidr]
  s.network.outsideAddresses ??= [s.network.outsideAddress]
  s.network.infraAddresses ??= [s.network.infraAddress]
  for (const n of s.nodes) {
    n.addresses ??= [n.address]
    if (n.subnet) n.subnets ??= [n.subnet]
  }
  for (const p of s.pods) p.addresses ??= [p.address]
  return s
}

export async function readLabState(layout: LabLayout): Promise<LabState> {
  let text: string
  try {
    text = await readFile(layout.stateFile, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new LabMissingError(layout)
    throw new Error(`read lab state ${layout.stateFile}: ${(err as Error).message}`)
  }
  return parseLabState(layout.stateFile, text)
}

export function readLabStateSync(layout: LabLayout): LabState | undefined {
  try {
    return parseLabState(layout.stateFile, readFileSync(layout.stateFile, 'utf8'))
  } catch {
    return undefined
  }
}

export async function writeLabState(layout: LabLayout, state: LabState): Promise<void> {
  await mkdir(dirname(layout.stateFile), { recursive: true })
  const tmp = `${layout.stateFile}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  const file = await open(tmp, 'wx', 0o644)
  try {
    await file.writeFile(JSON.stringify(state, null, 2) + '\n')
    await file.sync()
  } finally {
    await file.close()
  }
  await rename(tmp, layout.stateFile)
}
