// flatnetd's view of the cluster objects on a real file datastore: nothing counts as synced before
// its first full list; changes arrive as input changes of their kind; a store that turns
// unreadable keeps the last lists and makes the node not ready, naming the kind.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { testDir } from '../../e2e/helpers/prefix.js'
import type { DatastoreConfig } from '../datastore/types.js'
import { createLogger } from '../log.js'
import type { InputKind } from '../reconcile/contract.js'
import { Runner } from '../reconcile/runner.js'
import { FakeReconciler, FakeView } from '../reconcile/testing/fakeReconciler.js'
import { ObjectView } from './objectView.js'
import { namespace, openWritable, pod, policy } from './testing/contractSuite.js'

async function until(ok: () => boolean): Promise<boolean> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 10))) if (ok()) return true
  return false
}

t.test('synced once listed; changes reach the runner as the kind that changed; trouble keeps the last lists', async (t) => {
  const { dir } = testDir(t, 'objview')
  const datastore: DatastoreConfig = { kind: 'file', path: join(dir, 'nodes.json'), pollIntervalMs: 100 }
  const changes: InputKind[] = []
  const view = new ObjectView({
    datastore,
    inputs: ['namespaces', 'pods', 'networkpolicies'],
    log: createLogger('fatal'),
    retryMs: 100,
    onDatastoreError: () => undefined,
    onChange: (kinds) => changes.push(...kinds),
  })
  t.teardown(async () => {
    await view.stop()
    await view.close()
  })
  t.notOk(view.synced('pods'))
  t.equal(view.pods(), undefined, 'undefined until listed')
  view.start()
  t.ok(await until(() => view.synced('pods') && view.synced('namespaces') && view.synced('networkpolicies')))
  t.equal(view.gate.problem(), undefined, 'ready once every kind is listed')
  t.same(
    view.namespaces()?.map((n) => n.metadata?.name),
    ['default', 'kube-system'],
  )

  const writer = await openWritable(t, datastore)
  changes.length = 0
  await writer.apply(namespace('x', { team: 'a' }))
  await writer.apply(pod('x', 'a', { app: 'web' }))
  await writer.apply(policy('x', 'deny', { podSelector: {} }))
  t.ok(await until(() => view.networkPolicies()?.length === 1 && view.pods()?.length === 1))
  t.same(view.networkPolicies()?.[0]?.spec?.policyTypes, ['Ingress'], 'what the store defaulted')
  t.same([...new Set(changes)].sort(), ['namespaces', 'networkpolicies', 'pods'])
  changes.length = 0
  await writer.apply(pod('x', 'a', { app: 'db' }))
  t.ok(await until(() => view.pods()?.[0]?.metadata?.labels?.app === 'db'))
  t.same([...new Set(changes)], ['pods'], 'a pod change is a pods change only')

  await writeFile(join(dir, 'objects.json'), 'not json')
  t.ok(await until(() => view.gate.problem() !== undefined))
  t.match(view.gate.problem(), /^namespaces: read cluster objects .*objects\.json: not a valid flatnet objects file .*; keeping the last full list; pods: /)
  t.equal(view.pods()?.[0]?.metadata?.labels?.app, 'db', 'the last list stays')
})

t.test('with no reconciler needing objects nothing is opened or watched, and nothing holds readiness', async (t) => {
  const { dir } = testDir(t, 'objview')
  const view = new ObjectView({
    datastore: { kind: 'file', path: join(dir, 'nodes.json') },
    inputs: [],
    log: createLogger('fatal'),
    retryMs: 100,
    onDatastoreError: () => undefined,
    onChange: () => undefined,
  })
  view.start()
  await new Promise((r) => setTimeout(r, 200))
  t.equal(view.gate.problem(), undefined)
  const { existsSync } = await import('node:fs')
  t.notOk(existsSync(join(dir, 'objects.json')), 'the store was not opened')
  await view.stop()
})

t.test('under the runner: a reconciler reading objects is not synced before they are listed, then syncs on each change of its kinds', async (t) => {
  const { dir } = testDir(t, 'objview')
  const datastore: DatastoreConfig = { kind: 'file', path: join(dir, 'nodes.json'), pollIntervalMs: 100 }
  let runner: Runner<FakeView> | undefined
  const objects = new ObjectView({
    datastore,
    inputs: ['pods', 'networkpolicies'],
    log: createLogger('fatal'),
    retryMs: 100,
    onDatastoreError: () => undefined,
    onChange: (kinds) => runner?.inputsChanged(kinds),
  })
  /** The daemon's composition (DaemonView) without the node part: object kinds from the ObjectView. */
  class View extends FakeView {
    override synced(kind: InputKind): boolean {
      return kind === 'pods' || kind === 'networkpolicies' ? objects.synced(kind) : super.synced(kind)
    }
  }
  const policy = new FakeReconciler('policy', ['pods', 'networkpolicies'])
  runner = new Runner<FakeView>(new View(), [policy], [objects.gate], {
    intervalMs: 3_600_000,
    retryMs: 50,
    minIntervalMs: 0,
    burst: 100,
    stuckAfterMs: 3_600_000,
    log: createLogger('fatal'),
  })
  t.teardown(async () => {
    runner!.stop(0)
    await objects.stop()
    await objects.close()
  })
  runner.start()
  await new Promise((r) => setTimeout(r, 300))
  t.equal(policy.syncs, 0, 'not synced while the objects are not listed')
  objects.start()
  t.ok(await until(() => policy.syncs >= 1), 'synced once both kinds are listed')
  const writer = await openWritable(t, datastore)
  const before = policy.syncs
  await writer.apply(pod('default', 'a'))
  t.ok(await until(() => policy.requests.slice(before).some((r) => r.changed.has('pods'))), 'a pod applied triggers a sync that names pods')
  t.notOk(
    policy.requests.slice(before).some((r) => r.changed.has('networkpolicies')),
    'and not networkpolicies',
  )
})
