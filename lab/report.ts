// Human renderings of the lab's status and of the check's matrix. Pure functions of the reports
// (the same objects `--json` prints), so what a person reads and what a script reads agree.
import type { IpFamily } from '../ipam/cidr.js'
import { REQUIREMENTS, addressOf, type CheckReport, type PairBackend, type ProbeRecord, type RequirementResult } from './check.js'
import type { LabStatus } from './lab.js'
import { segmentBridge } from './layout.js'

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
    `lab ${s.name} (${s.ipFamily}, ${s.topology}, backend ${s.backend}): ${s.nodes.length} node${s.nodes.length === 1 ? '' : 's'}, ${s.pods.length} pod${s.pods.length === 1 ? '' : 's'}; cluster range${s.clusterCidrs.length === 1 ? '' : 's'} ${s.clusterCidrs.join(', ')}; datastore ${ds}`,
    `node network ${s.network.cidrs.join(', ')} (${s.network.segments ? `${s.network.segments.length} segments: ${s.network.segments.map((g) => `${g.bridge} ${g.cidrs.join(' ')}`).join(', ')}, bridges in ${s.network.netns}, router ${s.network.routerNetns}` : `bridge in ${s.network.netns}`}); outside ${s.network.outsideAddresses.join(', ')} (${s.network.outsideNetns}); files in ${s.dir}`,
    '',
    table([
      ['NODE', 'NAMESPACE', 'ADDRESS', ...(s.topology === 'routed' ? ['SEGMENT'] : []), 'SUBNET', 'PODS', 'FLATNETD'],
      ...s.nodes.map((n) => [
        n.name,
        n.namespace,
        n.addresses.join(' '),
        ...(s.topology === 'routed' ? [segmentBridge(n.segment)] : []),
        n.subnets.join(' ') || '-',
        String(n.pods),
        n.daemon.running ? `running (pid ${n.daemon.pid})` : 'stopped',
      ]),
    ]),
  ]
  if (s.clusterDns) {
    const pod = s.clusterDns.pod
    lines.push(
      '',
      `cluster DNS ${s.clusterDns.nameservers.join(', ')}: ${pod ? `pod ${pod.name} on ${pod.node} (${pod.addresses.join(' ')}), also the LoadBalancer controller` : 'its pod is not running'}`,
    )
  }
  if (s.pods.length) {
    const labels = (l: Record<string, string>) =>
      Object.entries(l)
        .map(([k, v]) => `${k}=${v}`)
        .join(',') || '-'
    lines.push(
      '',
      table([
        ['POD', 'NAMESPACE', 'NODE', 'ADDRESS', 'LABELS', 'PORTS'],
        ...s.pods.map((p) => [p.name, p.namespace, p.node, p.addresses.join(' '), labels(p.labels ?? {}), (p.ports ?? []).join(',') || '-']),
      ]),
    )
  }
  return lines.join('\n') + '\n'
}

function cell(r: CheckReport, family: IpFamily, from: string, to: string, probes: Map<string, ProbeRecord>): string {
  const p = probes.get(`${family}:${from}>${to}`)
  if (!p) return NOT_PROBED
  if (!p.ok) return FAIL
  // A cell is green only when the connection also carried the right source address.
  const sender = r.pods.find((x) => x.name === from)
  const receiverIsPod = r.pods.some((x) => x.name === to)
  if (sender && receiverIsPod && p.sourceSeen !== addressOf(sender, family)) return FAIL
  if (sender && to === 'outside') {
    const node = r.nodes.find((n) => n.name === sender.node)
    if (!node || p.sourceSeen !== addressOf(node, family)) return FAIL
  }
  return PASS
}

const familyName = (f: IpFamily) => `IPv${f}`

/** "IPv4", "IPv6", "IPv4 and IPv6". */
export function familiesText(families: readonly IpFamily[]): string {
  return families.map(familyName).join(' and ')
}

/** One requirement's cell in one family's column: `passed/total`, or why it has no instance. */
function countCell(q: RequirementResult | undefined): string {
  if (!q) return ''
  return q.total === 0 ? `n/a (${q.note})` : `${q.passed}/${q.total}`
}

export function renderCheck(r: CheckReport): string {
  const out: string[] = []
  const families = r.families
  const several = families.length > 1
  out.push(
    `flatnet lab ${r.lab}: ${r.nodes.length} node${r.nodes.length === 1 ? '' : 's'}, ${r.pods.length} pod${r.pods.length === 1 ? '' : 's'}, ${familiesText(families)} — the Kubernetes network model, requirement by requirement`,
  )
  out.push('')
  // One row per requirement, one column per family: a dual-stack lab shows both side by side.
  const requirementRows = REQUIREMENTS.map(({ id, title }) => {
    const rows = r.requirements.filter((q) => q.id === id)
    const mark = rows.every((q) => q.total === 0) ? '–' : rows.every((q) => q.ok) ? PASS : FAIL
    const perFamily = rows.length === 1 && rows[0]!.family === undefined ? [countCell(rows[0]), ...families.slice(1).map(() => '')] : families.map((f) => countCell(rows.find((q) => q.family === f)))
    return [mark, title, ...perFamily]
  })
  out.push(table([['', 'REQUIREMENT', ...(several || families[0] !== 4 ? families.map(familyName) : ['PROVEN'])], ...requirementRows]))
  out.push('')
  const probes = new Map(r.probes.map((p) => [`${p.family}:${p.from}>${p.to}`, p]))
  const targets = [...r.pods.map((p) => p.name), ...r.nodes.map((n) => n.name), 'outside']
  const cells = (from: string) => targets.map((t) => (t === from ? NOT_PROBED.repeat(families.length) : families.map((f) => cell(r, f, from, t, probes)).join('')))
  const rows: string[][] = [['FROM \\ TO', '', ...targets]]
  for (const p of r.pods) rows.push([p.name, p.addresses.join(' '), ...cells(p.name)])
  for (const n of r.nodes) rows.push([n.name, n.addresses.join(' '), ...cells(n.name)])
  out.push(table(rows))
  out.push(
    `(${several ? `each cell: ${families.map(familyName).join(', then ')}; ` : ''}${PASS} connected, and between pods the receiver saw the sender's own IP; to the outside it saw the node's IP. ${FAIL} failed. ${NOT_PROBED} not probed)`,
  )
  out.push(...renderBackends(r))
  // The family is named on failures unless the lab is IPv4 only, as before families existed.
  const label = (q: RequirementResult) => (q.family && (several || q.family !== 4) ? ` (${familyName(q.family)})` : '')
  const failures = r.requirements.flatMap((q) => q.failures.map((f) => `${FAIL} ${q.title}${label(q)}: ${f.from}${f.to ? ` → ${f.to}` : ''}: ${f.detail}`))
  if (failures.length) {
    out.push('', `${failures.length} failure${failures.length === 1 ? '' : 's'}:`, ...failures.slice(0, 40))
    if (failures.length > 40) out.push(`… and ${failures.length - 40} more (flatnetctl lab check --json has them all)`)
  }
  if (r.services) out.push('', ...renderServices(r.services))
  out.push('')
  const svcRows = r.services?.requirements ?? []
  const total = REQUIREMENTS.length + svcRows.length
  const failing = REQUIREMENTS.filter(({ id }) => r.requirements.some((q) => q.id === id && !q.ok)).length + svcRows.filter((q) => !q.ok).length
  const connections = r.probes.length + (r.services?.probes.length ?? 0)
  const wrongBackend = (r.backends ?? []).filter((b) => b.backend !== b.expected)
  if (wrongBackend.length) {
    out.push(
      `${wrongBackend.length} node pair${wrongBackend.length === 1 ? '' : 's'} not on the expected backend (backend ${r.backend}):`,
      ...wrongBackend.slice(0, 20).map((b) => `${FAIL} ${b.from} → ${b.to} (${familyName(b.family)}): uses ${b.backend}, expected ${b.expected}${b.route ? ` (route ${routeText(b)})` : ''}`),
    )
  }
  out.push(
    failing === 0 && wrongBackend.length === 0
      ? `all ${total} requirements hold in ${familiesText(families)} (${connections} connections, ${(r.durationMs / 1000).toFixed(1)} s)`
      : failing === 0
        ? `all ${total} requirements hold in ${familiesText(families)}, but ${wrongBackend.length} node pair${wrongBackend.length === 1 ? ' is' : 's are'} not on the expected backend: FAIL (${(r.durationMs / 1000).toFixed(1)} s)`
        : `${failing} of ${total} requirements FAIL (${(r.durationMs / 1000).toFixed(1)} s)`,
  )
  return out.join('\n') + '\n'
}

function routeText(b: PairBackend): string {
  const r = b.route!
  return `${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}${r.dev ? ` dev ${r.dev}` : ''}`
}

/** One pair's cell: its backend (one word when every family agrees, else per family joined by /), ✗ when not the expected one. */
function backendCell(pairs: readonly PairBackend[]): string {
  if (pairs.length === 0) return NOT_PROBED
  const words = pairs.map((b) => b.backend)
  const text = words.every((w) => w === words[0]) ? words[0]! : words.join('/')
  return pairs.every((b) => b.backend === b.expected) ? text : `${text} ${FAIL}`
}

/**
 * The backend each node uses for each peer (rows: from, columns: to), read from the routes the
 * node's flatnetd programmed: host-gw (via the peer's node IP), vxlan (flatnet's VXLAN device) or
 * none. Empty with fewer than two nodes.
 */
export function renderBackends(r: CheckReport): string[] {
  const backends = r.backends ?? []
  if (r.nodes.length < 2) return []
  const counts = new Map<string, number>()
  for (const b of backends) counts.set(b.backend, (counts.get(b.backend) ?? 0) + 1)
  const summary = [...counts.entries()].map(([k, v]) => `${v} ${k}`).join(', ')
  const names = r.nodes.map((n) => n.name)
  const rows = [['BACKEND \\ TO', ...names], ...names.map((from) => [from, ...names.map((to) => (to === from ? NOT_PROBED : backendCell(backends.filter((b) => b.from === from && b.to === to))))])]
  return [
    '',
    `backend ${r.backend}, ${r.topology} node network: how each node reaches each peer's pods (${summary || 'no peer subnets'}${r.families.length > 1 ? `; a cell with two words: ${r.families.map(familyName).join('/')}` : ''})`,
    table(rows),
  ]
}

/** The Services section: one row per requirement, the Services it went through, then its failures. */
export function renderServices(s: NonNullable<CheckReport['services']>): string[] {
  const out: string[] = []
  const names = s.checked.map(
    (c) => `${c.ref} (${c.type} ${c.clusterIPs.join(' ')}${c.nodePort ? `, NodePort ${c.nodePort}` : ''}; ${c.endpoints.length} endpoint${c.endpoints.length === 1 ? '' : 's'})`,
  )
  out.push(`Services: ${names.join(', ') || 'none with endpoints'}`)
  out.push(table([['', 'SERVICES', 'PROVEN'], ...s.requirements.map((q) => [q.total === 0 ? '–' : q.ok ? PASS : FAIL, q.title, q.total === 0 ? `n/a (${q.note})` : `${q.passed}/${q.total}`])]))
  const failures = s.requirements.flatMap((q) => q.failures.map((f) => `${FAIL} ${q.title}: ${f.from}${f.to ? ` → ${f.to}` : ''}: ${f.detail}`))
  if (failures.length) {
    out.push(`${failures.length} failure${failures.length === 1 ? '' : 's'}:`, ...failures.slice(0, 20))
    if (failures.length > 20) out.push(`… and ${failures.length - 20} more (flatnetctl lab check --json has them all)`)
  }
  return out
}
