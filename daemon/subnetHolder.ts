// Holding this node's subnet: claim it, keep the claim alive, claim again when it is lost. A claim
// that fails (range exhausted, name held by another daemon, datastore down) is not fatal: the
// daemon stays up, reports why through /readyz, and retries — an operator freeing a subnet or
// bringing the datastore back is enough, no restart needed.
import type { Logger } from 'pino'
import { errField } from './log.js'
import { parseCidr } from '../ipam/index.js'
import { claimRanges, isDatastoreError, nodeFamilies, type ClaimRange, type ClaimRequest, type Datastore, type NodeRecord } from './datastore/types.js'

/** Every subnet of a record, comma separated, in its order. */
function subnetsText(rec: NodeRecord): string {
  return nodeFamilies(rec)
    .map((f) => f.subnet)
    .join(',')
}

function addressesText(rec: NodeRecord): string {
  return (rec.nodeIPs ?? [rec.nodeIP]).join(',')
}

function sameSubnets(a: NodeRecord, b: NodeRecord): boolean {
  return subnetsText(a) === subnetsText(b)
}

export interface SubnetHolderOptions {
  /** Wait between failed claims. */
  retryMs: number
  log: Logger
  /** Every failed datastore operation, for the metrics. */
  onDatastoreError(op: string, err: unknown): void
  /** The held record changed (first claim, a claim after a loss that gave another subnet) or was lost (undefined). */
  onChange(record: NodeRecord | undefined): void
  /** The datastore started or stopped refusing this node's claim as invalid (see refusal()). */
  onRefusalChange?(): void
  /** Subnets to ask for first (at most one per family) when the node holds none (e.g. those of the conflist on disk). */
  preferSubnets?: string[]
}

export class NodeSubnetHolder {
  private record: NodeRecord | undefined
  private problem = 'claiming the node subnet'
  /** Set while the datastore refuses this node's request as invalid (e.g. --cluster-cidr changed). */
  private refused: string | undefined
  private timer: NodeJS.Timeout | undefined
  private busy = false
  private stopped = false
  /** After a loss, the subnets just lost: pods hold addresses from them, so they are asked for again. */
  private preferSubnets: string[]

  constructor(
    private readonly ds: Datastore,
    private readonly req: ClaimRequest,
    private readonly opts: SubnetHolderOptions,
  ) {
    this.preferSubnets = opts.preferSubnets ?? []
  }

  /** The request with each range's preferred subnet: the one of its family among preferSubnets. */
  private request(): ClaimRequest {
    const preferred = (range: ClaimRange): ClaimRange => {
      const family = parseCidr(range.clusterCidr).family
      const subnet = this.preferSubnets.find((s) => s.includes(':') === (family === 6))
      return subnet === undefined ? range : { ...range, preferSubnet: subnet }
    }
    const [first, ...more] = claimRanges(this.req).map(preferred)
    const req: ClaimRequest = { ...this.req, ...first! }
    if (more.length) req.moreRanges = more
    return req
  }

  start(): void {
    void this.claim()
  }

  held(): NodeRecord | undefined {
    return this.record
  }

  /** Why no subnet is held (meaningful when held() is undefined). */
  reason(): string {
    return this.problem
  }

  /**
   * Why the datastore refuses this node's claim as invalid — its held subnet lies outside the
   * configured cluster range or has another prefix length (a changed or mistyped --cluster-cidr,
   * a podCIDR outside it). Undefined otherwise. While set, the configuration is refused.
   */
  refusal(): string | undefined {
    return this.refused
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
  }

  /**
   * A fresh node list (from the watch): if our record is gone or changed hands, the claim is lost
   * (e.g. `flatnetctl node remove` of this node, or a lease that ran out). Confirmed with a fresh
   * list() before acting, since a watch event may carry a list read just before our claim landed.
   */
  observe(nodes: readonly NodeRecord[]): void {
    const mine = this.record
    if (!mine || this.busy || this.stopped) return
    const seen = nodes.find((n) => n.name === mine.name)
    if (seen && seen.owner === mine.owner && sameSubnets(seen, mine)) return
    this.busy = true
    void (async () => {
      try {
        const now = (await this.ds.list()).find((n) => n.name === mine.name)
        if (now && now.owner === mine.owner && sameSubnets(now, mine)) return
        this.lose(now ? `node ${mine.name} is now held by owner ${now.owner} with subnet ${subnetsText(now)}` : `node ${mine.name} is no longer in the datastore`)
      } catch (e) {
        this.opts.onDatastoreError('list', e)
      } finally {
        this.busy = false
      }
      if (!this.record && !this.stopped) void this.claim()
    })()
  }

  private lose(why: string): void {
    this.opts.log.warn({ node: this.req.name, subnet: this.record?.subnet, why }, 'node subnet claim lost; claiming again')
    this.record = undefined
    this.problem = `node subnet claim lost (${why}); claiming again`
    this.opts.onChange(undefined)
  }

  private schedule(fn: () => Promise<void>, ms: number): void {
    clearTimeout(this.timer)
    if (this.stopped) return
    this.timer = setTimeout(() => void fn(), ms)
  }

  private async claim(): Promise<void> {
    if (this.stopped) return
    if (this.busy) return this.schedule(() => this.claim(), this.opts.retryMs)
    this.busy = true
    try {
      const rec = await this.ds.claim(this.request())
      if (this.stopped) return
      const changed = !this.record || !sameSubnets(rec, this.record) || addressesText(rec) !== addressesText(this.record)
      this.record = rec
      this.preferSubnets = nodeFamilies(rec).map((f) => f.subnet)
      this.problem = ''
      const wasRefused = this.refused !== undefined
      this.refused = undefined
      if (wasRefused) this.opts.onRefusalChange?.()
      this.opts.log.info({ subnet: subnetsText(rec), nodeIP: addressesText(rec), datastore: this.ds.kind }, 'node subnet held')
      if (changed) this.opts.onChange(rec)
      this.scheduleRenew()
    } catch (e) {
      if (this.stopped) return
      this.opts.onDatastoreError('claim', e)
      this.problem = `node subnet not held: ${e instanceof Error ? e.message : String(e)}`
      const wasRefused = this.refused !== undefined
      this.refused = isDatastoreError(e, 'invalid') ? e.message : undefined
      if (wasRefused !== (this.refused !== undefined)) this.opts.onRefusalChange?.()
      // Exhaustion and conflicts are an operator's to fix: error level, once per attempt, with the reason.
      const level = isDatastoreError(e, 'exhausted') || isDatastoreError(e, 'conflict') || isDatastoreError(e, 'invalid') ? 'error' : 'warn'
      this.opts.log[level]({ err: errField(e), retryInMs: this.opts.retryMs }, 'claim node subnet failed; retrying')
      this.schedule(() => this.claim(), this.opts.retryMs)
    } finally {
      this.busy = false
    }
  }

  private scheduleRenew(): void {
    const ttl = this.ds.leaseTtlSeconds
    if (ttl > 0) this.schedule(() => this.renew(), (ttl * 1000) / 3)
  }

  private async renew(): Promise<void> {
    if (this.stopped || !this.record) return
    if (this.busy) return this.schedule(() => this.renew(), 100)
    this.busy = true
    let again: 'renew' | 'retry' | 'claim' = 'renew'
    try {
      await this.ds.renew(this.req.name, this.req.owner)
    } catch (e) {
      again = 'retry'
      if (this.stopped) return
      this.opts.onDatastoreError('renew', e)
      if (isDatastoreError(e, 'lost') || isDatastoreError(e, 'conflict')) {
        this.lose(e.message)
        again = 'claim'
      } else {
        // Unreachable for a moment: keep the subnet (the lease may still run) and try again soon.
        this.opts.log.warn({ err: errField(e) }, 'renew node subnet claim failed; retrying')
      }
    } finally {
      this.busy = false
    }
    if (again === 'claim') return this.claim()
    const third = (this.ds.leaseTtlSeconds * 1000) / 3
    this.schedule(() => this.renew(), again === 'retry' ? Math.min(third, this.opts.retryMs) : third)
  }
}
