// flatnetd's metrics in the Prometheus text format (version 0.0.4). A handful of series does not
// justify a client library: counters, gauges (optionally with labels) and one histogram.

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

type Labels = Record<string, string>

function escapeLabel(v: string): string {
  return v.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('"', '\\"')
}

function labelText(labels: Labels | undefined): string {
  if (!labels || Object.keys(labels).length === 0) return ''
  return `{${Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(',')}}`
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
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
  ) {}
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
  /** One series per label set ('' for none). */
  private readonly series = new Map<string, { labels: Labels | undefined; counts: number[]; sum: number; count: number }>()
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}
  observe(v: number, labels?: Labels): void {
    const key = labelText(labels)
    let s = this.series.get(key)
    if (!s) this.series.set(key, (s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 }))
    s.sum += v
    s.count++
    this.buckets.forEach((le, i) => {
      if (v <= le) s.counts[i]!++
    })
  }
  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`]
    for (const s of this.series.values()) {
      const withLe = (le: string) => labelText({ ...s.labels, le })
      this.buckets.forEach((le, i) => lines.push(`${this.name}_bucket${withLe(num(le))} ${s.counts[i]}`))
      lines.push(`${this.name}_bucket${withLe('+Inf')} ${s.count}`, `${this.name}_sum${labelText(s.labels)} ${s.sum}`, `${this.name}_count${labelText(s.labels)} ${s.count}`)
    }
    return lines
  }
}

export class DaemonMetrics {
  /** The runner's per-reconciler series, and the totals over every reconciler (flatnet_reconcile_*). */
  readonly runner = {
    synced: (reconciler: string, seconds: number, ok: boolean, at: number): void => {
      this.reconcileDuration.observe(seconds)
      this.reconcilerDuration.observe(seconds, { reconciler })
      if (ok) this.reconcilerLastSuccess.set(at / 1000, { reconciler })
      else {
        this.reconcileErrors.inc()
        this.reconcilerErrors.inc(1, { reconciler })
      }
    },
  }

  readonly routesProgrammed = new Scalar(
    'flatnet_routes_programmed',
    'Routes to peer node subnets this daemon holds in the kernel (proto 200) after the last reconcile, per family (ipv4, ipv6).',
    'gauge',
  )
  readonly peersSkipped = new Scalar(
    'flatnet_peers_skipped',
    'Peer nodes that got no route of a family in the last reconcile (no subnet or address of that family, node IP not on-link, invalid record, conflict), per family.',
    'gauge',
  )
  readonly peersByBackend = new Scalar(
    'flatnet_peers',
    'Peer nodes reached in the last reconcile, per family (ipv4, ipv6) and backend (host-gw: a route via the node address; vxlan: the tunnel).',
    'gauge',
  )
  readonly vxlanEntries = new Scalar(
    'flatnet_vxlan_entries',
    'Entries the vxlan reconciler holds in the kernel after its last sync, per family and kind (neighbour, fdb, route); its errors are flatnet_reconciler_errors_total{reconciler="vxlan"}.',
    'gauge',
  )
  readonly reconcileDuration = new Histogram(
    'flatnet_reconcile_duration_seconds',
    'Duration of one sync of any reconciler (forwarding, routes, conflist, masquerade); per reconciler: flatnet_reconciler_sync_duration_seconds.',
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  )
  readonly reconcileErrors = new Scalar('flatnet_reconcile_errors_total', 'Syncs of any reconciler that failed (kernel or configuration write errors).', 'counter')
  readonly reconcilerDuration = new Histogram('flatnet_reconciler_sync_duration_seconds', 'Duration of one sync, per reconciler.', [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
  readonly reconcilerErrors = new Scalar('flatnet_reconciler_errors_total', 'Failed syncs, per reconciler.', 'counter')
  readonly reconcilerLastSuccess = new Scalar('flatnet_reconciler_last_success_timestamp_seconds', 'Unix time of the last successful sync, per reconciler.', 'gauge')
  readonly peerRoutesBlocked = new Scalar('flatnet_peer_routes_blocked', 'Peer routes not added because a route of another owner holds the destination (left alone; see /readyz).', 'gauge')
  readonly nodeSubnetInfo = new Scalar('flatnet_node_subnet_info', 'The pod subnet this node holds (value always 1).', 'gauge')
  readonly datastoreErrors = new Scalar('flatnet_datastore_errors_total', 'Failed datastore operations (claim, renew, list, watch).', 'counter')
  readonly ready = new Scalar('flatnet_ready', '1 when /readyz answers 200 (computed from the same readiness at each scrape).', 'gauge')
  readonly cniCalls = new Scalar(
    'flatnet_cni_calls_total',
    'CNI calls served on the CNI socket, by verb and result (ok, error: a CNI error answered; declined: caller in another network namespace; refused: not root or too many waiting; bad-request; lost: connection failed).',
    'counter',
  )
  readonly cniCallDuration = new Histogram(
    'flatnet_cni_call_duration_seconds',
    'Duration of one CNI call on the CNI socket, from accepting the connection to the answer written.',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  )
  readonly cniCallsInFlight = new Scalar('flatnet_cni_calls_in_flight', 'CNI calls on the CNI socket being read or run right now.', 'gauge')
  // NetworkPolicy (reconcilers/policy.ts); its sync duration and errors are flatnet_reconciler_*{reconciler="policy"}.
  readonly policyPolicies = new Scalar('flatnet_policy_policies', 'NetworkPolicies in the cluster at the last policy sync.', 'gauge')
  readonly policyPodsSelected = new Scalar('flatnet_policy_pods_selected', "This node's pods selected by at least one NetworkPolicy at the last policy sync.", 'gauge')
  readonly policyRules = new Scalar('flatnet_policy_rules', 'Allow rules in the policy table (one per policy rule, family and port kind) at the last policy sync.', 'gauge')
  readonly policyTableBytes = new Scalar('flatnet_policy_table_bytes', 'Size of the last policy table written (nft script bytes).', 'gauge')
  // The service proxy (reconcilers/services.ts); its sync duration is flatnet_reconciler_*{reconciler="services"}.
  readonly servicesProgrammed = new Scalar('flatnet_services_programmed', 'Services proxied by this node at the last services sync.', 'gauge')
  readonly servicesPorts = new Scalar('flatnet_services_ports', 'Service ports (per family) in the services tables at the last sync.', 'gauge')
  readonly servicesEndpoints = new Scalar('flatnet_services_endpoints', 'Ready endpoints (per Service port and family) programmed at the last services sync.', 'gauge')
  readonly servicesNoEndpoints = new Scalar('flatnet_services_no_endpoints', 'Service ports whose cluster IPs reject new connections for lack of ready endpoints.', 'gauge')
  readonly servicesReadBackSeconds = new Scalar(
    'flatnet_services_readback_seconds',
    'Duration of the last read-back of the services tables (nft list); full syncs trust the last write for 10 times as long after it.',
    'gauge',
  )
  readonly policyDrops = new Scalar(
    'flatnet_policy_refused_total',
    'New connections refused by NetworkPolicy on this node, by direction (ingress, egress); read from the table at each full sync.',
    'counter',
  )

  constructor() {
    this.reconcileErrors.set(0)
    this.peerRoutesBlocked.set(0)
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
      this.routesProgrammed,
      this.peersSkipped,
      this.peerRoutesBlocked,
      this.peersByBackend,
      this.vxlanEntries,
      this.reconcileDuration,
      this.reconcileErrors,
      this.reconcilerDuration,
      this.reconcilerErrors,
      this.reconcilerLastSuccess,
      this.nodeSubnetInfo,
      this.datastoreErrors,
      this.ready,
      this.cniCalls,
      this.cniCallDuration,
      this.cniCallsInFlight,
      this.policyPolicies,
      this.policyPodsSelected,
      this.policyRules,
      this.policyTableBytes,
      this.policyDrops,
      this.servicesProgrammed,
      this.servicesPorts,
      this.servicesEndpoints,
      this.servicesNoEndpoints,
      this.servicesReadBackSeconds,
      this.residentMemory,
      this.heapUsed,
      this.heapTotal,
    ]
    return all.flatMap((m) => m.render()).join('\n') + '\n'
  }
}
