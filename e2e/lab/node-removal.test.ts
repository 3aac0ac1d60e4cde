// A node leaves the cluster (`flatnetctl node remove`): every peer drops its route within 2 s, and
// its subnet goes to the next node that joins, which the whole cluster then reaches.
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { labCheck, labNodeAdd, labNodeDel, labNodeStop, labStatus, labUp, peerRoutes } from '../../lab/index.js'
import { flatnetctl, labForTest, labNamespaces, labSkipReason, pollUntil } from '../../lab/testing/testLabs.js'

t.test('node removal: routes gone from every peer within 2 s, subnet reusable by a new node', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'noderm')
  await labUp({ name, nodes: 3, podsPerNode: 1, datastore: 'file' })
  const before = await labStatus({ name })
  const leaving = before.nodes.find((n) => n.name === 'node2')!
  const peers = before.nodes.filter((n) => n !== leaving)
  for (const peer of peers) {
    t.ok(
      (await peerRoutes(peer.namespace)).some((r) => r.dst === leaving.subnet),
      `${peer.name} routes ${leaving.subnet} before`,
    )
  }

  // The daemon of the leaving node stops first (as when a machine is drained), then the operator
  // removes it from the datastore. The clock starts when `node remove` has returned: the record
  // is gone by then (a few ms earlier), while the command's own start-up time is not counted.
  await labNodeStop({ name, node: 'node2' })
  const remove = await flatnetctl(['node', 'remove', 'node2', '--datastore', 'file', '--datastore-file', `/run/flatnet-lab/${name}/nodes.json`])
  const removedAt = Date.now()
  t.equal(remove.code, 0, `flatnetctl node remove: ${remove.stderr}`)
  t.match(remove.stdout, new RegExp(`removed node node2 \\(subnet ${String(leaving.subnet).replaceAll('.', '\\.')}`))
  const gone = await pollUntil(
    async () => {
      const views = await Promise.all(peers.map((p) => peerRoutes(p.namespace)))
      return views.every((routes) => !routes.some((r) => r.dst === leaving.subnet))
    },
    2000 - (Date.now() - removedAt),
    25,
  )
  t.ok(gone, `every peer dropped the route to ${leaving.subnet} within 2 s of the removal (took ${Date.now() - removedAt} ms)`)
  for (const peer of peers) {
    const routes = await peerRoutes(peer.namespace)
    const other = peers.find((p) => p !== peer)!
    t.same(routes, [{ dst: other.subnet, gateway: other.address }], `${peer.name} keeps exactly its route to ${other.name}`)
  }
  const store = JSON.parse(await readFile(`/run/flatnet-lab/${name}/nodes.json`, 'utf8')) as { nodes: Array<{ name: string }> }
  t.same(store.nodes.map((n) => n.name).sort(), ['node1', 'node3'], 'the datastore no longer holds node2')

  // The lab finishes the job: DEL of node2's pod, its namespace.
  const del = await labNodeDel({ name, node: 'node2' })
  t.same(del.podsDeleted, ['pod2a'])
  t.same(del.warnings, [])
  t.notOk(
    (await labNamespaces(name)).some((ns) => ns.endsWith('-node2') || ns.endsWith('-pod2a')),
    'node2 and pod2a namespaces are gone',
  )

  // A new node takes the lowest free subnet: the one node2 left.
  const { node: joined } = await labNodeAdd({ name, pods: 1 })
  t.equal(joined.name, 'node4', 'a new node, not node2 again')
  t.equal(joined.subnet, leaving.subnet, `node4 gets ${leaving.subnet}, freed by node2`)
  for (const peer of peers) {
    t.ok(
      (await peerRoutes(peer.namespace)).some((r) => r.dst === joined.subnet && r.gateway === joined.address),
      `${peer.name} routes ${joined.subnet} via ${joined.address}`,
    )
  }
  const report = await labCheck({ name })
  t.ok(
    report.ok,
    `the network model holds with node4: ${report.requirements
      .filter((r) => !r.ok)
      .map((r) => r.title)
      .join(', ')}`,
  )
  t.equal(report.requirements.find((r) => r.id === 'pod-pod-across-nodes')!.total, 6)
})
