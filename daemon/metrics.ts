// flatnetd's metrics in the Prometheus text format (version 0.0.4). A handful of series does not
// justify a client library: counters, gauges (optionally with labels) and one histogram.

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

type Labels = Record<string, string>

function escapeLabel(v: string): string {
  return v.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('"', '\\"')
}

function labelText(labels: Labels | undefined): string {
  if (!labels || Object.keys(labels).length === 0) return ''
  return `{${Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`
}

function num(v: number): string {
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  return String(v)
}

interface Metric {
  render(): string[]
}

class Scalar implements Metric {
  private readonly values = new Map<string, number>()
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge') {}
  set(value: number, labels?: Labels): void {
    this.values.set(labelText(labels), value)
  }
  inc(by = 1, labels?: Labels): void {
    const key = labelText(labels)
    this.values.set(key, (this.values.get(key) ?? 0) + by)
  }
  /** Drops every labelled series (for info gauges whose labels change). */
  clear(): void {
    this.values.clear()
  }
  get(labels?: Labels): number | undefined {
    return this.values.get(labelText(labels))
  }
  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`]
    for (const [labels, v] of this.values) lines.push(`${this.name}${labels} ${num(v)}`)
    return lines
  }
}

class Histogram implements Metric {
  private readonly counts: number[]
  private sum = 0
  private count = 0
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {
    this.counts = buckets.map(() => 0)
  }
  observe(v: number): void {
    this.sum += v
    this.count++
    this.buckets.forEach((le, i) => {
      if (v <= le) this.counts[i]!++
    })
  }
  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`]
    this.buckets.forEach((le, i) => lines.push(`${this.name}_bucket{le="${num(le)}"} ${this.counts[i]}`))
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${this.sum}`, `${this.name}_count ${this.count}`)
    return lines
  }
}

export class DaemonMetrics {
  readonly routesProgrammed = new Scalar('flatnet_routes_programmed', 'Routes to peer node subnets this daemon holds in the kernel (proto 200) after the last reconcile.', 'gauge')
  readonly peersSkipped = new Scalar('flatnet_peers_skipped', 'Peer nodes that got no route in the last reconcile (node IP not on-link, invalid record, conflict).', 'gauge')
  readonly reconcileDuration = new Histogram('flatnet_reconcile_duration_seconds', 'Duration of one reconcile pass: routes (kernel dump, diff, netlink batches), conflist and masquerade table, side by side.', [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
  readonly reconcileErrors = new Scalar('flatnet_reconcile_errors_total', 'Reconciles that failed (kernel or configuration write errors).', 'counter')
  readonly nodeSubnetInfo = new Scalar('flatnet_node_subnet_info', 'The pod subnet this node holds (value always 1).', 'gauge')
  readonly datastoreErrors = new Scalar('flatnet_datastore_errors_total', 'Failed datastore operations (claim, renew, list, watch).', 'counter')
  readonly cniCalls = new Scalar('flatnet_cni_calls_total', 'CNI calls served on the CNI socket, by verb and result (ok, error: a CNI error answered; declined: caller in another network namespace; refused: not root or too many waiting; bad-request; lost: connection failed).', 'counter')
  readonly cniCallDuration = new Histogram('flatnet_cni_call_duration_seconds', 'Duration of one CNI call on the CNI socket, from accepting the connection to the answer written.', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
  readonly cniCallsInFlight = new Scalar('flatnet_cni_calls_in_flight', 'CNI calls on the CNI socket being read or run right now.', 'gauge')
  readonly ready = new Scalar('flatnet_ready', '1 when /readyz answers 200: subnet held, conflist written, last reconcile succeeded.', 'gauge')

  constructor() {
    this.routesProgrammed.set(0)
    this.peersSkipped.set(0)
    this.reconcileErrors.set(0)
    this.datastoreErrors.set(0)
    this.ready.set(0)
    this.cniCallsInFlight.set(0)
  }

  // The process's own footprint, under the names Prometheus' client libraries use.
  private readonly residentMemory = new Scalar('process_resident_memory_bytes', 'Resident memory size in bytes.', 'gauge')
  private readonly heapUsed = new Scalar('nodejs_heap_size_used_bytes', 'V8 heap in use, in bytes.', 'gauge')
  private readonly heapTotal = new Scalar('nodejs_heap_size_total_bytes', 'V8 heap reserved, in bytes.', 'gauge')

  render(): string {
    const mem = process.memoryUsage()
    this.residentMemory.set(mem.rss)
    this.heapUsed.set(mem.heapUsed)
    this.heapTotal.set(mem.heapTotal)
    const all: Metric[] = [
      this.routesProgrammed, this.peersSkipped, this.reconcileDuration, this.reconcileErrors, this.nodeSubnetInfo, this.datastoreErrors, this.ready,
      this.cniCalls, this.cniCallDuration, this.cniCallsInFlight,
      this.residentMemory, this.heapUsed, this.heapTotal,
    ]
    return all.flatMap((m) => m.render()).join('\n') + '\n'
  }
}
