// Exhaustion of the cluster range: a /23 cut into /24s holds two nodes. The third daemon stays
// up, says why it is not ready, and retries until a subnet is freed.
import { join } from 'node:path'
import t from 'tap'
import { testNamespaces } from '../e2e/helpers/index.js'
import { openDatastore } from './datastore/index.js'
import { eventually, flatnetdMissingReason, nodeNamespace, startFlatnetd, tempDir, type DaemonProcess } from './testing/harness.js'

t.test('the third daemon of a two-subnet range is not ready, says why, stays up, and recovers when a subnet frees', { skip: flatnetdMissingReason() }, async (t) => {
  const dir = tempDir(t, 'dexh')
  const nss = testNamespaces(t, 'dexh')
  const storePath = join(dir, 'nodes.json')
  const daemons: DaemonProcess[] = []
  for (const i of [1, 2, 3]) {
    const ns = await nodeNamespace(nss, `192.168.80.${i}/24`, `n${i}`)
    daemons.push(
      startFlatnetd(t, ns, [
        '--node-name',
        `n${i}`,
        '--node-ip',
        `192.168.80.${i}`,
        '--cluster-cidr',
        '10.50.0.0/23',
        '--node-prefix-length',
        '24',
        '--datastore-file',
        storePath,
        '--state-dir',
        join(dir, `state${i}`),
        '--cni-conf-dir',
        join(dir, `net${i}.d`),
        '--reconcile-interval',
        '0.5',
      ]),
    )
    // One after the other, so which one is left out is known.
    if (i < 3)
      await eventually(
        `n${i} ready`,
        () => daemons[i - 1]!.http('/readyz'),
        (r) => r.status === 200,
      )
  }
  const third = daemons[2]!
  const notReady = await eventually(
    'n3 reports exhaustion',
    () => third.http('/readyz'),
    (r) => r.status === 503 && /exhausted/.test(r.body),
  )
  const body = JSON.parse(notReady.body) as { ready: boolean; reason: string }
  t.equal(body.ready, false)
  t.match(body.reason, /cluster range 10\.50\.0\.0\/23 is exhausted/, 'the reason names the range')
  t.ok(
    third.logs.some((l) => l.level === 'error' && /claim node subnet failed/.test(String(l.msg)) && /exhausted/.test(JSON.stringify(l.err))),
    'the error is logged clearly',
  )

  // It keeps trying, and keeps running: several failed claims later it is still alive.
  const attempts = () => third.logs.filter((l) => /claim node subnet failed/.test(String(l.msg))).length
  await eventually('more claim attempts', attempts, (n) => n >= 3)
  t.equal(third.exitCode(), undefined, 'still running')
  t.equal((await third.http('/healthz')).status, 200, 'alive')
  t.match((await third.http('/metrics')).body, /^flatnet_ready 0$/m)
  t.notOk(/flatnet_node_subnet_info\{/.test((await third.http('/metrics')).body), 'no subnet info while none is held')

  // n1 leaves (stopped, then removed by the operator): n3 gets its subnet without a restart.
  t.equal(await daemons[0]!.stop(), 0)
  const store = await openDatastore({ kind: 'file', path: storePath })
  t.teardown(() => store.close())
  t.equal(await store.remove('n1'), true)
  const ready = await eventually(
    'n3 ready after n1 left',
    () => third.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  t.equal(JSON.parse(ready.body).subnet, '10.50.0.0/24')
  for (const d of daemons.slice(1)) t.equal(await d.stop(), 0)
})
