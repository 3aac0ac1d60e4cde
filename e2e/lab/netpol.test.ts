// The NetworkPolicy truth table (issue 10 "Proof"), after upstream's e2e netpol suite: namespaces
// x, y, z with pods a, b, c each (labels pod=<name>, namespaces ns=<name>), every pod serving
// ports 80 and 81 over TCP and UDP (named serve-80-tcp, …); each case probes the whole 9 × 9 matrix
// on every port and protocol and compares it with the matrix written here by hand from the
// semantics in the comments (never computed by flatnet's policy code). One lab for the suite.
import t, { type Test } from 'tap'
import { labPodAdd, labUp, layoutOf, type LabPod, type PodPort } from '../../lab/index.js'
import { labForTest, labSkipReason } from '../../lab/testing/testLabs.js'
import { Expectation, MatrixProber, renderMatrix, type Target } from '../../lab/testing/truthTable.js'

const NAMESPACES = ['x', 'y', 'z'] as const
const POD_NAMES = ['a', 'b', 'c'] as const
const TARGETS: Target[] = [
  { port: 80, protocol: 'TCP' },
  { port: 81, protocol: 'TCP' },
  { port: 80, protocol: 'UDP' },
  { port: 81, protocol: 'UDP' },
]
const PORTS: PodPort[] = TARGETS.map((t) => ({ name: `serve-${t.port}-${t.protocol.toLowerCase()}`, port: t.port, protocol: t.protocol }))

let cases = 0
let probes = 0

t.test('NetworkPolicy truth table: namespaces x, y, z × pods a, b, c × ports 80, 81 × TCP, UDP', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'netpol')
  const lab = layoutOf({ name })
  await labUp({ name, nodes: 3, podsPerNode: 0, datastore: 'file' })

  // Pod a of x on node1, b on node2, c on node3; y and z rotate by one, so every namespace spans
  // every node and every pair of nodes carries traffic both ways.
  const pods: LabPod[] = []
  for (const [i, ns] of NAMESPACES.entries()) {
    for (const [j, pod] of POD_NAMES.entries()) {
      pods.push(await labPodAdd({ name, node: `node${((i + j) % 3) + 1}`, namespace: ns, podName: pod, labels: { pod }, ports: PORTS }))
    }
  }
  const prober = await MatrixProber.open(lab, pods)
  t.teardown(() => prober.close())
  const all = () => new Expectation(prober.refs, TARGETS, true)

  async function expectMatrix(t: Test, title: string, want: Expectation, deadlineMs = 5000): Promise<void> {
    cases++
    const report = await prober.check(want, { deadlineMs })
    probes += report.probes
    t.same(report.mismatches.length, 0, `${title}: ${report.cells.length} cells, ${report.probes} probes, ${report.durationMs} ms`, { diagnostic: report.mismatches.length > 0 ? true : undefined })
    if (report.mismatches.length) t.comment(renderMatrix(want, report))
  }

  await t.test('no policy: every pod reaches every other pod on every port, source address preserved', async (t) => {
    await expectMatrix(t, 'no policy', all())
  })

  t.teardown(() => t.comment(`${cases} cases, ${probes} probes`))
})
