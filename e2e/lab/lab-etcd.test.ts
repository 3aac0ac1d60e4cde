// The same cluster on a real etcd (Debian's etcd-server, started by the lab in its net namespace):
// the whole network model holds, cluster objects (Pods, NetworkPolicies) live in that etcd and are
// enforced, a removed node's subnet is reused, and `lab down` stops etcd.
import t from 'tap'
import { existsSync } from 'node:fs'
import type { CheckReport, LabStatus } from '../../lab/index.js'
import { ETCD_BINARY } from '../../lab/etcd.js'
import { flatnetctl, labForTest, labNamespaces, labProcesses, labSkipReason } from '../../lab/testing/testLabs.js'

function parse<T>(stdout: string, what: string): T {
  try {
    return JSON.parse(stdout) as T
  } catch {
    throw new Error(`${what}: not JSON: ${stdout.slice(0, 500)}`)
  }
}

const skip = labSkipReason() || (existsSync(ETCD_BINARY) ? false : `${ETCD_BINARY} missing: run scripts/install-deps.sh`)

t.test('3 nodes × 2 pods on etcd: the whole network model holds', { skip }, async (t) => {
  const name = labForTest(t, 'etcd')
  const up = await flatnetctl(['lab', 'up', '--name', name, '--nodes', '3', '--pods-per-node', '2', '--datastore', 'etcd'])
  t.equal(up.code, 0, `lab up --datastore etcd succeeds: ${up.stderr}`)
  if (up.code !== 0) return
  const status = parse<LabStatus>((await flatnetctl(['lab', 'status', '--name', name, '--json'])).stdout, 'lab status --json')
  t.equal(status.datastore.kind, 'etcd')
  t.same(status.datastore.kind === 'etcd' && status.datastore.endpoints, ['http://172.30.0.2:2379'])
  t.equal(new Set(status.nodes.map((n) => n.subnet)).size, 3, 'three distinct node subnets from etcd')
  t.equal((await labProcesses(name)).filter((p) => /\/etcd /.test(p)).length, 1, 'one etcd runs for the lab')

  const check = await flatnetctl(['lab', 'check', '--name', name, '--json'])
  t.equal(check.code, 0, `lab check exits 0: ${check.stderr}`)
  const report = parse<CheckReport>(check.stdout, 'lab check --json')
  for (const r of report.requirements) t.ok(r.total > 0 && r.passed === r.total, `${r.title}: ${r.passed}/${r.total}`)
  const podAddress = new Map(status.pods.map((p) => [p.name, p.address]))
  const podToPod = report.probes.filter((p) => podAddress.has(p.from) && podAddress.has(p.to))
  t.equal(podToPod.length, 30)
  for (const p of podToPod) t.equal(p.sourceSeen, podAddress.get(p.from), `${p.to} saw ${p.from} as ${podAddress.get(p.from)}`)

  // Cluster objects live in etcd too, written by flatnetctl through etcd's unix socket: every lab
  // pod has its Pod object, and a NetworkPolicy applied there is enforced by every node.
  const pods = parse<{ items: Array<{ metadata: { name: string }; status?: { podIP?: string } }> }>(
    (await flatnetctl(['lab', 'get', 'pods', '-A', '-o', 'json', '--name', name])).stdout,
    'lab get pods -o json',
  )
  t.same(pods.items.map((p) => [p.metadata.name, p.status?.podIP]).sort(), status.pods.map((p) => [p.name, p.address]).sort(), 'each lab pod has its Pod object in etcd, with its address')
  const denyAll = JSON.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'deny-all', namespace: 'default' }, spec: { podSelector: {} } })
  const applied = await flatnetctl(['lab', 'apply', '-f', '-', '--name', name], 80_000, denyAll)
  t.equal(applied.code, 0, `lab apply of a NetworkPolicy on etcd: ${applied.stderr}`)
  t.match(applied.stdout, /networkpolicy.* created/)
  const isolated = parse<CheckReport>((await flatnetctl(['lab', 'check', '--name', name, '--json'])).stdout, 'lab check --json under deny-all')
  const isolatedPodToPod = isolated.probes.filter((p) => podAddress.has(p.from) && podAddress.has(p.to))
  t.equal(isolatedPodToPod.length, 30)
  t.same(
    isolatedPodToPod.filter((p) => p.ok).map((p) => `${p.from} → ${p.to}`),
    [],
    'deny-all in etcd: no pod reaches another',
  )
  const deleted = await flatnetctl(['lab', 'delete', '-f', '-', '--name', name], 80_000, denyAll)
  t.equal(deleted.code, 0, `lab delete: ${deleted.stderr}`)
  const podDoc = JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'extra', namespace: 'default', labels: { app: 'extra' } },
    spec: { nodeName: 'node2', containers: [{ name: 'c', image: 'lab', ports: [{ containerPort: 80 }] }] },
  })
  const podApplied = await flatnetctl(['lab', 'apply', '-f', '-', '--name', name], 80_000, podDoc)
  t.equal(podApplied.code, 0, `lab apply of a Pod on etcd makes a lab pod: ${podApplied.stderr}`)
  const after = parse<LabStatus>((await flatnetctl(['lab', 'status', '--name', name, '--json'])).stdout, 'lab status --json')
  t.ok(
    after.pods.some((p) => p.name === 'extra' && p.node === 'node2'),
    'the Pod is a lab pod on node2',
  )
  const reopened = parse<CheckReport>((await flatnetctl(['lab', 'check', '--name', name, '--json'])).stdout, 'lab check --json after delete')
  t.ok(reopened.ok, `policy deleted: every requirement holds again, the new pod included (${reopened.probes.length} probes)`)

  // Removal through etcd frees the subnet for the next node.
  const leaving = status.nodes.find((n) => n.name === 'node3')!
  const del = await flatnetctl(['lab', 'node', 'del', 'node3', '--name', name])
  t.equal(del.code, 0, `lab node del: ${del.stderr}`)
  t.match(del.stdout, /from the etcd datastore http:\/\/172\.30\.0\.2:2379/)
  const add = await flatnetctl(['lab', 'node', 'add', '--name', name])
  t.equal(add.code, 0, `lab node add: ${add.stderr}`)
  t.match(add.stdout, new RegExp(`added node4 \\(172\\.30\\.0\\.\\d+, subnet ${leaving.subnet!.replaceAll('.', '\\.')}\\)`))

  const down = await flatnetctl(['lab', 'down', '--name', name])
  t.equal(down.code, 0)
  t.same(await labProcesses(name), [], 'etcd and every flatnetd are gone')
  t.same(await labNamespaces(name), [])
})
