// The NetworkPolicy truth table, after upstream's approach (the e2e netpol suite's "reachability"
// matrices): every pod probes every pod on every port/protocol of the case, and the whole
// observed from × to matrix is compared with the expected one, which the test writes by hand
// from the semantics (never computed by the policy code under test).
//
// A probe counts as "connected" only when the answer came from the pod it was sent to and that pod
// saw the sender's own address (no NAT): anything else is a wrong answer, reported as such.
// A pod talking to itself never leaves its namespace (its own address is local there): the
// diagonal is always expected connected.
import { controlSocketPath, PodProber, type PodProbeResult, type ProbeProtocol } from '../responder.js'
import { podRef } from '../podSpec.js'
import type { LabLayout } from '../layout.js'
import type { LabPod } from '../state.js'

/** One port and protocol the matrix is probed on. */
export interface Target {
  port: number
  protocol: ProbeProtocol
}

export const targetText = (t: Target) => `${t.port}/${t.protocol}`

/** A set of pods: a pod ref (`x/a`), a namespace (`x/*`), everything (`*`), or a list of those. */
export type PodSet = string | readonly string[]

/** The expected verdict of every (from, to, target) cell. Starts all-connected or all-blocked. */
export class Expectation {
  private readonly cells = new Map<string, boolean>()

  constructor(
    readonly pods: readonly string[],
    readonly targets: readonly Target[],
    connected = true,
  ) {
    for (const from of pods) for (const to of pods) for (const t of targets) this.cells.set(cellKey(from, to, t), connected)
  }

  private expand(set: PodSet): string[] {
    const items = typeof set === 'string' ? [set] : set
    const out = new Set<string>()
    for (const item of items) {
      const matched = this.pods.filter((p) => item === '*' || p === item || (item.endsWith('/*') && p.startsWith(item.slice(0, -1))))
      if (matched.length === 0) throw new Error(`expectation: ${JSON.stringify(item)} names no pod of ${this.pods.join(', ')}`)
      matched.forEach((p) => out.add(p))
    }
    return [...out]
  }

  private matchTargets(only?: Partial<Target>): Target[] {
    return this.targets.filter((t) => (only?.port === undefined || t.port === only.port) && (only?.protocol === undefined || t.protocol === only.protocol))
  }

  /** Sets the verdict from every pod of `from` to every pod of `to` (on `only` targets, default all). */
  set(from: PodSet, to: PodSet, connected: boolean, only?: Partial<Target>): this {
    for (const f of this.expand(from)) for (const d of this.expand(to)) for (const t of this.matchTargets(only)) this.cells.set(cellKey(f, d, t), connected)
    return this
  }

  allow(from: PodSet, to: PodSet, only?: Partial<Target>): this {
    return this.set(from, to, true, only)
  }

  deny(from: PodSet, to: PodSet, only?: Partial<Target>): this {
    return this.set(from, to, false, only)
  }

  /** Nothing reaches `to` (on `only` targets). */
  denyIngress(to: PodSet, only?: Partial<Target>): this {
    return this.set('*', to, false, only)
  }

  /** `from` reaches nothing (on `only` targets). */
  denyEgress(from: PodSet, only?: Partial<Target>): this {
    return this.set(from, '*', false, only)
  }

  expected(from: string, to: string, t: Target): boolean {
    // A pod's own address is local in its namespace: nothing between it and itself to isolate.
    if (from === to) return true
    return this.cells.get(cellKey(from, to, t))!
  }
}

function cellKey(from: string, to: string, t: Target): string {
  return `${from}>${to}@${targetText(t)}`
}

export interface Observed {
  from: string
  to: string
  target: Target
  connected: boolean
  /** Why not connected, or what was wrong with the answer. */
  detail?: string
  /** How many probes this cell took (retries after a mismatch). */
  attempts: number
}

export interface MatrixReport {
  cells: Observed[]
  mismatches: Array<Observed & { expected: boolean }>
  probes: number
  durationMs: number
}

/** The pods of a truth table, with a prober (their responder's control socket) each. */
export class MatrixProber {
  private constructor(private readonly pods: Map<string, { pod: LabPod; prober: PodProber }>) {}

  static async open(lab: LabLayout, pods: readonly LabPod[]): Promise<MatrixProber> {
    const entries = await Promise.all(pods.map(async (pod) => [podRef(pod), { pod, prober: await PodProber.open(podRef(pod), controlSocketPath(lab, pod.containerId)) }] as const))
    return new MatrixProber(new Map(entries))
  }

  get refs(): string[] {
    return [...this.pods.keys()]
  }

  /** Replaces a pod (re-created: a new address, a new responder). */
  async replace(lab: LabLayout, pod: LabPod): Promise<void> {
    this.pods.get(podRef(pod))?.prober.close()
    this.pods.set(podRef(pod), { pod, prober: await PodProber.open(podRef(pod), controlSocketPath(lab, pod.containerId)) })
  }

  close(): void {
    for (const { prober } of this.pods.values()) prober.close()
  }

  private entry(ref: string): { pod: LabPod; prober: PodProber } {
    const e = this.pods.get(ref)
    if (!e) throw new Error(`truth table: no pod ${ref} (pods: ${this.refs.join(', ')})`)
    return e
  }

  /** One raw probe from a pod of the table to any address. */
  probeAddress(from: string, host: string, target: Target, connectTimeoutMs: number): Promise<PodProbeResult> {
    return this.entry(from).prober.probe({ host, port: target.port, protocol: target.protocol, connectTimeoutMs })
  }

  /** One probe from `from` to `to`, judged: connected only with the right pod answering, unNATed. */
  async probe(from: string, to: string, target: Target, connectTimeoutMs: number): Promise<{ connected: boolean; detail?: string }> {
    const src = this.entry(from)
    const dst = this.entry(to)
    const r: PodProbeResult = await src.prober.probe({ host: dst.pod.address, port: target.port, protocol: target.protocol, connectTimeoutMs })
    if (!r.ok) return { connected: false, detail: r.error }
    if (r.reply.pod !== to) return { connected: false, detail: `wrong answer: ${r.reply.pod} answered for ${to}` }
    if (r.reply.peer !== src.pod.address) return { connected: false, detail: `NAT: ${to} saw ${r.reply.peer}, not ${src.pod.address}` }
    return { connected: true }
  }

  /**
   * Probes the whole matrix in parallel; cells that disagree with `want` are probed again with
   * longer timeouts until they agree or `deadlineMs` passes (a change takes effect "promptly",
   * and a loaded machine can delay an allowed UDP answer past the first short timeout). A cell
   * that disagrees at the deadline is a mismatch.
   */
  async check(want: Expectation, options: { deadlineMs?: number; firstTimeoutMs?: number } = {}): Promise<MatrixReport> {
    const started = Date.now()
    const deadline = started + (options.deadlineMs ?? 5000)
    const cells: Observed[] = []
    for (const from of want.pods) for (const to of want.pods) for (const target of want.targets) cells.push({ from, to, target, connected: false, attempts: 0 })
    let probes = 0
    let timeout = options.firstTimeoutMs ?? 300
    let pending = cells
    for (;;) {
      await Promise.all(
        pending.map(async (c) => {
          const r = await this.probe(c.from, c.to, c.target, timeout)
          probes++
          c.attempts++
          c.connected = r.connected
          c.detail = r.detail
        }),
      )
      pending = cells.filter((c) => c.connected !== want.expected(c.from, c.to, c.target))
      if (pending.length === 0 || Date.now() >= deadline) break
      timeout = Math.min(timeout * 2, 2000)
    }
    const mismatches = pending.map((c) => ({ ...c, expected: want.expected(c.from, c.to, c.target) }))
    return { cells, mismatches, probes, durationMs: Date.now() - started }
  }
}

/**
 * The observed matrices, one per target, upstream style: `.` connected, `X` blocked, and a
 * mismatch shown as `!` (connected, expected blocked) or `?` (blocked, expected connected).
 */
export function renderMatrix(want: Expectation, report: MatrixReport): string {
  const short = (ref: string) => ref.replace('/', '')
  const width = Math.max(...want.pods.map((p) => short(p).length)) + 1
  const pad = (s: string) => s.padEnd(width)
  const byKey = new Map(report.cells.map((c) => [cellKey(c.from, c.to, c.target), c]))
  const out: string[] = []
  for (const t of want.targets) {
    out.push(`${targetText(t)}  (row: from, column: to)`, pad('') + want.pods.map((p) => pad(short(p))).join(''))
    for (const from of want.pods) {
      const row = want.pods.map((to) => {
        const c = byKey.get(cellKey(from, to, t))!
        const expected = want.expected(from, to, t)
        return pad(c.connected === expected ? (c.connected ? '.' : 'X') : c.connected ? '!' : '?')
      })
      out.push(pad(short(from)) + row.join(''))
    }
  }
  for (const m of report.mismatches)
    out.push(`${m.from} → ${m.to} ${targetText(m.target)}: expected ${m.expected ? 'connected' : 'blocked'}, got ${m.connected ? 'connected' : `blocked (${m.detail})`} after ${m.attempts} probes`)
  return out.join('\n')
}
