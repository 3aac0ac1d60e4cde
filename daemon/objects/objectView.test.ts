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
