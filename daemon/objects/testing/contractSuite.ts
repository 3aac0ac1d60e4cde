// Test-only: the contract every writable object store (file, etcd) must meet, run by each
// backend's test file against a real backend. It judges what the store holds and what its watch
// delivers, never what apply says it did.
import type { Test } from 'tap'
import type { INamespace, IPod } from 'kubernetes-models/v1'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import type { DatastoreConfig } from '../../datastore/types.js'
import { openObjectStore } from '../index.js'
import type { ObjectKind, ObjectOfKind } from '../kinds.js'
import { isObjectStoreError, isWritable, type ObjectStore, type ObjectStoreErrorKind, type WritableObjectStore } from '../store.js'

export async function openWritable(t: Pick<Test, 'teardown'>, cfg: DatastoreConfig): Promise<WritableObjectStore> {
  const store = await openObjectStore(cfg)
  t.teardown(() => store.close())
  if (!isWritable(store)) throw new Error(`${cfg.kind} object store is not writable`)
  return store
}

export interface WatchRecorder<K extends ObjectKind> {
  lists: Array<Array<ObjectOfKind[K]>>
  errors: Error[]
  /** Waits (bounded: 10 s) until a delivered list satisfies `ok`; true if one did. */
  until(ok: (objects: Array<ObjectOfKind[K]>) => boolean): Promise<boolean>
}

export function record<K extends ObjectKind>(t: Pick<Test, 'teardown'>, store: ObjectStore, kind: K): WatchRecorder<K> {
  const rec: WatchRecorder<K> = {
    lists: [],
    errors: [],
    async until(ok) {
      for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 10))) {
        const last = rec.lists.at(-1)
        if (last && ok(last)) return true
      }
      return false
    },
  }
  const stop = store.watch(
    kind,
    (objects) => rec.lists.push(objects),
    (err) => rec.errors.push(err),
  )
  t.teardown(stop)
  return rec
}

export async function errorOf(work: Promise<unknown>): Promise<{ kind: ObjectStoreErrorKind | 'none' | 'other'; message: string }> {
  try {
    await work
    return { kind: 'none', message: '' }
  } catch (err) {
    return { kind: isObjectStoreError(err) ? err.kind : 'other', message: (err as Error).message }
  }
}

export const namespace = (name: string, labels: Record<string, string> = {}): INamespace => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } })

export const pod = (ns: string | undefined, name: string, labels: Record<string, string> = {}, ports: number[] = [80]): IPod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, ...(ns ? { namespace: ns } : {}), labels },
  spec: { containers: [{ name: 'c', image: 'busybox', ports: ports.map((p) => ({ containerPort: p })) }] },
})

export const policy = (ns: string, name: string, spec: INetworkPolicy['spec']): INetworkPolicy => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace: ns },
  spec,
})

const names = (objects: Array<{ metadata?: { namespace?: string; name?: string } }>) => objects.map((o) => (o.metadata?.namespace ? `${o.metadata.namespace}/` : '') + o.metadata?.name).join(',')

/** The contract; `fresh()` gives the config of a new, empty store each time it is called. */
export async function runObjectStoreContract(t: Test, fresh: () => DatastoreConfig): Promise<void> {
  t.test('a new store has the namespaces default and kube-system, labelled with their names, and refuses to delete them', async (t) => {
    const store = await openWritable(t, fresh())
    const list = await store.list('Namespace')
    t.equal(names(list), 'default,kube-system')
    t.same(
      list.map((n) => n.metadata?.labels),
      [{ 'kubernetes.io/metadata.name': 'default' }, { 'kubernetes.io/metadata.name': 'kube-system' }],
    )
    t.same(await errorOf(store.delete({ kind: 'Namespace', namespace: '', name: 'default' })), {
      kind: 'invalid',
      message: 'delete Namespace default: namespaces "default" is forbidden: this namespace may not be deleted',
    })
  })

  t.test('apply creates with the server defaults and metadata, re-apply of the same object changes nothing, a label change configures', async (t) => {
    const store = await openWritable(t, fresh())
    const ns = await store.apply(namespace('x', { team: 'a' }))
    t.equal(ns.action, 'created')
    t.same(ns.object.metadata?.labels, { team: 'a', 'kubernetes.io/metadata.name': 'x' }, 'the Namespace name label is added')
    const created = await store.apply(pod(undefined, 'a', { app: 'web' }))
    t.equal(created.action, 'created')
    const stored = (await store.get({ kind: 'Pod', namespace: 'default', name: 'a' }))!
    t.equal(stored.metadata?.namespace, 'default', 'the namespace defaults to default')
    t.match(stored.metadata?.uid, /^[0-9a-f-]{36}$/)
    t.match(stored.metadata?.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    t.match(stored.metadata?.resourceVersion, /^\d+$/)
    t.equal(stored.spec?.containers[0]?.ports?.[0]?.protocol, 'TCP', 'container ports default to TCP')
    t.equal((await store.apply(pod(undefined, 'a', { app: 'web' }))).action, 'unchanged')
    t.equal((await store.get({ kind: 'Pod', namespace: 'default', name: 'a' }))?.metadata?.resourceVersion, stored.metadata?.resourceVersion, 'an unchanged apply writes nothing')
    const relabelled = await store.apply(pod('default', 'a', { app: 'db' }))
    t.equal(relabelled.action, 'configured')
    const after = (await store.get({ kind: 'Pod', namespace: 'default', name: 'a' }))!
    t.same(after.metadata?.labels, { app: 'db' })
    t.equal(after.metadata?.uid, stored.metadata?.uid, 'the uid stays')
    t.equal(after.metadata?.creationTimestamp, stored.metadata?.creationTimestamp)
    t.not(after.metadata?.resourceVersion, stored.metadata?.resourceVersion, 'a new resourceVersion')
  })

  t.test('policyTypes default to Ingress, plus Egress when there are egress rules; policy ports default to TCP', async (t) => {
    const store = await openWritable(t, fresh())
    await store.apply(policy('default', 'in', { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }] }))
    await store.apply(policy('default', 'both', { podSelector: {}, egress: [{}] }))
    await store.apply(policy('default', 'empty-egress', { podSelector: {}, egress: [] }))
    await store.apply(policy('default', 'explicit', { podSelector: {}, policyTypes: ['Egress'] }))
    const byName = Object.fromEntries((await store.list('NetworkPolicy', 'default')).map((p) => [p.metadata?.name, p.spec]))
    t.same(byName.in?.policyTypes, ['Ingress'])
    t.equal(byName.in?.ingress?.[0]?.ports?.[0]?.protocol, 'TCP')
    t.same(byName.both?.policyTypes, ['Ingress', 'Egress'])
    t.same(byName['empty-egress']?.policyTypes, ['Ingress'], 'egress: [] has no entries')
    t.same(byName.explicit?.policyTypes, ['Egress'])
  })

  t.test('a Pod or NetworkPolicy in a namespace that does not exist is refused, as the API server does', async (t) => {
    const store = await openWritable(t, fresh())
    t.same(await errorOf(store.apply(pod('nope', 'a'))), { kind: 'notFound', message: 'create Pod nope/a: namespaces "nope" not found' })
    t.same(await store.list('Pod'), [])
  })

  t.test('a stale resourceVersion loses the compare-and-swap; a Pod spec cannot change; status survives a spec apply', async (t) => {
    const store = await openWritable(t, fresh())
    const first = await store.apply(pod('default', 'a'))
    const withStatus: IPod = { ...first.object, status: { phase: 'Running', podIP: '10.244.0.5', podIPs: [{ ip: '10.244.0.5' }] } }
    await store.apply(withStatus)
    t.same(await errorOf(store.apply(first.object)), {
      kind: 'conflict',
      message: 'Operation cannot be fulfilled on pods "a": the object has been modified; please apply your changes to the latest version and try again',
    })
    await store.apply(pod('default', 'a', { relabelled: 'yes' }))
    const now = (await store.get({ kind: 'Pod', namespace: 'default', name: 'a' }))!
    t.same(now.status, withStatus.status, 'an apply without status keeps the status')
    t.same(now.metadata?.labels, { relabelled: 'yes' })
    const moved = await errorOf(store.apply(pod('default', 'a', {}, [81])))
    t.equal(moved.kind, 'invalid')
    t.match(moved.message, /^Pod "a" is invalid: spec: Forbidden: pod updates may not change fields other than metadata/)
  })

  t.test('watch delivers the full list once listed, then every change; deleting a Namespace deletes what is in it', async (t) => {
    const store = await openWritable(t, fresh())
    const pods = record(t, store, 'Pod')
    const namespaces = record(t, store, 'Namespace')
    t.ok(await pods.until((l) => l.length === 0), 'an empty list is a full list')
    await store.apply(namespace('x'))
    await store.apply(pod('x', 'b'))
    await store.apply(pod('x', 'a'))
    await store.apply(pod('default', 'c'))
    t.ok(await pods.until((l) => names(l) === 'default/c,x/a,x/b'), 'sorted by namespace, then name')
    t.ok(await namespaces.until((l) => names(l) === 'default,kube-system,x'))
    await store.apply(pod('x', 'a', { app: 'new' }))
    t.ok(await pods.until((l) => l.find((p) => p.metadata?.name === 'a')?.metadata?.labels?.app === 'new'), 'a label change is delivered')
    t.same((await store.delete({ kind: 'Namespace', namespace: '', name: 'x' }))?.metadata?.name, 'x')
    t.ok(await pods.until((l) => names(l) === 'default/c'), "the namespace's pods went with it")
    t.ok(await namespaces.until((l) => names(l) === 'default,kube-system'))
    t.equal(await store.delete({ kind: 'Pod', namespace: 'default', name: 'missing' }), undefined, 'deleting what is not there returns undefined')
    t.same(pods.errors, [])
  })

  t.test('concurrent applies from separate store instances never lose one; of two writes from one version, exactly one wins', async (t) => {
    const cfg = fresh()
    const stores = await Promise.all([0, 1, 2, 3].map(() => openWritable(t, cfg)))
    await stores[0]!.apply(namespace('race'))
    await Promise.all(stores.flatMap((s, i) => [0, 1, 2, 3, 4].map((j) => s.apply(pod('race', `p-${i}-${j}`)))))
    t.equal((await stores[0]!.list('Pod', 'race')).length, 20, 'all 20 pods are there')
    const base = await stores[0]!.apply(pod('race', 'contended'))
    const results = await Promise.all(stores.map((s, i) => errorOf(s.apply({ ...base.object, metadata: { ...base.object.metadata, labels: { writer: String(i) } } }))))
    t.equal(results.filter((r) => r.kind === 'none').length, 1, 'one write wins')
    t.equal(results.filter((r) => r.kind === 'conflict').length, 3, 'the others get a conflict')
  })
}
