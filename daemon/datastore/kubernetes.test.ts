import t from 'tap'
import { runDatastoreContract } from './testing/contractSuite.js'
import { fakeNode } from './testing/fakeApiServerNodes.js'
import { startFakeCluster } from './testing/fakeApiServerHarness.js'

// Every contract test gets a cluster of its own on a FAKE API server (no kube-apiserver can run
// here), whose Nodes are registered as kubelet would before any daemon starts. They report no
// addresses, so peers route through the node IP each daemon recorded (flatnet.io/node-ip), which
// is what the contract's node IPs are.
t.test('contract (subnet source flatnet, on a fake API server)', async (t) =>
  runDatastoreContract(t, async (names) => {
    const cluster = await startFakeCluster(t)
    for (const name of names) cluster.fake.addNode(fakeNode(name))
    return cluster.config({ subnetSource: 'flatnet' })
  }),
)
