// The one interface every node-subnet datastore implements (file, etcd, kubernetes).
// The daemon's route reconciler, readiness and `flatnetctl node …` code only against this file,
// so a backend can be swapped by configuration without touching them.
import type { IpFamily } from '../../ipam/cidr.js'

/** One node of the cluster as the datastore knows it. */
export interface NodeRecord {
  /** Node name (Kubernetes node name, or the lab's node name); unique in the cluster. */
  name: string
  /** The address peers route this node's subnet through. */
  nodeIP: string
  /** This node's pod subnet, canonical CIDR text (e.g. `10.244.3.0/24`). */
  subnet: string
  /**
   * Identity of the daemon instance holding the claim. It must be stable across restarts of the
   * same daemon (e.g. kept in its state directory): a restart with the same owner keeps the
   * subnet, a different owner claiming a live record of the same name is refused.
   */
  owner: string
  /** ISO 8601 time of the claim or of the last renewal that wrote it. */
  updatedAt: string
  /**
   * Dual-stack: one subnet per cluster range, in the daemon's --cluster-cidr order (the first is
   * `subnet`). Absent on single-family records (including those written by earlier versions).
   */
  subnets?: string[]
  /** Dual-stack: the node's address of each family it has (the first is `nodeIP`). Absent: [nodeIP]. */
  nodeIPs?: string[]
  /**
   * The dataplane backend the node's daemon runs (--backend). Absent on records of earlier
   * versions and of nodes that publish none: such a peer is reached by host-gw only.
   */
  backend?: NodeBackend
  /**
   * The MAC of the node's VXLAN devices (its VTEP), lower-case colon text, fixed per node name so
   * a restart does not churn the peers' neighbour and FDB entries. Absent with backend host-gw.
   */
  vtepMac?: string
}

/** What a node's daemon runs: host-gw routes only, VXLAN to every peer, or the choice per peer (auto). */
export type NodeBackend = 'host-gw' | 'vxlan' | 'auto'
export const NODE_BACKENDS: readonly NodeBackend[] = ['host-gw', 'vxlan', 'auto']

/** A VTEP MAC as records carry it: six lower-case hex pairs. */
export const VTEP_MAC_SYNTAX = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/

/** The backend fields of a record or claim, as every backend stores them. */
export type BackendFields = Pick<NodeRecord, 'backend' | 'vtepMac'>

/** One family's part of a node: its subnet of that family and its address of that family, if it has one. */
export interface NodeFamily {
  family: IpFamily
  subnet: string
  nodeIP: string | undefined
}

/**
 * A node per family, in cluster-range order. Consumers that act per family (routes, masquerade,
 * the conflist, VXLAN peers) read nodes only through this, never `subnet`/`nodeIP` directly.
 */
export function nodeFamilies(rec: NodeRecord): NodeFamily[] {
  const subnets = rec.subnets && rec.subnets.length ? rec.subnets : [rec.subnet]
  const ips = rec.nodeIPs && rec.nodeIPs.length ? rec.nodeIPs : [rec.nodeIP]
  return subnets.map((subnet) => {
    const family: IpFamily = subnet.includes(':') ? 6 : 4
    return { family, subnet, nodeIP: ips.find((ip) => (ip.includes(':') ? 6 : 4) === family) }
  })
}

/** The node's subnet of one family, if it holds one. */
export function subnetOf(rec: NodeRecord, family: IpFamily): string | undefined {
  return nodeFamilies(rec).find((f) => f.family === family)?.subnet
}

/** One cluster range a node claims a subnet of. */
export interface ClaimRange {
  /** Cluster range, CIDR text (e.g. `10.244.0.0/16`). */
  clusterCidr: string
  /** Prefix length of one node subnet (e.g. 24); must lie within the cluster range's. */
  prefixLength: number
  /**
   * When the node holds nothing of this range (first start, or its claim expired while the daemon
   * was down), take this subnet if it is free and fits the plan, before falling back to the lowest
   * free one — e.g. the subnet of the conflist the daemon wrote last time, so pods still running
   * with addresses from it keep working. Ignored when the node already holds a subnet of the range.
   */
  preferSubnet?: string
}

/**
 * What a daemon asks for at start: "give this node its subnet of this cluster range" — and,
 * dual-stack, of each further range in `moreRanges` (one range per family, the primary first):
 * the node gets a subnet of every range, or none, in one atomic write.
 */
export interface ClaimRequest extends ClaimRange {
  name: string
  /** The node's address of the primary family (of its first range's, when it has one). */
  nodeIP: string
  /** Every address of the node, at most one per family (nodeIP among them); absent: [nodeIP]. */
  nodeIPs?: string[]
  owner: string
  /** Dual-stack: the ranges after the first (clusterCidr/prefixLength/preferSubnet), one per other family. */
  moreRanges?: ClaimRange[]
  /** Published beside the subnet (a restart with other values updates them, like node addresses). */
  backend?: NodeBackend
  vtepMac?: string
}

/** Every range a request claims, primary first. */
export function claimRanges(req: ClaimRequest): ClaimRange[] {
  const first: ClaimRange = { clusterCidr: req.clusterCidr, prefixLength: req.prefixLength }
  if (req.preferSubnet !== undefined) first.preferSubnet = req.preferSubnet
  return [first, ...(req.moreRanges ?? [])]
}

/** Every address a request names, nodeIP first, without repeats. */
export function claimAddresses(req: ClaimRequest): string[] {
  return [...new Set([req.nodeIP, ...(req.nodeIPs ?? [])])]
}

export type DatastoreErrorKind =
  /** No free subnet is left in the cluster range (of one family: the message names the family). */
  | 'exhausted'
  /** The node name is held, live, by another owner. */
  | 'conflict'
  /** The claim of this node is gone (lease expired, or removed by `flatnetctl node remove`); claim again. */
  | 'lost'
  /** The backend cannot be reached or did not answer in time (the message names the endpoint or file). */
  | 'unavailable'
  /** The stored state cannot be read as flatnet state; it is left untouched for an operator. */
  | 'corrupt'
  /** The request itself is wrong (bad CIDR, prefix length outside the cluster range, …). */
  | 'invalid'

export class DatastoreError extends Error {
  override name = 'DatastoreError'
  readonly kind: DatastoreErrorKind
  constructor(kind: DatastoreErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.kind = kind
  }
}

export function isDatastoreError(err: unknown, kind?: DatastoreErrorKind): err is DatastoreError {
  return err instanceof DatastoreError && (kind === undefined || err.kind === kind)
}

/** Stops a watch; idempotent. */
export type StopWatch = () => void

export interface Datastore {
  /** Backend name for logs and metrics labels. */
  readonly kind: 'file' | 'etcd' | 'kubernetes'
  /**
   * Lease length in seconds (0 = claims never expire). A daemon calls renew() about every
   * third of it; with 0 it need not renew at all.
   */
  readonly leaseTtlSeconds: number

  /**
   * This node's subnet of each requested range (claimRanges): the one it already holds if any (a
   * restart with the same owner keeps it; node addresses are updated; a record of one family
   * claimed again with two ranges keeps its subnet and gains the other), else the range's
   * preferSubnet if free, else its lowest free subnet — all ranges in one compare-and-swap, so two
   * nodes starting at the same instant never get the same subnet, and a node gets every range or none.
   * A live record of the same name held by a different owner → 'conflict'; no free subnet →
   * 'exhausted' naming the cluster range; a held subnet outside the requested cluster range or
   * of another prefix length → 'invalid'.
   */
  claim(req: ClaimRequest): Promise<NodeRecord>

  /**
   * Keeps this node's claim alive (lease keep-alive on etcd, updatedAt heartbeat in the file).
   * The claim gone → 'lost' (the daemon should claim() again); held by another owner → 'conflict'.
   */
  renew(name: string, owner: string): Promise<void>

  /** Every live node, sorted by name. */
  list(): Promise<NodeRecord[]>

  /** Deletes the node's record and frees its subnet; false if there was none. */
  remove(name: string): Promise<boolean>

  /**
   * Calls onChange with the full list of live nodes (sorted by name) once at start and then
   * whenever it changes; bursts of changes may be coalesced into one call. Errors go to onError
   * and the watch keeps retrying. Returns a function that stops it.
   */
  watch(onChange: (nodes: NodeRecord[]) => void, onError: (err: Error) => void): StopWatch

  /**
   * Releases connections, timers and watches. Does NOT remove or revoke claims: a daemon that
   * stops for an upgrade keeps its subnet (on etcd the lease simply runs out if it never returns).
   */
  close(): Promise<void>
}

/**
 * Kubernetes only, and not part of Datastore: the Node's NetworkUnavailable condition, which
 * keeps the scheduler from placing pods on a node until its network is up.
 */
export interface NodeNetworkCondition {
  /** Sets Node `nodeName`'s NetworkUnavailable condition to False; false if it already was. */
  markNetworkAvailable(nodeName: string): Promise<boolean>
}

/** The backend also writes the Node's network condition (the kubernetes backend does). */
export function hasNodeNetworkCondition(ds: Datastore): ds is Datastore & NodeNetworkCondition {
  return typeof (ds as Partial<NodeNetworkCondition>).markNetworkAvailable === 'function'
}

/** Configuration of a datastore, as the daemon's config gives it. */
/**
 * What every backend can also do, and flatnetd never does: several claims at once, each with
 * claim()'s rules, in order — for seeding many nodes in benchmarks and tests (the file backend
 * does them in one write; others one transaction each). Reached through
 * daemon/datastore/testing/seeding.ts, not through the Datastore the daemon codes against.
 */
export interface SeedingDatastore extends Datastore {
  claimMany(reqs: ClaimRequest[]): Promise<NodeRecord[]>
}

export type DatastoreConfig =
  | {
      kind: 'file'
      /** The shared state file, e.g. `/var/lib/flatnet/nodes.json`. */
      path: string
      /** 0 (default) = records never expire; otherwise a record not renewed for this long may be taken over. */
      leaseTtlSeconds?: number
      /** watch() re-checks the file this often besides inotify (which can miss events); default 500 ms. */
      pollIntervalMs?: number
      /** A transaction waits this long for a live lock holder before failing 'unavailable'; default 10000 ms. */
      lockTimeoutMs?: number
    }
  | {
      kind: 'etcd'
      /** e.g. `['http://127.0.0.1:2379']`. */
      endpoints: string[]
      /** Key prefix, default `/flatnet/`. */
      prefix?: string
      /** Lease TTL, default 30 s. */
      leaseTtlSeconds?: number
      /** Deadline of one etcd request, default 5000 ms. */
      timeoutMs?: number
    }
  | {
      kind: 'kubernetes'
      /** Path of a kubeconfig file; absent: the pod's in-cluster service account. */
      kubeconfig?: string
      /**
       * `podCIDRs` (default): subnets are Node.spec.podCIDRs (kube-controller-manager
       * --allocate-node-cidrs); `flatnet`: flatnet allocates them itself (claim Leases + Node annotations).
       */
      subnetSource?: 'podCIDRs' | 'flatnet'
      /** The daemon's cluster range; picks the family of dual-stack podCIDRs and node addresses. */
      clusterCidr?: string
      /** Every cluster range of the daemon, primary first (dual-stack: one per family); when set, clusterCidr is its first. */
      clusterCidrs?: string[]
      /** Namespace of the subnet claim Leases (`flatnet` source), default `kube-system`. */
      claimNamespace?: string
      /** Deadline of one API request, default 5000 ms. */
      timeoutMs?: number
    }
