// One runner for every reconciler: what used to be one pass of four steps sharing state is now a
// schedule per reconciler, so a slow or failing concern (an nft that hangs, a read-only sysctl)
// never delays or reruns another.
//
// Per reconciler: triggers coalesce (requests arriving during a sync cause exactly one more sync,
// with the union of what changed); syncs are spaced by a minimum interval with a burst allowance
// (a token bucket, like kube-proxy's bounded-frequency runner); a failure retries only its owner,
// soon, and makes its next sync full; every `intervalMs` each gets a full sync, so a lost event or
// a hand-made change is repaired within one interval. A reconciler is not synced before all its
// inputs have been fully listed once, nor — if it is a dataplane concern — while the
// configuration is refused (the last good state stays in force).
import type { Logger } from 'pino'
import type { InputKind, InputSource, ReadinessGate, Reconciler, SyncRequest } from './contract.js'

export interface RunnerMetrics {
  /** One sync of `reconciler` took `seconds`. */
  synced(reconciler: string, seconds: number, ok: boolean, at: number): void
}

export interface RunnerOptions {
  /** Full sync of every reconciler this often. */
  intervalMs: number
  /** Wait before retrying a failed reconciler. */
  retryMs: number
  /** Least time between two syncs of one reconciler once its burst is spent. */
  minIntervalMs: number
  /** Syncs one reconciler may run back to back before minIntervalMs applies. */
  burst: number
  /** A sync running longer than this makes /healthz fail (a hung kernel or datastore call). */
  stuckAfterMs: number
  log: Logger
  metrics?: RunnerMetrics
  /** Called after every sync (e.g. the node condition follows the first good routes sync). */
  afterSync?(reconciler: string, ok: boolean): void
}

/** One reconciler's line in /readyz. */
export interface ReconcilerReadiness {
  name: string
  ok: boolean
  /** Whether `ok: false` makes the node not ready. */
  gates: boolean
  reason?: string
  warnings?: string[]
}

export interface RunnerReadiness {
  ready: boolean
  /** Why not ready, most fundamental first: gates, then each gating reconciler (`name: reason`). */
  reasons: string[]
  reconcilers: ReconcilerReadiness[]
}

interface Outcome {
  ok: boolean
  problems: string[]
  at: number
}

/** The schedule of one reconciler. */
class Slot<V extends InputSource> {
  running = false
  /** A sync is wanted (set by triggers, cleared when a sync starts). */
  pending = false
  pendingFull = true
  pendingChanged = new Set<InputKind>()
  /** The last sync failed: the next one is full. */
  mustBeFull = true
  tokens: number
  tokensAt = 0
  timer: NodeJS.Timeout | undefined
  retryTimer: NodeJS.Timeout | undefined
  startedAt = 0
  current: Promise<void> = Promise.resolve()
  last: Outcome | undefined
  /** Why the last trigger did not sync (inputs not listed, configuration refused). */
  waiting: string | undefined
  constructor(
    readonly r: Reconciler<V>,
    burst: number,
  ) {
    this.tokens = burst
  }
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))

export class Runner<V extends InputSource> {
  private readonly slots: Array<Slot<V>>
  private ticker: NodeJS.Timeout | undefined
  private stopped = false
  private started = false

  constructor(
    private readonly view: V,
    reconcilers: ReadonlyArray<Reconciler<V>>,
    private readonly gates: readonly ReadinessGate[],
    private readonly opts: RunnerOptions,
  ) {
    this.slots = reconcilers.map((r) => new Slot(r, opts.burst))
  }

  get reconcilers(): ReadonlyArray<Reconciler<V>> {
    return this.slots.map((s) => s.r)
  }

  /** Logs what each reconciler owns, syncs each once, and starts the periodic full syncs. */
  start(): void {
    this.started = true
    for (const s of this.slots) this.opts.log.info({ reconciler: s.r.name, owns: s.r.owns, inputs: s.r.inputs, gatesReadiness: s.r.gatesReadiness }, 'reconciler started')
    this.ticker = setInterval(() => this.syncAll(true), this.opts.intervalMs)
    this.syncAll(true)
  }

  /** Asks every reconciler for a sync (full: compare with what is there). */
  syncAll(full: boolean): void {
    for (const s of this.slots) this.request(s, full, [])
  }

  /** These inputs changed: the reconcilers that read them sync (partially), the others do not. */
  inputsChanged(kinds: readonly InputKind[]): void {
    for (const s of this.slots) {
      if (s.r.inputs.some((k) => kinds.includes(k))) this.request(s, false, kinds)
    }
  }

  /** A readiness gate changed (e.g. a refusal ended): reconcilers held back by it sync now. */
  gatesChanged(): void {
    for (const s of this.slots) if (s.waiting !== undefined) this.request(s, true, [])
  }

  private request(s: Slot<V>, full: boolean, changed: readonly InputKind[]): void {
    if (this.stopped || !this.started) return
    s.pending = true
    s.pendingFull ||= full
    for (const k of changed) s.pendingChanged.add(k)
    if (s.running || s.timer) return // the loop in run() or the armed timer picks it up
    this.schedule(s)
  }

  /** Runs now if the bucket has a token, else arms a timer for when it will. */
  private schedule(s: Slot<V>): void {
    const now = Date.now()
    const { minIntervalMs, burst } = this.opts
    if (minIntervalMs > 0) s.tokens = Math.min(burst, s.tokens + (now - s.tokensAt) / minIntervalMs)
    s.tokensAt = now
    if (minIntervalMs <= 0 || s.tokens >= 1) {
      s.tokens -= 1
      s.current = this.run(s)
      return
    }
    s.timer = setTimeout(
      () => {
        s.timer = undefined
        if (!this.stopped && s.pending && !s.running) this.schedule(s)
      },
      Math.ceil((1 - s.tokens) * minIntervalMs),
    )
  }

  private refusal(): string | undefined {
    for (const g of this.gates) {
      const why = g.refusal?.()
      if (why) return why
    }
    return undefined
  }

  private async run(s: Slot<V>): Promise<void> {
    s.running = true
    try {
      while (s.pending && !this.stopped) {
        const missing = s.r.inputs.filter((k) => !this.view.synced(k))
        const refused = s.r.holdsWhileRefused ? this.refusal() : undefined
        if (missing.length || refused) {
          // Keep the request: inputsChanged()/gatesChanged() brings it back once they are there.
          s.waiting = missing.length ? `waiting for ${missing.join(', ')} to be fully listed` : `${refused}; keeping the last good state`
          return
        }
        s.waiting = undefined
        const req: SyncRequest = { full: s.pendingFull || s.mustBeFull, changed: new Set(s.pendingChanged) }
        s.pending = false
        s.pendingFull = false
        s.pendingChanged.clear()
        await this.syncOnce(s, req)
        // Coalesced triggers during the sync left s.pending set; spend a token for the rerun.
        if (s.pending && !this.stopped) {
          const now = Date.now()
          if (this.opts.minIntervalMs > 0) s.tokens = Math.min(this.opts.burst, s.tokens + (now - s.tokensAt) / this.opts.minIntervalMs)
          s.tokensAt = now
          if (this.opts.minIntervalMs > 0 && s.tokens < 1) {
            s.running = false
            this.schedule(s)
            return
          }
          s.tokens -= 1
        }
      }
    } finally {
      s.running = false
    }
  }

  private async syncOnce(s: Slot<V>, req: SyncRequest): Promise<void> {
    s.startedAt = Date.now()
    const t0 = process.hrtime.bigint()
    let problems: string[]
    let changed = false
    try {
      const r = await s.r.sync(this.view, req)
      problems = r.problems
      changed = r.changed
    } catch (e) {
      problems = [`${s.r.name}: ${errorText(e)}`]
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    const at = Date.now()
    s.last = { ok: problems.length === 0, problems, at }
    this.opts.metrics?.synced(s.r.name, seconds, problems.length === 0, at)
    this.opts.afterSync?.(s.r.name, problems.length === 0)
    if (problems.length) {
      s.mustBeFull = true
      // A few of many errors tell the story; the rest would flood the log.
      this.opts.log.error({ reconciler: s.r.name, problems: problems.slice(0, 10), failures: problems.length }, 'reconcile failed')
      this.scheduleRetry(s)
    } else {
      s.mustBeFull = false
    }
    this.opts.log[changed ? 'info' : 'debug']({ reconciler: s.r.name, full: req.full, seconds }, 'reconcile done')
  }

  private scheduleRetry(s: Slot<V>): void {
    if (s.retryTimer || this.stopped) return
    s.retryTimer = setTimeout(() => {
      s.retryTimer = undefined
      this.request(s, true, [])
    }, this.opts.retryMs)
  }

  readiness(): RunnerReadiness {
    const reasons: string[] = []
    for (const g of this.gates) {
      const p = g.problem()
      if (p) reasons.push(p)
    }
    const reconcilers = this.slots.map((s): ReconcilerReadiness => {
      const st = s.r.status()
      let reason: string | undefined
      if (s.waiting) reason = s.waiting
      else if (s.last && !s.last.ok) reason = `last sync failed: ${s.last.problems.slice(0, 3).join('; ')}${s.last.problems.length > 3 ? ` (and ${s.last.problems.length - 3} more)` : ''}`
      else if (st.reason) reason = st.reason
      else if (!s.last) reason = 'not synced yet'
      const line: ReconcilerReadiness = { name: s.r.name, ok: reason === undefined, gates: s.r.gatesReadiness }
      if (reason !== undefined) line.reason = reason
      if (st.warnings?.length) line.warnings = st.warnings
      return line
    })
    for (const r of reconcilers) if (r.gates && !r.ok) reasons.push(`${r.name}: ${r.reason}`)
    return { ready: reasons.length === 0, reasons, reconcilers }
  }

  /** Alive unless a sync has been running far longer than any should (a hung kernel or datastore call). */
  liveness(): { alive: boolean; reason?: string } {
    const now = Date.now()
    for (const s of this.slots) {
      if (s.running && s.waiting === undefined && now - s.startedAt > this.opts.stuckAfterMs) {
        return { alive: false, reason: `reconciler ${s.r.name}: a sync has been running for ${Math.round((now - s.startedAt) / 1000)} s` }
      }
    }
    return { alive: true }
  }

  /** Stops scheduling; lets syncs in flight finish their kernel requests (up to `graceMs`). */
  async stop(graceMs = 500): Promise<void> {
    this.stopped = true
    clearInterval(this.ticker)
    for (const s of this.slots) {
      clearTimeout(s.timer)
      clearTimeout(s.retryTimer)
    }
    if (graceMs > 0) await Promise.race([Promise.all(this.slots.map((s) => s.current)), new Promise((r) => setTimeout(r, graceMs).unref())])
  }
}
