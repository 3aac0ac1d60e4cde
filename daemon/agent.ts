// The daemon's loop. Level-triggered: every pass compares what should be (this node's conflist,
// the masquerade table, one route per on-link peer) with what is, and fixes the difference. A
// pass runs on every datastore change (coalesced: changes arriving during a pass cause exactly one
// more pass) and every --reconcile-interval, so a lost event, a crash, or a hand-made change is
// repaired within one interval.
import type { Logger } from 'pino'
import type { DaemonConfig } from '../conf/daemonConfig.js'
import { parseCidr, type Cidr } from '../ipam/index.js'
import { chainPlan } from '../conf/conflist.js'
import { ensureSysctl } from '../net/sysctl.js'
import { ChainedPluginProbe } from './chainedPlugins.js'
import { conflistPath, readConflistSubnet, writeConflist } from './conflistWriter.js'
import { isDatastoreError, openDatastore, type Datastore, type NodeRecord, type StopWatch } from './datastore/index.js'
import type { Liveness, Readiness } from './health.js'
import { errField } from './log.js'
import { ensureMasquerade } from './masquerade.js'
import type { DaemonMetrics } from './metrics.js'
import { reconcileRoutes, type RouteReconcileReport, type RouteSockets } from './routeProgrammer.js'
import { peerRouteText } from './routes.js'
import { NodeSubnetHolder } from './subnetHolder.js'

export interface AgentOptions {
  config: DaemonConfig
  /** This node's address (from --node-ip or detected). */
  nodeIP: string
  ownerId: string
  /** Netlink sockets of the daemon's (host) namespace. */
  sockets: RouteSockets
  log: Logger
  metrics: DaemonMetrics
}

interface PassOutcome {
  ok: boolean
  /** Why the pass failed (empty when ok). */
  problems: string[]
  at: number
}

/** Longest the daemon goes without a full node list from the datastore (watch or list()). */
const FRESH_LIST_MS = 60_000

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))

export class Agent {
  private readonly cfg: DaemonConfig
  private readonly cluster: Cidr
  private readonly log: Logger
  private readonly metrics: DaemonMetrics
  private readonly retryMs: number
  private readonly chained: ChainedPluginProbe
  private ds: Datastore | undefined
  private holder: NodeSubnetHolder | undefined
  private stopWatch: StopWatch | undefined
  private ticker: NodeJS.Timeout | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private retryPass: NodeJS.Timeout | undefined
  private stopped = false
  private datastoreProblem = 'opening the datastore'
  /**
   * The last failure of a datastore read or write (unreachable, or records it cannot read), until a
   * full list succeeds again. The routes stay as they are meanwhile: the last good node list is kept.
   */
  private datastoreTrouble: string | undefined
  /** Counts failures, so a list that started before a new failure does not clear it. */
  private troubleSeq = 0
  private probeTimer: NodeJS.Timeout | undefined

  /** The latest full node list (watch or periodic list); undefined until the first one. */
  private nodes: NodeRecord[] | undefined
  private freshListAt = 0
  private running = false
  private again = false
  private passStartedAt = 0
  private current: Promise<void> = Promise.resolve()
  private last: PassOutcome | undefined
  /** NetworkUnavailable=False has been written for this node (kubernetes datastore only). */
  private networkMarked = false
  /** Subnet of the conflist last written successfully (or found up to date). */
  private conflistSubnet: string | undefined
  private conflistProblem: string | undefined
  private reportedSkips = ''

  constructor(private readonly opts: AgentOptions) {
    this.cfg = opts.config
    this.cluster = parseCidr(opts.config.clusterCidr)
    this.log = opts.log
    this.metrics = opts.metrics
    this.retryMs = Math.min(5000, opts.config.reconcileIntervalSeconds * 1000)
    this.chained = new ChainedPluginProbe(opts.config.cniPath)
  }

  /** Starts the loop; returns at once (the datastore is opened, and reopened, in the background). */
  start(): void {
    this.ticker = setInterval(() => void this.tick(), this.cfg.reconcileIntervalSeconds * 1000)
    void this.open()
  }

  private async open(): Promise<void> {
    if (this.stopped) return
    try {
      this.ds = await openDatastore(this.cfg.datastore)
    } catch (e) {
      this.countDatastoreError('open', e)
      this.datastoreProblem = `datastore not open: ${errorText(e)}`
      this.log.error({ err: errField(e), retryInMs: this.retryMs }, 'open datastore failed; retrying')
      this.retryTimer = setTimeout(() => void this.open(), this.retryMs)
      return
    }
    if (this.stopped) {
      await this.ds.close()
      return
    }
    this.datastoreProblem = ''
    this.log.info({ datastore: this.ds.kind, leaseTtlSeconds: this.ds.leaseTtlSeconds }, 'datastore open')
    // A node whose record went away while the daemon was down asks for the subnet its pods have.
    const preferSubnet = await readConflistSubnet(this.cfg.cniConfDir)
    this.holder = new NodeSubnetHolder(
      this.ds,
      { name: this.cfg.nodeName, nodeIP: this.opts.nodeIP, owner: this.opts.ownerId, clusterCidr: this.cfg.clusterCidr, prefixLength: this.cfg.nodePrefixLength },
      {
        retryMs: this.retryMs,
        preferSubnet,
        log: this.log,
        onDatastoreError: (op, e) => this.countDatastoreError(op, e),
        onChange: (rec) => {
          this.metrics.nodeSubnetInfo.clear()
          if (rec) this.metrics.nodeSubnetInfo.set(1, { subnet: rec.subnet, node: rec.name })
          this.trigger()
        },
      },
    )
    this.holder.start()
    this.stopWatch = this.ds.watch(
      (nodes) => this.freshList(nodes, this.troubleSeq),
      (e) => {
        this.countDatastoreError('watch', e)
        this.log.warn({ err: errField(e) }, 'datastore watch error (it keeps retrying)')
      },
    )
  }

  private countDatastoreError(op: string, e: unknown): void {
    this.metrics.datastoreErrors.inc()
    this.log.debug({ op, err: errField(e) }, 'datastore operation failed')
    // Claims refused (conflict, exhaustion) are the holder's to report; these two mean the
    // datastore itself cannot be used right now.
    if (isDatastoreError(e, 'unavailable') || isDatastoreError(e, 'corrupt')) {
      this.troubleSeq++
      const first = this.datastoreTrouble === undefined
      this.datastoreTrouble = `datastore ${this.cfg.datastore.kind} ${e.kind === 'corrupt' ? 'holds records flatnet cannot read' : 'unavailable'} (${op}): ${e.message}; keeping the routes of the last good node list`
      if (first) this.log.error({ op, err: errField(e), retryInMs: this.retryMs }, 'datastore trouble: not ready; routes stay as they are; retrying')
      this.scheduleProbe()
    }
  }

  /** A full node list from the datastore (watch or list()). Clears the trouble unless a failure came after `seq`. */
  private freshList(nodes: NodeRecord[], seq: number): void {
    this.nodes = nodes
    this.freshListAt = Date.now()
    if (this.datastoreTrouble !== undefined && seq === this.troubleSeq) {
      this.datastoreTrouble = undefined
      this.log.info({ nodes: nodes.length }, 'datastore readable again')
    }
    this.holder?.observe(nodes)
    this.trigger()
  }

  /**
   * While in trouble, list() every retry period: a watch may stay silent after the datastore
   * returns (nothing changed), so this is what tells that it is back, and what catches up.
   */
  private scheduleProbe(): void {
    if (this.probeTimer || this.stopped || !this.ds) return
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined
      const ds = this.ds
      if (this.stopped || !ds || this.datastoreTrouble === undefined) return
      const seq = this.troubleSeq
      ds.list().then(
        (nodes) => {
          if (!this.stopped) this.freshList(nodes, seq)
        },
        (e) => this.countDatastoreError('list', e),
      )
    }, this.retryMs)
  }

  /**
   * Periodic pass. The kernel is compared every time; the node list is re-read from the datastore
   * itself only when the watch has been quiet for a while (a watch could miss, or stall) — with
   * thousands of nodes a full read is the costliest thing the daemon does, and the watch already
   * hands over every change.
   */
  private async tick(): Promise<void> {
    if (this.stopped) return
    if (this.ds && Date.now() - this.freshListAt >= FRESH_LIST_MS) {
      const seq = this.troubleSeq
      try {
        const nodes = await this.ds.list()
        this.freshList(nodes, seq)
        return
      } catch (e) {
        this.countDatastoreError('list', e)
        this.log.warn({ err: errField(e) }, 'list nodes failed; reconciling with the last known list')
      }
    }
    this.trigger()
  }

  /** Asks for a pass; while one runs, requests collapse into one more pass after it. */
  trigger(): void {
    if (this.stopped) return
    if (this.running) {
      this.again = true
      return
    }
    this.running = true
    this.current = (async () => {
      try {
        do {
          this.again = false
          await this.pass()
        } while (this.again && !this.stopped)
      } finally {
        this.running = false
      }
    })()
  }

  private async pass(): Promise<void> {
    this.passStartedAt = Date.now()
    const t0 = process.hrtime.bigint()
    const problems: string[] = []
    let changed = false

    // Three independent steps, run side by side: a slow nft or disk never delays the routes.
    const rec = this.holder?.held()
    const conflistStep = async () => {
      if (!rec) return
      try {
        const portmap = await this.chained.versions('portmap')
        const plan = chainPlan(portmap, this.cfg.cniVersion)
        if (await writeConflist(this.cfg.cniConfDir, { ranges: [rec.subnet], dataDir: this.cfg.ipamDataDir, mtu: this.cfg.mtu, portmap, cniVersion: this.cfg.cniVersion })) {
          changed = true
          this.log.info({ path: conflistPath(this.cfg.cniConfDir), subnet: rec.subnet, mtu: this.cfg.mtu, cniVersion: plan.cniVersion, portmap: plan.withPortmap }, 'conflist written')
          if (!plan.withPortmap) {
            this.log.warn({ cniPath: this.cfg.cniPath, portmap }, portmap === 'absent'
              ? 'no portmap plugin on the CNI path: conflist written without it, hostPort will not work'
              : 'the portmap plugin on the CNI path speaks no CNI version flatnet does: conflist written without it, hostPort will not work')
          }
        }
        this.conflistSubnet = rec.subnet
        this.conflistProblem = undefined
      } catch (e) {
        this.conflistProblem = `conflist not written: ${errorText(e)}`
        problems.push(this.conflistProblem)
      }
    }
    const masqueradeStep = async () => {
      if (!this.cfg.masquerade) return
      try {
        if (await ensureMasquerade(this.cluster)) {
          changed = true
          this.log.info({ cluster: this.cluster.text }, 'masquerade table installed')
        }
      } catch (e) {
        problems.push(errorText(e))
      }
    }
    let routesDone = false
    const routeStep = async () => {
      if (!this.nodes) return
      try {
        const report = await reconcileRoutes(this.opts.sockets, { nodes: this.nodes, self: this.cfg.nodeName, cluster: this.cluster })
        this.logRoutes(report)
        changed ||= report.added + report.replaced + report.removed > 0
        this.metrics.routesProgrammed.set(report.programmed)
        this.metrics.peersSkipped.set(report.skipped.length + report.conflicts.length)
        for (const e of report.errors) problems.push(e.message)
        routesDone = true
      } catch (e) {
        problems.push(`reconcile routes: ${errorText(e)}`)
      }
    }
    // Level-triggered like the rest: set at every pass, so an unprivileged container whose
    // read-only /proc/sys holds 0 keeps the daemon up, not ready, retrying — and a 0 written by
    // someone later is repaired.
    const forwardingStep = async () => {
      try {
        if (await ensureSysctl('net.ipv4.ip_forward', '1')) {
          changed = true
          this.log.info('set net.ipv4.ip_forward=1')
        }
      } catch (e) {
        problems.push(`${errorText(e)}: pods cannot be routed until net.ipv4.ip_forward is 1`)
      }
    }
    await Promise.all([forwardingStep(), routeStep(), conflistStep(), masqueradeStep()])

    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    this.metrics.reconcileDuration.observe(seconds)
    if (problems.length) {
      this.metrics.reconcileErrors.inc()
      // Level-triggered repair should not wait a whole interval after a failure.
      this.scheduleRetry()
      // A few of many route errors tell the story; the rest would flood the log.
      this.log.error({ problems: problems.slice(0, 10), failures: problems.length }, 'reconcile failed')
    }
    // Without a node list the routes are not known to be right: not a failure, but not done.
    if (routesDone || problems.length) this.last = { ok: problems.length === 0, problems, at: Date.now() }
    if (routesDone && problems.length === 0) await this.markNetworkAvailable()
    this.log[changed ? 'info' : 'debug']({ seconds, nodes: this.nodes?.length }, 'reconcile done')
    this.metrics.ready.set(this.readiness().ready ? 1 : 0)
  }

  /**
   * Tells Kubernetes this node's pod network is up (the Node's NetworkUnavailable condition to
   * False), once routes are in place: the scheduler keeps pods off a node until then. Backends
   * without Nodes have no such method. A failure is retried at the next good pass.
   */
  private async markNetworkAvailable(): Promise<void> {
    if (this.networkMarked || !this.ds?.markNetworkAvailable) return
    try {
      const changed = await this.ds.markNetworkAvailable(this.cfg.nodeName)
      this.networkMarked = true
      if (changed) this.log.info({ node: this.cfg.nodeName }, 'node condition NetworkUnavailable set to False')
    } catch (e) {
      this.countDatastoreError('mark network available', e)
      this.log.warn({ err: errField(e) }, 'could not set the node condition NetworkUnavailable=False; retrying at the next pass')
    }
  }

  private logRoutes(r: RouteReconcileReport): void {
    if (r.added + r.replaced + r.removed > 0) {
      this.log.info({ desired: r.desired, added: r.added, replaced: r.replaced, removed: r.removed, kept: r.kept }, 'routes to peers reconciled')
    }
    // Off-link peers and conflicts are reported once when they appear or change, not every pass.
    const skips = [
      ...r.skipped.map((s) => `${s.node}: ${s.reason}`),
      ...r.conflicts.map((c) => `${c.route.node}: route ${peerRouteText(c.route)} not added: ${c.holder.dst}/${c.holder.dstLength} is already routed by protocol ${c.holder.protocol}`),
    ].join('\n')
    if (skips !== this.reportedSkips) {
      for (const s of r.skipped) this.log.warn({ peer: s.node, subnet: s.subnet, nodeIP: s.nodeIP, reason: s.reason }, 'peer node gets no route')
      for (const c of r.conflicts) {
        this.log.warn({ peer: c.route.node, route: peerRouteText(c.route), holderProtocol: c.holder.protocol, holderGateway: c.holder.gateway }, 'peer route not added: a route of another owner holds this destination')
      }
      this.reportedSkips = skips
    }
  }

  private scheduleRetry(): void {
    if (this.retryPass || this.stopped) return
    this.retryPass = setTimeout(() => {
      this.retryPass = undefined
      this.trigger()
    }, Math.min(1000, this.cfg.reconcileIntervalSeconds * 1000))
  }

  readiness(): Readiness {
    const reasons: string[] = []
    const rec = this.holder?.held()
    if (this.datastoreProblem) reasons.push(this.datastoreProblem)
    else if (this.datastoreTrouble) reasons.push(this.datastoreTrouble)
    if (!this.datastoreProblem && !rec) reasons.push(this.holder?.reason() || 'claiming the node subnet')
    if (rec) {
      if (this.conflistProblem) reasons.push(this.conflistProblem)
      else if (this.conflistSubnet !== rec.subnet) reasons.push(`conflist for ${rec.subnet} not written yet`)
    }
    if (!this.last) reasons.push('routes not reconciled yet')
    else if (!this.last.ok) reasons.push(`last reconcile failed: ${this.last.problems.slice(0, 3).join('; ')}${this.last.problems.length > 3 ? ` (and ${this.last.problems.length - 3} more)` : ''}`)
    return { ready: reasons.length === 0, node: this.cfg.nodeName, subnet: rec?.subnet, reasons }
  }

  /** Alive unless a pass has been stuck far longer than any pass should take (a hung kernel or datastore call). */
  liveness(): Liveness {
    const limitMs = Math.max(60_000, 6 * this.cfg.reconcileIntervalSeconds * 1000)
    if (this.running && Date.now() - this.passStartedAt > limitMs) {
      return { alive: false, reason: `a reconcile pass has been running for ${Math.round((Date.now() - this.passStartedAt) / 1000)} s` }
    }
    return { alive: true }
  }

  /** Stops the loop and closes the datastore. Routes, conflist and masquerade stay as they are. */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.ticker)
    clearTimeout(this.retryTimer)
    clearTimeout(this.retryPass)
    clearTimeout(this.probeTimer)
    this.stopWatch?.()
    this.holder?.stop()
    // Let a pass in flight finish its netlink requests rather than cut them mid-batch.
    await Promise.race([this.current, new Promise((r) => setTimeout(r, 500).unref())])
    await this.ds?.close()
  }
}
