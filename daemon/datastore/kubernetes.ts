// The kubernetes datastore: node subnets and peers from the API server's Node objects.
//
// Two sources of subnets (see SubnetSource):
// - `podCIDRs` (default): the subnet is Node.spec.podCIDRs, assigned by kube-controller-manager.
//   flatnet writes nothing to the Node but, once routes are in place, its NetworkUnavailable
//   condition (markNetworkAvailable).
// - `flatnet`: flatnet allocates. Claiming subnet S for node N is two steps:
//     1. create the Lease `flatnet-subnet-<S>` in the claim namespace, holder N, owned by Node N.
//        Creation is create-if-absent on the server: of two nodes racing for S exactly one gets
//        201, the other 409 AlreadyExists and moves on to the next free subnet.
//     2. record S on Node N as annotations (flatnet.io/pod-cidr, …) with a merge patch that carries
//        the resourceVersion read before: a Node changed meanwhile (kubelet status, another claim
//        of the same node) answers 409 Conflict, and the claim reads the Node again and retries.
//   A crash between the steps leaves a Lease naming N and no annotation; N's next claim adopts it.
//   Removal goes the other way round (annotation first, so peers drop the route before anyone can
//   take the subnet; then the Lease). Deleting a Node frees its subnet through the garbage
//   collector, because the Lease's ownerReference names the Node.
// Peers are the Nodes that have a subnet (and an address of its family), from list + watch.
import { parseAddress, parseCidr, subnetIndex, type IpFamily } from '../../ipam/index.js'
import { NodeSubnetAllocator, isPlanSubnet, type NodeSubnetPlan } from '../../ipam/nodeSubnet.js'
import { checkAddressFree, checkClaimRequests, checkNodeName, checkOwnRecord, checkOwner, chooseSubnetOf, sortByName } from './claimRules.js'
import { KubeApiError, KubeConfigError, connectKubeApi, type KubeApi } from './kubernetesApi.js'
import {
  claimLabelSelector,
  claimLease,
  claimLeaseName,
  claimedSubnetOf,
  flatnetClaimOf,
  leaseHeldBy,
  nodeAnnotation,
  podCidrsOf,
  readNode,
  type LeaseJson,
  type ListJson,
  backendOf,
  type NodeJson,
  type NodeReading,
  type SubnetSource,
} from './kubernetesNodes.js'
import { watchNodes } from './kubernetesWatch.js'
import { DatastoreError, claimAddresses, claimRanges, subnetOf, type ClaimRange, type ClaimRequest, type NodeRecord, type SeedingDatastore, type StopWatch } from './types.js'

export interface KubernetesDatastoreOptions {
  /** Path of a kubeconfig file; absent: the in-cluster service account of the pod. */
  kubeconfig?: string
  /** Where node subnets come from; default `podCIDRs`. */
  subnetSource?: SubnetSource
  /**
   * The cluster range (the daemon's --cluster-cidr). Only its family is used here: which of a
   * dual-stack Node's podCIDRs and addresses count. Absent: each Node's first podCIDR.
   */
  clusterCidr?: string
  /** Every cluster range, primary first (dual-stack); when given, their families pick a Node's podCIDRs, in this order. */
  clusterCidrs?: string[]
  /** Namespace of the subnet claim Leases (`flatnet` source only); default `kube-system`. */
  claimNamespace?: string
  /** Deadline of one API request, default 5000 ms. */
  timeoutMs?: number
}

/** The NetworkUnavailable condition flatnet sets once this node's routes are programmed. */
export const networkAvailableReason = 'FlatnetRoutesCreated'

const maxConflicts = 20
const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

function hasStatus(err: unknown, status: number): err is KubeApiError {
  return err instanceof KubeApiError && err.status === status
}

export async function openKubernetesDatastore(options: KubernetesDatastoreOptions): Promise<KubernetesDatastore> {
  const subnetSource = options.subnetSource ?? 'podCIDRs'
  const timeoutMs = options.timeoutMs ?? 5000
  const claimNamespace = options.claimNamespace ?? 'kube-system'
  const invalid = (detail: string) => new DatastoreError('invalid', `open kubernetes datastore: ${detail}`)
  if (subnetSource !== 'podCIDRs' && subnetSource !== 'flatnet') throw invalid(`subnetSource ${JSON.stringify(subnetSource)} must be "podCIDRs" or "flatnet"`)
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw invalid(`timeoutMs ${timeoutMs} must be a whole number of milliseconds >= 1`)
  if (!dnsLabel.test(claimNamespace)) throw invalid(`claimNamespace ${JSON.stringify(claimNamespace)} is not a namespace name`)
  let families: IpFamily[] | undefined
  const ranges = options.clusterCidrs ?? (options.clusterCidr === undefined ? undefined : [options.clusterCidr])
  if (ranges !== undefined) {
    try {
      families = ranges.map((r) => parseCidr(r).family)
    } catch (err) {
      throw invalid(`clusterCidr: ${(err as Error).message}`)
    }
  }
  let api: KubeApi
  try {
    api = await connectKubeApi({ kubeconfig: options.kubeconfig, timeoutMs })
  } catch (err) {
    if (err instanceof KubeConfigError) throw invalid(err.message)
    throw err
  }
  const store = new KubernetesDatastore(api, subnetSource, families, claimNamespace)
  // An unreachable API server, or missing RBAC to list Nodes, is reported at open, not at first use.
  await store.probe()
  return store
}

export class KubernetesDatastore implements SeedingDatastore {
  readonly kind = 'kubernetes' as const
  /** Claims do not expire: a Node's subnet is held as long as the Node exists. */
  readonly leaseTtlSeconds = 0
  private readonly stops = new Set<StopWatch>()
  private readonly leasesPath: string

  constructor(
    private readonly api: KubeApi,
    readonly subnetSource: SubnetSource,
    private readonly families: IpFamily[] | undefined,
    readonly claimNamespace: string,
  ) {
    this.leasesPath = `/apis/coordination.k8s.io/v1/namespaces/${claimNamespace}/leases`
  }

  /** The API server, as error messages name it. */
  get server(): string {
    return this.api.server
  }

  async probe(): Promise<void> {
    await this.guard(`open kubernetes datastore`, () => this.api.request('GET', '/api/v1/nodes', { query: { limit: '1' } }))
  }

  async claim(req: ClaimRequest): Promise<NodeRecord> {
    const [record] = await this.claimMany([req])
    return record!
  }

  async claimMany(reqs: ClaimRequest[]): Promise<NodeRecord[]> {
    const plans = checkClaimRequests(reqs)
    if (!plans) return []
    const records: NodeRecord[] = []
    // The claim Leases are listed once per call; every Lease this call creates is added to it.
    let book: Promise<ClaimBook> | undefined
    const loadBook = () => (book ??= this.loadClaimBook(plans))
    // The other nodes' records, listed once per call; every record this call writes replaces its node's.
    let nodes: Promise<Map<string, NodeRecord>> | undefined
    const loadNodes = () => (nodes ??= this.readableRecords().then((rs) => new Map(rs.map((r) => [r.name, r]))))
    for (const req of reqs) {
      const operation = `claim a subnet for node ${req.name}`
      const record = await this.guard(operation, () => (this.subnetSource === 'podCIDRs' ? this.claimPodCidr(req, plans, operation) : this.claimFlatnet(req, plans, loadBook, loadNodes, operation)))
      if (nodes) (await nodes).set(record.name, record)
      records.push(record)
    }
    return records
  }

  async renew(name: string, owner: string): Promise<void> {
    const operation = `renew the claim of node ${name}`
    checkNodeName(name, operation)
    checkOwner(owner, operation)
    await this.guard(operation, async () => {
      const node = await this.getNode(name)
      if (this.subnetSource === 'podCIDRs') {
        if (!node || podCidrsOf(node).length === 0) throw new DatastoreError('lost', `${operation}: Node ${name} ${node ? 'has no spec.podCIDRs' : 'no longer exists'} on ${this.server}`)
        return
      }
      const found = node ? flatnetClaimOf(node) : undefined
      if (found?.kind === 'corrupt') throw this.corrupt(found.why, operation)
      if (found?.kind !== 'claim')
        throw new DatastoreError('lost', `${operation}: Node ${name} ${node ? 'holds no flatnet subnet any more (removed)' : 'no longer exists'} on ${this.server}; claim again`)
      if (found.claim.owner !== owner) throw new DatastoreError('conflict', `${operation}: Node ${name} is held by owner ${JSON.stringify(found.claim.owner)}, not ${JSON.stringify(owner)}`)
    })
  }

  async list(): Promise<NodeRecord[]> {
    const operation = `list nodes`
    return this.guard(operation, async () => {
      const list = await this.api.request<ListJson<NodeJson>>('GET', '/api/v1/nodes')
      const records: NodeRecord[] = []
      for (const node of list.items) {
        const reading = this.read(node)
        if (reading.kind === 'corrupt') throw this.corrupt(reading.why, operation)
        if (reading.kind === 'record') records.push(reading.record)
      }
      return sortByName(records)
    })
  }

  /** Every Node that reads as a flatnet record; unreadable ones are left out (list() reports them). */
  private async readableRecords(): Promise<NodeRecord[]> {
    const list = await this.api.request<ListJson<NodeJson>>('GET', '/api/v1/nodes')
    const records: NodeRecord[] = []
    for (const node of list.items) {
      const reading = this.read(node)
      if (reading.kind === 'record') records.push(reading.record)
    }
    return records
  }

  /**
   * `flatnet` source: removes the node's annotations, then deletes its claim Leases, freeing the
   * subnet (the Node itself stays: it is the cluster's). `podCIDRs` source: there is nothing of
   * flatnet's to free — the cluster's allocation goes with the Node — so a node that has a
   * podCIDR is refused with a message saying so.
   */
  async remove(name: string): Promise<boolean> {
    const operation = `remove node ${name}`
    checkNodeName(name, operation)
    return this.guard(operation, async () => {
      if (this.subnetSource === 'podCIDRs') {
        const node = await this.getNode(name)
        const cidrs = node ? podCidrsOf(node) : []
        if (cidrs.length === 0) return false
        throw new DatastoreError(
          'invalid',
          `${operation}: its subnet ${cidrs.join(',')} is Node.spec.podCIDRs, assigned by kube-controller-manager, not by flatnet; it is freed when the Node is deleted (kubectl delete node ${name})`,
        )
      }
      let removed = false
      for (let attempt = 1; ; attempt++) {
        const node = await this.getNode(name)
        const annotations = node?.metadata.annotations ?? {}
        if (!node || !Object.values(nodeAnnotation).some((key) => key in annotations)) break
        try {
          await this.patchNodeAnnotations(node, Object.fromEntries(Object.values(nodeAnnotation).map((key) => [key, null])))
          removed = true
          break
        } catch (err) {
          if (hasStatus(err, 404)) break
          if (!hasStatus(err, 409) || attempt >= maxConflicts) throw err
          await sleep(Math.random() * 10 * attempt)
        }
      }
      for (const lease of await this.listClaimLeases()) {
        if (lease.spec?.holderIdentity === name && (await this.deleteLease(lease))) removed = true
      }
      return removed
    })
  }

  watch(onChange: (nodes: NodeRecord[]) => void, onError: (err: Error) => void): StopWatch {
    const stopWatching = watchNodes({
      api: this.api,
      read: (node) => this.read(node),
      onChange,
      onError,
      failure: (err, operation) => this.failure(err, operation),
      corrupt: (why, operation) => this.corrupt(why, operation),
    })
    const stop = () => {
      stopWatching()
      this.stops.delete(stop)
    }
    this.stops.add(stop)
    return stop
  }

  /**
   * Sets the Node's NetworkUnavailable condition to False (reason FlatnetRoutesCreated), which
   * the daemon does once its routes are in place; kube-scheduler keeps pods off a node whose
   * network is unavailable, and cloud node controllers set it True on new nodes. A strategic
   * merge patch of nodes/status, merged by condition type, so kubelet's conditions are untouched.
   * Returns false (and writes nothing) when the condition is already False.
   */
  async markNetworkAvailable(nodeName: string): Promise<boolean> {
    const operation = `mark the network of node ${nodeName} available`
    checkNodeName(nodeName, operation)
    return this.guard(operation, async () => {
      const node = await this.getNode(nodeName)
      if (!node) throw new DatastoreError('invalid', `${operation}: Node ${nodeName} does not exist on ${this.server}`)
      if (node.status?.conditions?.find((c) => c.type === 'NetworkUnavailable')?.status === 'False') return false
      const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
      const condition = {
        type: 'NetworkUnavailable',
        status: 'False',
        reason: networkAvailableReason,
        message: 'flatnet routes to the other nodes are in place',
        lastTransitionTime: now,
        lastHeartbeatTime: now,
      }
      await this.api.request('PATCH', `${this.nodePath(nodeName)}/status`, { body: { status: { conditions: [condition] } }, contentType: 'application/strategic-merge-patch+json' })
      return true
    })
  }

  async close(): Promise<void> {
    for (const stop of [...this.stops]) stop()
  }

  // --- claims -----------------------------------------------------------------------------

  private async claimPodCidr(req: ClaimRequest, plans: readonly NodeSubnetPlan[], operation: string): Promise<NodeRecord> {
    const node = await this.requireNode(req.name, operation)
    const families = plans.map((p) => p.cluster.family)
    for (const plan of plans) {
      const cidrs = podCidrsOf(node).filter((c) => c.includes(':') === (plan.cluster.family === 6))
      if (cidrs.length > 0) continue
      // Usually a moment after the Node registers; for good when the cluster does not allocate (or not this family).
      throw new DatastoreError(
        'unavailable',
        `${operation}: Node ${req.name} has no spec.podCIDRs of IPv${plan.cluster.family} yet; kube-controller-manager assigns them with --allocate-node-cidrs (one per family of its --cluster-cidr) — if this cluster does not, run flatnet with subnet source "flatnet"`,
      )
    }
    let reading = readNode(node, 'podCIDRs', families)
    if (reading.kind !== 'record') throw new DatastoreError('invalid', `${operation}: ${reading.why}: peers could not route to it`)
    // The subnet is the cluster's; the backend fields are flatnet's to publish, as annotations.
    if (reading.record.backend !== req.backend || reading.record.vtepMac !== req.vtepMac) {
      for (let attempt = 1; ; attempt++) {
        try {
          const current = attempt === 1 ? node : await this.requireNode(req.name, operation)
          const patched = await this.patchNodeAnnotations(current, { [nodeAnnotation.backend]: req.backend ?? null, [nodeAnnotation.vtepMac]: req.vtepMac ?? null })
          reading = readNode(patched, 'podCIDRs', families)
          if (reading.kind !== 'record') throw new DatastoreError('invalid', `${operation}: ${reading.why}: peers could not route to it`)
          break
        } catch (err) {
          if (!hasStatus(err, 409) || attempt >= maxConflicts) throw err
          await sleep(Math.random() * 10 * attempt)
        }
      }
    }
    for (const plan of plans) {
      const subnet = parseCidr(subnetOf(reading.record, plan.cluster.family)!)
      if (subnetIndex(plan.cluster, subnet) === undefined) {
        throw new DatastoreError(
          'invalid',
          `${operation}: Node ${req.name} has podCIDR ${subnet.text}, outside flatnet's cluster range ${plan.cluster.text}; set flatnet's cluster range to the cluster's pod range (kube-controller-manager --cluster-cidr)`,
        )
      }
    }
    return reading.record
  }

  private async claimFlatnet(
    req: ClaimRequest,
    plans: readonly NodeSubnetPlan[],
    loadBook: () => Promise<ClaimBook>,
    loadNodes: () => Promise<Map<string, NodeRecord>>,
    operation: string,
  ): Promise<NodeRecord> {
    const addresses = claimAddresses(req)
    if (!addresses.some((a) => plans.some((p) => p.cluster.family === parseAddress(a).family))) {
      throw new DatastoreError('invalid', `${operation}: node IP ${addresses.join(',')} is not of a cluster range's family (${plans.map((p) => p.cluster.text).join(', ')})`)
    }
    // Before anything is written. Like every backend's (claimRules.ts); two Nodes annotated with
    // one address at the same instant both pass (the address is no object of its own), and the
    // daemons' own check of the node list reports that case.
    checkAddressFree(req, (await loadNodes()).values())
    const ranges = claimRanges(req)
    // Per range, the Lease to record on the Node: adopted (left by an interrupted claim of this
    // Node) or created by this call. Those this call created are freed again if the claim does not
    // record them (another daemon annotated the Node first, or another range is exhausted: every
    // range or none); an adopted one stays for the next claim.
    const taken = new Map<number, { lease: LeaseJson; createdHere: boolean }>()
    try {
      for (let attempt = 1; ; attempt++) {
        const node = await this.requireNode(req.name, operation)
        const found = flatnetClaimOf(node)
        if (found.kind === 'corrupt') throw this.corrupt(found.why, operation)
        let own: NodeRecord | undefined
        if (found.kind === 'claim') {
          const { claim } = found
          own = { name: req.name, nodeIP: claim.nodeIP ?? req.nodeIP, subnet: claim.subnet, owner: claim.owner, updatedAt: claim.updatedAt }
          if (claim.subnets.length > 1) own.subnets = claim.subnets
        }
        // The rules every backend shares: another owner → conflict, a held subnet outside the plan → invalid.
        checkOwnRecord(req, own)
        const subnets: string[] = []
        for (const [i, plan] of plans.entries()) {
          if (own && subnetOf(own, plan.cluster.family) !== undefined) {
            const held = chooseSubnetOf(req, ranges[i]!, own, new NodeSubnetAllocator(plan, []), 1).text
            await this.ensureClaimLease(held, node, operation)
            subnets.push(held)
            continue
          }
          const book = await loadBook()
          let t = taken.get(i)
          if (!t) {
            const adopted = book.adoptable(node, plan)
            t = adopted ? { lease: adopted, createdHere: false } : { lease: await this.createClaimLease(req, ranges[i]!, node, book, i), createdHere: true }
            taken.set(i, t)
          }
          subnets.push(claimedSubnetOf(t.lease)!.text)
        }
        const claimed = found.kind === 'claim' ? found.claim : undefined
        const published = backendOf(node)
        if (claimed && claimed.subnets.join() === subnets.join() && claimed.nodeIPs.join() === addresses.join() && published.backend === req.backend && published.vtepMac === req.vtepMac)
          return this.recordOf(node, operation)
        try {
          const patched = await this.patchNodeAnnotations(node, {
            [nodeAnnotation.podCidr]: subnets[0]!,
            [nodeAnnotation.podCidrs]: subnets.length > 1 ? subnets.join(',') : null,
            [nodeAnnotation.owner]: req.owner,
            [nodeAnnotation.nodeIP]: req.nodeIP,
            [nodeAnnotation.nodeIPs]: addresses.length > 1 ? addresses.join(',') : null,
            [nodeAnnotation.updatedAt]: new Date().toISOString(),
            [nodeAnnotation.backend]: req.backend ?? null,
            [nodeAnnotation.vtepMac]: req.vtepMac ?? null,
          })
          taken.clear()
          return this.recordOf(patched, operation)
        } catch (err) {
          // Conflict: the Node changed since we read it. Read it again; our Leases, if any, are kept for the retry.
          if (!hasStatus(err, 409) || attempt >= maxConflicts) throw err
          await sleep(Math.random() * 10 * attempt)
        }
      }
    } finally {
      for (const t of taken.values()) if (t.createdHere) await this.deleteLease(t.lease).catch(() => undefined)
    }
  }

  /** Creates the Lease of the lowest free subnet of range `index` (or its preferred one); a subnet another node got first is skipped. */
  private async createClaimLease(req: ClaimRequest, range: ClaimRange, node: NodeJson, book: ClaimBook, index: number): Promise<LeaseJson> {
    for (;;) {
      const subnet = chooseSubnetOf(req, range, undefined, book.allocators[index]!, book.leases.length).text
      try {
        const lease = await this.api.request<LeaseJson>('POST', this.leasesPath, { body: claimLease(subnet, node, this.claimNamespace, new Date()) })
        book.leases.push(lease)
        return lease
      } catch (err) {
        // AlreadyExists: another node won this subnet; the allocator already counts it as used.
        if (!hasStatus(err, 409)) throw err
      }
    }
  }

  /** The Lease of a subnet a Node's annotation claims must exist and be held by that Node; recreated if it went missing. */
  private async ensureClaimLease(subnet: string, node: NodeJson, operation: string): Promise<void> {
    const path = `${this.leasesPath}/${claimLeaseName(subnet)}`
    for (let attempt = 1; attempt <= maxConflicts; attempt++) {
      let lease: LeaseJson | undefined
      try {
        lease = await this.api.request<LeaseJson>('GET', path)
      } catch (err) {
        if (!hasStatus(err, 404)) throw err
      }
      if (lease && leaseHeldBy(lease, node)) return
      if (lease && lease.spec?.holderIdentity !== node.metadata.name) {
        throw this.corrupt(
          `Node ${node.metadata.name} claims ${subnet} (annotation ${nodeAnnotation.podCidr}), but Lease ${this.claimNamespace}/${lease.metadata.name} holds it for ${JSON.stringify(lease.spec?.holderIdentity)}; remove one of the two nodes (flatnetctl node remove)`,
          operation,
        )
      }
      try {
        // A Lease of an earlier Node of this name: the garbage collector would delete it under us.
        if (lease) {
          await this.deleteLease(lease)
        } else {
          await this.api.request('POST', this.leasesPath, { body: claimLease(subnet, node, this.claimNamespace, new Date()) })
          return
        }
      } catch (err) {
        if (!hasStatus(err, 409)) throw err
      }
    }
    throw new DatastoreError(
      'unavailable',
      `${operation}: Kubernetes API ${this.server}: Lease ${this.claimNamespace}/${claimLeaseName(subnet)} kept changing under ${maxConflicts} attempts to restore it`,
    )
  }

  private async loadClaimBook(plans: readonly NodeSubnetPlan[]): Promise<ClaimBook> {
    const leases = await this.listClaimLeases()
    const used = leases.map((l) => claimedSubnetOf(l)!)
    return {
      leases,
      allocators: plans.map((plan) => new NodeSubnetAllocator(plan, used)),
      adoptable(node, plan) {
        return leases.find((l) => leaseHeldBy(l, node) && isPlanSubnet(plan, claimedSubnetOf(l)!))
      },
    }
  }

  /** The well-formed claim Leases of the claim namespace. */
  private async listClaimLeases(): Promise<LeaseJson[]> {
    const list = await this.api.request<ListJson<LeaseJson>>('GET', this.leasesPath, { query: { labelSelector: claimLabelSelector } })
    return list.items.filter((l) => claimedSubnetOf(l) !== undefined)
  }

  /** Deletes a claim Lease if it is still the one we read (uid and resourceVersion); false if it was gone or replaced. */
  private async deleteLease(lease: LeaseJson): Promise<boolean> {
    try {
      await this.api.request('DELETE', `${this.leasesPath}/${lease.metadata.name}`, {
        body: { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: lease.metadata.uid, resourceVersion: lease.metadata.resourceVersion } },
      })
      return true
    } catch (err) {
      if (hasStatus(err, 404) || hasStatus(err, 409)) return false
      throw err
    }
  }

  // --- Nodes ------------------------------------------------------------------------------

  private nodePath(name: string): string {
    return `/api/v1/nodes/${encodeURIComponent(name)}`
  }

  private read(node: NodeJson): NodeReading {
    return readNode(node, this.subnetSource, this.families)
  }

  private async getNode(name: string): Promise<NodeJson | undefined> {
    try {
      return await this.api.request<NodeJson>('GET', this.nodePath(name))
    } catch (err) {
      if (hasStatus(err, 404)) return undefined
      throw err
    }
  }

  private async requireNode(name: string, operation: string): Promise<NodeJson> {
    const node = await this.getNode(name)
    if (node) return node
    throw new DatastoreError('invalid', `${operation}: Node ${name} does not exist on ${this.server}; flatnet's node name must be the Kubernetes Node name (e.g. NODE_NAME from the downward API)`)
  }

  /** A JSON merge patch of annotations (null deletes one), guarded by the resourceVersion of `node`. */
  private async patchNodeAnnotations(node: NodeJson, annotations: Record<string, string | null>): Promise<NodeJson> {
    return this.api.request<NodeJson>('PATCH', this.nodePath(node.metadata.name), {
      body: { metadata: { resourceVersion: node.metadata.resourceVersion, annotations } },
      contentType: 'application/merge-patch+json',
    })
  }

  private recordOf(node: NodeJson, operation: string): NodeRecord {
    const reading = readNode(node, 'flatnet')
    if (reading.kind === 'record') return reading.record
    throw new DatastoreError(reading.kind === 'corrupt' ? 'corrupt' : 'invalid', `${operation}: ${reading.why}`)
  }

  // --- errors -----------------------------------------------------------------------------

  private corrupt(why: string, operation: string): DatastoreError {
    return new DatastoreError('corrupt', `${operation}: ${why} (API server ${this.server})`)
  }

  private failure(err: unknown, operation: string): DatastoreError {
    if (err instanceof DatastoreError) return err
    const message = err instanceof Error ? err.message : String(err)
    if (err instanceof KubeConfigError) return new DatastoreError('invalid', `${operation}: ${message}`, { cause: err })
    // 400/422: the server refused the request itself; anything else (5xx, 429, 401/403 RBAC,
    // no connection, no answer in time) is the API server being unavailable to us.
    const kind = err instanceof KubeApiError && (err.status === 400 || err.status === 422) ? 'invalid' : 'unavailable'
    return new DatastoreError(kind, `${operation}: Kubernetes API ${this.server}: ${message}`, { cause: err })
  }

  private async guard<T>(operation: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (err) {
      throw this.failure(err, operation)
    }
  }
}

/** The claim Leases as one claim() or claimMany() call knows them, with an allocator over them. */
interface ClaimBook {
  leases: LeaseJson[]
  /** One per cluster range of the claim, in its order. */
  allocators: NodeSubnetAllocator[]
  /** A Lease of the plan's range already held by this Node (left by a claim interrupted before it annotated the Node). */
  adoptable(node: NodeJson, plan: NodeSubnetPlan): LeaseJson | undefined
}
