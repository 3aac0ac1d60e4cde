// The lab's object store: the cluster objects of the lab's datastore (daemon/objects), the store
// every node's flatnetd watches. Every lab pod has its Pod object there, written when the pod is
// wired and removed when it goes, so policies see lab pods exactly as they see a cluster's.
import type { DatastoreConfig } from '../daemon/datastore/index.js'
import { isWritable, openObjectStore, type WritableObjectStore } from '../daemon/objects/index.js'
import { serviceCidrsOf } from './layout.js'
import { podObject } from './podObjects.js'
import { DEFAULT_POD_NAMESPACE } from './podSpec.js'
import type { LabPod, LabState } from './state.js'

/** The object store of the lab's datastore, writable as the lab's API server. */
export async function openLabObjects(state: LabState): Promise<WritableObjectStore> {
  const ds = state.datastore
  if (ds.kind === 'etcd' && !ds.socket) {
    throw new Error(`lab ${state.name}: its etcd has no client socket for flatnetctl (the lab was made by an older flatnetctl); recreate it with lab down and lab up`)
  }
  // The lab's etcd listens on the node network (unreachable from here) and on a unix socket of the lab's own (etcd.ts).
  const config: DatastoreConfig = ds.kind === 'file' ? { kind: 'file', path: ds.path } : { kind: 'etcd', endpoints: [`unix:${ds.socket}`], timeoutMs: 10_000 }
  const store = await openObjectStore(config, { serviceCIDRs: serviceCidrsOf(state.ipFamily) })
  if (!isWritable(store)) throw new Error(`lab ${state.name}: the object store of its ${ds.kind} datastore is read-only`)
  return store
}

/** Whether this process can reach the lab's objects (an etcd lab made before its socket cannot). */
export function labObjectsReachable(state: LabState): boolean {
  return state.datastore.kind === 'file' || !!state.datastore.socket
}

/** Stores the Pod object of a lab pod, creating its Namespace first when it does not exist (as `lab pod add` promises). */
export async function recordPod(store: WritableObjectStore, state: LabState, pod: LabPod, createNamespace: boolean): Promise<void> {
  const namespace = pod.k8sNamespace ?? DEFAULT_POD_NAMESPACE
  if (createNamespace && !(await store.get({ kind: 'Namespace', namespace: '', name: namespace }))) {
    await store.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } })
  }
  const stored = await store.apply(
    podObject(
      pod,
      state.nodes.find((n) => n.name === pod.node),
    ),
  )
  pod.uid = stored.object.metadata?.uid ?? pod.uid
}

export async function forgetPod(store: WritableObjectStore, pod: LabPod): Promise<void> {
  await store.delete({ kind: 'Pod', namespace: pod.k8sNamespace ?? DEFAULT_POD_NAMESPACE, name: pod.name })
}

/**
 * Runs `fn` with the lab's object store, or not at all on a lab whose objects this process cannot
 * reach (an etcd lab made before its socket): its pods then have no Pod objects and no policy applies to them.
 */
export async function withPodRecords(state: LabState, fn: (store: WritableObjectStore) => Promise<void>): Promise<void> {
  if (!labObjectsReachable(state)) return
  const store = await openLabObjects(state)
  try {
    await fn(store)
  } finally {
    await store.close()
  }
}
