// The cluster as flatnetd sees it, in one place: the datastore's lifecycle (open, reopen after a
// failure, watch, periodic list, trouble), this node's subnet claim (subnetHolder.ts), and the
// typed snapshots reconcilers read — the only thing they read. Each kind has a "fully listed"
// flag; the runner never syncs a reconciler before the kinds it needs are fully listed.
//
// Trouble (the datastore unreachable, or holding records flatnet cannot read) keeps the last good
// node list: routes stay as they are, the node is not ready, and a list() every retry period
// tells when the datastore is back (a watch may stay silent after it returns).
import type { Logger } from 'pino'
import type { DaemonConfig } from '../conf/daemonConfig.js'
import { readConflistSubnets } from './conflistWriter.js'
import { vtepMacOf } from './vxlan.js'
import { isDatastoreError, nodeFamilies, openDatastore, type ClaimRequest, type Datastore, type NodeRecord, type StopWatch } from './datastore/index.js'
import { errField } from './log.js'
import type { InputKind, InputSource, ReadinessGate } from './reconcile/contract.js'
import { NodeSubnetHolder } from './subnetHolder.js'

/** Longest the daemon goes without a full node list from the datastore (watch or list()). */
const FRESH_LIST_MS = 60_000

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))

export interface ClusterViewOptions {
  config: DaemonConfig
  /** The node's address of the primary family (or, lacking one, its first). */
  nodeIP: string
  /** Every address of the node, one per family it has among the cluster ranges' (cluster-range order). */
  nodeIPs?: string[]
  ownerId: string
  log: Logger
  /** Wait before reopening, re-listing or re-claiming after a failure. */
  retryMs: number
  /** Every failed datastore operation (for the metrics). */
  onDatastoreError(op: string): void
  /** Inputs that changed (a new node list, a new or lost subnet). */
  onChange(kinds: InputKind[]): void
  /** The configuration started or stopped being refused (see refusalGate). */
  onRefusalChange(): void
  /** This node's held record changed (undefined: lost). */
  onSubnet(record: NodeRecord | undefined): void
}

/**
 * This node's claim: one subnet per cluster range (primary first, the others in `moreRanges`),
 * with every node address it has; all ranges or none.
 */
export function claimRequestOf(
  cfg: Pick<DaemonConfig, 'nodeName' | 'clusterCidrs' | 'nodePrefixLengths'> & Partial<Pick<DaemonConfig, 'backend'>>,
  nodeIP: string,
  nodeIPs: readonly string[],
  owner: string,
): ClaimRequest {
  const ranges = cfg.clusterCidrs.map((clusterCidr, i) => ({ clusterCidr, prefixLength: cfg.nodePrefixLengths[i]! }))
  const req: ClaimRequest = { name: cfg.nodeName, nodeIP, owner, ...ranges[0]! }
  // A node that can tunnel publishes its backend and VTEP MAC beside its subnet; a host-gw node
  // publishes nothing new, so its records read exactly as earlier versions wrote them.
  if (cfg.backend !== undefined && cfg.backend !== 'host-gw') {
    req.backend = cfg.backend
    req.vtepMac = vtepMacOf(cfg.nodeName)
  }
  if (nodeIPs.length > 1 || (nodeIPs.length === 1 && nodeIPs[0] !== nodeIP)) req.nodeIPs = [...nodeIPs]
  if (ranges.length > 1) req.moreRanges = ranges.slice(1)
  return req
}

export class ClusterView implements InputSource {
  private ds: Datastore | undefined
  private holder: NodeSubnetHolder | undefined
  private stopWatch: StopWatch | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private probeTimer: NodeJS.Timeout | undefined
  private staleTimer: NodeJS.Timeout | undefined
  private stopped = false
  private openProblem = 'opening the datastore'
  /** The last failure of a datastore read or write, until a full list succeeds again. */
  private trouble: string | undefined
  /** Counts failures, so a list that started before a new failure does not clear it. */
  private troubleSeq = 0
  /**
   * Lists the watch has delivered. A list() that began before the latest of them may have been
   * read before it (etcd, frozen and resumed, answered a list sent during the outage after the
   * watch had already delivered a newer claim): its result is dropped, never allowed to replace a
   * newer list — that once removed a just-added peer's route until the next change.
   */
  private watchDeliveries = 0
  private nodeList: NodeRecord[] | undefined
  private freshListAt = 0
  /** A subnet has been held since start: the datastore accepted this node's configuration once. */
  private accepted = false

  constructor(private readonly opts: ClusterViewOptions) {}

  /** Opens the datastore in the background (and reopens it until it opens). */
  start(): void {
    const period = Math.min(FRESH_LIST_MS, this.opts.config.reconcileIntervalSeconds * 1000)
    this.staleTimer = setInterval(() => void this.relistIfStale(), period)
    void this.open()
  }

  synced(kind: InputKind): boolean {
    if (kind === 'podRoutes') return true // the kernel's, read at each sync
    return kind === 'nodes' ? this.nodeList !== undefined : this.self() !== undefined
  }

  /** The latest full node list (watch or periodic list), sorted by name; undefined until the first. */
  nodes(): readonly NodeRecord[] | undefined {
    return this.nodeList
  }

  /** This node's record while its subnet is held. */
  self(): NodeRecord | undefined {
    return this.holder?.held()
  }

  /** The open datastore (for the node-condition writer); undefined until open. */
  datastore(): Datastore | undefined {
    return this.ds
  }

  /** Readiness: the datastore open and readable, and this node's subnet held. */
  readonly gate: ReadinessGate = {
    name: 'cluster',
    problem: () => {
      const reasons: string[] = []
      if (this.openProblem) reasons.push(this.openProblem)
      else if (this.trouble) reasons.push(this.trouble)
      if (!this.openProblem && !this.self()) reasons.push(this.holder?.reason() || 'claiming the node subnet')
      return reasons.length ? reasons.join('; ') : undefined
    },
    refusal: () => {
      const refused = this.holder?.refusal()
      if (refused) return `configuration refused: ${refused}`
      if (!this.accepted) return 'configuration not confirmed yet (no node subnet held since start)'
      return undefined
    },
  }

  private async open(): Promise<void> {
    if (this.stopped) return
    const cfg = this.opts.config
    try {
      this.ds = await openDatastore(cfg.datastore)
    } catch (e) {
      this.countError('open', e)
      this.openProblem = `datastore not open: ${errorText(e)}`
      this.opts.log.error({ err: errField(e), retryInMs: this.opts.retryMs }, 'open datastore failed; retrying')
      this.retryTimer = setTimeout(() => void this.open(), this.opts.retryMs)
      return
    }
    if (this.stopped) {
      await this.ds.close()
      return
    }
    this.openProblem = ''
    this.opts.log.info({ datastore: this.ds.kind, leaseTtlSeconds: this.ds.leaseTtlSeconds }, 'datastore open')
    // A node whose record went away while the daemon was down asks for the subnets its pods have.
    const preferSubnets = await readConflistSubnets(cfg.cniConfDir)
    this.holder = new NodeSubnetHolder(this.ds, claimRequestOf(cfg, this.opts.nodeIP, this.opts.nodeIPs ?? [this.opts.nodeIP], this.opts.ownerId), {
      retryMs: this.opts.retryMs,
      preferSubnets,
      log: this.opts.log,
      onDatastoreError: (op, e) => this.countError(op, e),
      onChange: (rec) => {
        const wasAccepted = this.accepted
        if (rec) this.accepted = true
        this.opts.onSubnet(rec)
        if (!wasAccepted && this.accepted) this.opts.onRefusalChange()
        this.opts.onChange(['subnet'])
      },
      onRefusalChange: () => {
        const why = this.holder?.refusal()
        if (why) this.opts.log.error({ reason: why }, 'configuration refused: not ready; routes and masquerade keep their last good state')
        else this.opts.log.info('configuration accepted again')
        this.opts.onRefusalChange()
      },
    })
    this.holder.start()
    this.stopWatch = this.ds.watch(
      (nodes) => {
        this.watchDeliveries++
        this.freshList(nodes, this.troubleSeq)
      },
      (e) => {
        this.countError('watch', e)
        this.opts.log.warn({ err: errField(e) }, 'datastore watch error (it keeps retrying)')
      },
    )
  }

  private countError(op: string, e: unknown): void {
    this.opts.onDatastoreError(op)
    this.opts.log.debug({ op, err: errField(e) }, 'datastore operation failed')
    // Claims refused (conflict, exhaustion) are the holder's to report; these two mean the
    // datastore itself cannot be used right now.
    if (isDatastoreError(e, 'unavailable') || isDatastoreError(e, 'corrupt')) {
      this.troubleSeq++
      const first = this.trouble === undefined
      this.trouble = `datastore ${this.opts.config.datastore.kind} ${e.kind === 'corrupt' ? 'holds records flatnet cannot read' : 'unavailable'} (${op}): ${e.message}; keeping the routes of the last good node list`
      if (first) this.opts.log.error({ op, err: errField(e), retryInMs: this.opts.retryMs }, 'datastore trouble: not ready; routes stay as they are; retrying')
      this.scheduleProbe()
    }
  }

  /** A full node list (watch or list()). Clears the trouble unless a failure came after `seq`. */
  private freshList(nodes: NodeRecord[], seq: number): void {
    this.nodeList = nodes
    this.freshListAt = Date.now()
    if (this.trouble !== undefined && seq === this.troubleSeq) {
      this.trouble = undefined
      this.opts.log.info({ nodes: nodes.length }, 'datastore readable again')
    }
    this.holder?.observe(nodes)
    this.warnPeersWithoutAddress(nodes)
    this.opts.onChange(['nodes'])
  }

  /** Peers lacking an address of one of their families, as last warned about ("name/family"). */
  private addressless = new Set<string>()

  /**
   * A peer without an address of one of its subnets' families is still listed (its other families
   * are routed), but nothing can route that family's pods to it: warned once, until it changes.
   */
  private warnPeersWithoutAddress(nodes: readonly NodeRecord[]): void {
    const now = new Set<string>()
    for (const n of nodes) {
      if (n.name === this.opts.config.nodeName) continue
      for (const f of nodeFamilies(n)) {
        if (f.nodeIP !== undefined) continue
        const key = `${n.name}/${f.family}`
        now.add(key)
        if (!this.addressless.has(key)) {
          this.opts.log.warn({ peer: n.name, family: `IPv${f.family}`, subnet: f.subnet }, `peer node has no IPv${f.family} address: its IPv${f.family} pods get no route from this node`)
        }
      }
    }
    this.addressless = now
  }

  /** While in trouble, list() every retry period: this is what tells that the datastore is back. */
  private scheduleProbe(): void {
    if (this.probeTimer || this.stopped || !this.ds) return
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined
      const ds = this.ds
      if (this.stopped || !ds || this.trouble === undefined) return
      const seq = this.troubleSeq
      const watched = this.watchDeliveries
      ds.list().then(
        (nodes) => {
          if (!this.stopped && watched === this.watchDeliveries) this.freshList(nodes, seq)
        },
        (e) => this.countError('list', e),
      )
    }, this.opts.retryMs)
  }

  /**
   * The node list is re-read from the datastore itself only when the watch has been quiet for a
   * while (a watch could miss, or stall): with thousands of nodes a full read is the costliest
   * thing the daemon does, and the watch already hands over every change.
   */
  private async relistIfStale(): Promise<void> {
    const ds = this.ds
    if (this.stopped || !ds || Date.now() - this.freshListAt < FRESH_LIST_MS) return
    const seq = this.troubleSeq
    const watched = this.watchDeliveries
    try {
      const nodes = await ds.list()
      if (!this.stopped && watched === this.watchDeliveries) this.freshList(nodes, seq)
    } catch (e) {
      this.countError('list', e)
      this.opts.log.warn({ err: errField(e) }, 'list nodes failed; reconciling with the last known list')
    }
  }

  /** Stops the watch, the claim's renewals and the timers; closes the datastore. The claim stays. */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.retryTimer)
    clearTimeout(this.probeTimer)
    clearInterval(this.staleTimer)
    this.stopWatch?.()
    this.holder?.stop()
  }

  async close(): Promise<void> {
    await this.ds?.close()
  }
}
