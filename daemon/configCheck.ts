// The node's configuration judged against the host it runs on (nodeChecks.ts): the node address
// must be one of this host's addresses, and the cluster range and this node's subnet must stay
// clear of the node address, the host's connected networks and the service range. A failure
// refuses the configuration: the node is not ready, naming the clash, and the dataplane
// reconcilers keep their last good state (nothing is rewritten for a configuration the node does
// not accept). Checked at start, every --reconcile-interval (addresses come and go) and whenever
// the node's subnet changes.
import type { Logger } from 'pino'
import type { DaemonConfig } from '../conf/daemonConfig.js'
import type { Rtnl } from '../net/rtnl.js'
import { errField } from './log.js'
import { nodeConfigProblems, readHostNetwork } from './nodeChecks.js'
import type { ReadinessGate } from './reconcile/contract.js'

export interface NodeConfigCheckOptions {
  config: Pick<DaemonConfig, 'clusterCidrs' | 'serviceCidrs' | 'reconcileIntervalSeconds'>
  nodeIP: string
  /** Every address of this node, one per family (nodeIP among them). */
  nodeIPs?: readonly string[]
  rtnl: () => Rtnl
  /** This node's held subnets (one per family), empty when it holds none. */
  subnets: () => readonly string[]
  log: Logger
  /** The verdict changed (refused ↔ accepted, or another reason). */
  onChange(): void
}

export class NodeConfigCheck {
  /** undefined: not checked yet. */
  private problems: string[] | undefined
  private timer: NodeJS.Timeout | undefined
  private running = false
  private again = false
  private stopped = false

  constructor(private readonly opts: NodeConfigCheckOptions) {}

  start(): void {
    this.timer = setInterval(() => this.check(), this.opts.config.reconcileIntervalSeconds * 1000)
    this.check()
  }

  stop(): void {
    this.stopped = true
    clearInterval(this.timer)
  }

  readonly gate: ReadinessGate = {
    name: 'config',
    problem: () => this.refusal(),
    refusal: () => this.refusal(),
  }

  private refusal(): string | undefined {
    if (this.problems === undefined) return 'configuration not checked against this host yet'
    return this.problems.length ? `configuration refused: ${this.problems.join('; ')}` : undefined
  }

  /** Checks now (coalesced with a check in flight). */
  check(): void {
    if (this.stopped) return
    if (this.running) {
      this.again = true
      return
    }
    this.running = true
    void (async () => {
      try {
        do {
          this.again = false
          await this.checkOnce()
        } while (this.again && !this.stopped)
      } finally {
        this.running = false
      }
    })()
  }

  private async checkOnce(): Promise<void> {
    let problems: string[]
    try {
      const host = await readHostNetwork(this.opts.rtnl())
      problems = nodeConfigProblems(
        {
          clusterCidrs: this.opts.config.clusterCidrs,
          serviceCidrs: this.opts.config.serviceCidrs,
          nodeIP: this.opts.nodeIP,
          nodeIPs: this.opts.nodeIPs ?? [this.opts.nodeIP],
          nodeSubnets: this.opts.subnets(),
        },
        host,
      )
    } catch (e) {
      // Not knowing the host is no verdict: keep the last one (or "not checked yet") and retry.
      this.opts.log.warn({ err: errField(e) }, "read this host's addresses for the configuration check failed; retrying")
      return
    }
    const before = this.problems?.join('\n')
    this.problems = problems
    if (before === problems.join('\n')) return
    if (problems.length) this.opts.log.error({ problems }, 'configuration refused: not ready; routes, conflist and masquerade keep their last good state')
    else if (before !== undefined) this.opts.log.info('configuration accepted again')
    this.opts.onChange()
  }
}
