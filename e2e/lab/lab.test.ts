// The newcomer's first command, end to end through dist/bin/flatnetctl: a 3-node × 2-pod cluster
// on the file datastore proves the whole network model, `lab down` removes everything — also
// when the lab's state file is gone — and `lab check` fails when the network is broken.
import t from 'tap'
import { existsSync } from 'node:fs'
import { unlink } from 'node:fs/promises'
import { runOk } from '../../lab/exec.js'
import type { CheckReport, LabStatus } from '../../lab/index.js'
import { interfaceAddresses, peerRoutes } from '../../lab/kernelView.js'
import { flatnetctl, labForTest, labNamespaces, labProcesses, labSkipReason } from '../../lab/testing/testLabs.js'

function parse<T>(stdout: string, what: string): T {
  try {
    return JSON.parse(stdout) as T
  } catch {
    throw new Error(`${what}: not JSON: ${stdout.slice(0, 500)}`)
  }
}

const inSubnet = (address: string, subnet: string) => address.split('.').slice(0, 3).join('.') === subnet.split('.').slice(0, 3).join('.')

t.test('3 nodes × 2 pods on the file datastore: the whole network model holds', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'file')

  const up = await flatnetctl(['lab', 'up', '--name', name, '--nodes', '3', '--pods-per-node', '2'])
  t.equal(up.code, 0, `lab up succeeds: ${up.stderr}`)
  if (up.code !== 0) return

  const status = parse<LabStatus>((await flatnetctl(['lab', 'status', '--name', name, '--json'])).stdout, 'lab status --json')
  t.equal(status.nodes.length, 3)
  t.equal(status.pods.length, 6)
  t.equal(new Set(status.nodes.map((n) => n.subnet)).size, 3, 'three distinct node subnets')
  t.equal(new Set(status.pods.map((p) => p.address)).size, 6, 'six distinct pod addresses')
  for (const node of status.nodes) {
    t.ok(node.daemon.running, `${node.name}: flatnetd runs`)
    t.match(node.subnet, /^10\.244\.\d+\.0\/24$/, `${node.name}: a /24 of the cluster range`)
    const routes = await peerRoutes(node.namespace)
    const want = status.nodes
      .filter((n) => n !== node)
      .map((n) => ({ dst: n.subnet, gateway: n.address }))
      .sort((a, b) => (a.dst! < b.dst! ? -1 : 1))
    t.same(routes, want, `${node.name}: a proto-200 route to each peer's subnet via its address`)
  }
  for (const pod of status.pods) {
    const node = status.nodes.find((n) => n.name === pod.node)!
    t.ok(inSubnet(pod.address, node.subnet!), `${pod.name}: ${pod.address} is in ${node.name}'s subnet ${node.subnet}`)
    t.same(await interfaceAddresses(pod.namespace, 'eth0'), [`${pod.address}/32`], `${pod.name}: the kernel gave eth0 ${pod.address}/32`)
  }

  const check = await flatnetctl(['lab', 'check', '--name', name, '--json'])
  t.equal(check.code, 0, `lab check exits 0: ${check.stderr}`)
  const report = parse<CheckReport>(check.stdout, 'lab check --json')
  t.equal(report.ok, true, 'every requirement holds')
  for (const r of report.requirements) {
    t.ok(r.total > 0 && r.passed === r.total, `${r.title}: ${r.passed}/${r.total}`)
  }
  const totals = Object.fromEntries(report.requirements.map((r) => [r.id, r.total]))
  t.same(
    totals,
    { 'daemons-ready': 3, 'pod-pod-same-node': 6, 'pod-pod-across-nodes': 24, 'node-pod': 18, 'pod-node': 18, 'source-preserved': 30, 'own-ip': 6, localhost: 6, masquerade: 6 },
    'every pair was probed',
  )

  // Source address preserved, said explicitly: every pod→pod connection arrived from the
  // sender's own pod IP, on the same node and across nodes.
  const podAddress = new Map(status.pods.map((p) => [p.name, p.address]))
  const podToPod = report.probes.filter((p) => podAddress.has(p.from) && podAddress.has(p.to))
  t.equal(podToPod.length, 30)
  for (const p of podToPod) t.equal(p.sourceSeen, podAddress.get(p.from), `${p.to} saw ${p.from} as ${podAddress.get(p.from)}`)

  const human = await flatnetctl(['lab', 'check', '--name', name])
  t.equal(human.code, 0)
  t.match(human.stdout, /✓\s+pod → pod across nodes\s+24\/24/)
  t.match(human.stdout, /all 15 requirements hold/, 'the 9 of the network model and the 6 of the Services section')
  t.notMatch(human.stdout, /^✗/m, 'no requirement row and no failure line is marked ✗')

  // A crash of the lab itself loses its state file: down still finds everything by name.
  t.equal((await labNamespaces(name)).length, 3 + 6 + 3, 'namespaces: 3 nodes, 6 pods, the add-ons pod, net, outside')
  const processes = await labProcesses(name)
  t.equal(processes.filter((line) => line.includes('flatnetd')).length, 3, 'three flatnetd processes')
  t.equal(processes.filter((line) => line.includes(`/run/flatnet-lab/${name}/pods/`)).length, 6, "six pod responders (each pod's process)")
  t.equal(processes.filter((line) => line.includes('cluster-addons')).length, 1, 'the cluster add-ons (DNS, LoadBalancer controller)')
  t.equal(processes.length, 10, 'nothing else')
  await unlink(`/run/flatnet-lab/${name}/lab.json`)
  const down = await flatnetctl(['lab', 'down', '--name', name])
  t.equal(down.code, 0, `lab down succeeds without its state file: ${down.stderr}`)
  t.same(await labNamespaces(name), [], 'no namespace left')
  t.same(await labProcesses(name), [], 'no process left')
  t.notOk(existsSync(`/run/flatnet-lab/${name}`), 'no files left')
})

t.test('lab check fails, naming the broken pod, when a pod loses its interface', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'broken')
  const up = await flatnetctl(['lab', 'up', '--name', name, '--nodes', '2', '--pods-per-node', '2'])
  t.equal(up.code, 0, `lab up succeeds: ${up.stderr}`)
  if (up.code !== 0) return
  const status = parse<LabStatus>((await flatnetctl(['lab', 'status', '--name', name, '--json'])).stdout, 'lab status --json')
  const victim = status.pods[0]!
  await runOk(['ip', '-n', victim.namespace, 'link', 'set', 'eth0', 'down'])

  const check = await flatnetctl(['lab', 'check', '--name', name, '--json'])
  t.equal(check.code, 1, 'lab check exits 1')
  const report = parse<CheckReport>(check.stdout, 'lab check --json')
  t.equal(report.ok, false)
  const failing = report.requirements
    .filter((r) => !r.ok)
    .map((r) => r.id)
    .sort()
  t.same(failing, ['node-pod', 'own-ip', 'pod-node', 'pod-pod-across-nodes', 'pod-pod-same-node', 'source-preserved', 'masquerade'].sort(), "everything that needs the pod's interface fails")
  const localhost = report.requirements.find((r) => r.id === 'localhost')!
  t.equal(localhost.passed, localhost.total, 'localhost inside the pod still works')
  for (const r of report.requirements) {
    for (const f of r.failures) t.ok(f.from === victim.name || f.to === victim.name, `${r.id}: failure ${f.from} → ${f.to} involves ${victim.name}`)
  }
  const human = await flatnetctl(['lab', 'check', '--name', name])
  t.equal(human.code, 1)
  t.match(human.stdout, new RegExp(`✗ pod → pod on the same node: .*${victim.name}`))
})
