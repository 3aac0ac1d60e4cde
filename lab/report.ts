// Human renderings of the lab's status and of the check's matrix. Pure functions of the reports
// (the same objects `--json` prints), so what a person reads and what a script reads agree.
import type { CheckReport, ProbeRecord } from './check.js'
import type { LabStatus } from './lab.js'

export const PASS = '✓'
export const FAIL = '✗'
const NOT_PROBED = '·'

/** Left-aligned columns separated by two spaces; widths by the longest cell (counting code points). */
export function table(rows: string[][]): string {
  const width = (s: string) => [...s].length
  const widths: number[] = []
  for (const row of rows)
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, width(cell))
    })
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat(widths[i]! - width(cell))))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

export function renderStatus(s: LabStatus): string {
  const ds = s.datastore.kind === 'file' ? `file ${s.datastore.path}` : `etcd ${s.datastore.endpoints.join(',')}${s.datastore.pid ? ` (pid ${s.datastore.pid})` : ''}`
  const lines = [
    `lab ${s.name}: ${s.nodes.length} node${s.nodes.length === 1 ? '' : 's'}, ${s.pods.length} pod${s.pods.length === 1 ? '' : 's'}; cluster range ${s.clusterCidr}; datastore ${ds}`,
    `node network ${s.network.cidr} (bridge in ${s.network.netns}); outside ${s.network.outsideAddress} (${s.network.outsideNetns}); files in ${s.dir}`,
    '',
    table([
      ['NODE', 'NAMESPACE', 'ADDRESS', 'SUBNET', 'PODS', 'FLATNETD'],
      ...s.nodes.map((n) => [n.name, n.namespace, n.address, n.subnet ?? '-', String(n.pods), n.daemon.running ? `running (pid ${n.daemon.pid})` : 'stopped']),
    ]),
  ]
  if (s.pods.length) {
    const labels = (l: Record<string, string>) =>
      Object.entries(l)
        .map(([k, v]) => `${k}=${v}`)
        .join(',') || '-'
    lines.push(
      '',
      table([['POD', 'NAMESPACE', 'NODE', 'ADDRESS', 'LABELS', 'PORTS'], ...s.pods.map((p) => [p.name, p.namespace, p.node, p.address, labels(p.labels ?? {}), (p.ports ?? []).join(',') || '-'])]),
    )
  }
  return lines.join('\n') + '\n'
}

function cell(r: CheckReport, from: string, to: string, probes: Map<string, ProbeRecord>): string {
  const p = probes.get(`${from}>${to}`)
  if (!p) return NOT_PROBED
  if (!p.ok) return FAIL
  // A cell is green only when the connection also carried the right source address.
  const sender = r.pods.find((x) => x.name === from)
  const receiverIsPod = r.pods.some((x) => x.name === to)
  if (sender && receiverIsPod && p.sourceSeen !== sender.address) return FAIL
  if (sender && to === 'outside') {
    const nodeAddress = r.nodes.find((n) => n.name === sender.node)?.address
    if (p.sourceSeen !== nodeAddress) return FAIL
  }
  return PASS
}

export function renderCheck(r: CheckReport): string {
  const out: string[] = []
  out.push(
    `flatnet lab ${r.lab}: ${r.nodes.length} node${r.nodes.length === 1 ? '' : 's'}, ${r.pods.length} pod${r.pods.length === 1 ? '' : 's'} — the Kubernetes network model, requirement by requirement`,
  )
  out.push('')
  out.push(table([['', 'REQUIREMENT', 'PROVEN'], ...r.requirements.map((q) => [q.total === 0 ? '–' : q.ok ? PASS : FAIL, q.title, q.total === 0 ? `n/a (${q.note})` : `${q.passed}/${q.total}`])]))
  out.push('')
  const probes = new Map(r.probes.map((p) => [`${p.from}>${p.to}`, p]))
  const targets = [...r.pods.map((p) => p.name), ...r.nodes.map((n) => n.name), 'outside']
  const rows: string[][] = [['FROM \\ TO', '', ...targets]]
  for (const p of r.pods) rows.push([p.name, p.address, ...targets.map((t) => (t === p.name ? NOT_PROBED : cell(r, p.name, t, probes)))])
  for (const n of r.nodes) rows.push([n.name, n.address, ...targets.map((t) => cell(r, n.name, t, probes))])
  out.push(table(rows))
  out.push(`(${PASS} connected, and between pods the receiver saw the sender's own IP; to the outside it saw the node's IP. ${FAIL} failed. ${NOT_PROBED} not probed)`)
  const failures = r.requirements.flatMap((q) => q.failures.map((f) => `${FAIL} ${q.title}: ${f.from}${f.to ? ` → ${f.to}` : ''}: ${f.detail}`))
  if (failures.length) {
    out.push('', `${failures.length} failure${failures.length === 1 ? '' : 's'}:`, ...failures.slice(0, 40))
    if (failures.length > 40) out.push(`… and ${failures.length - 40} more (flatnetctl lab check --json has them all)`)
  }
  out.push('')
  const held = r.requirements.filter((q) => q.ok).length
  out.push(
    r.ok
      ? `all ${r.requirements.length} requirements hold (${r.probes.length} connections, ${(r.durationMs / 1000).toFixed(1)} s)`
      : `${r.requirements.length - held} of ${r.requirements.length} requirements FAIL (${(r.durationMs / 1000).toFixed(1)} s)`,
  )
  return out.join('\n') + '\n'
}
