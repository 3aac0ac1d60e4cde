// The lab's object store: the cluster objects of the lab's datastore (daemon/objects), the store
// every node's flatnetd watches. Every lab pod has its Pod object there, written when the pod is
// wired and removed when it goes, so policies see lab pods exactly as they see a cluster's.
import { isWritable, openObjectStore, type WritableObjectStore } from '../daemon/objects/index.js'
import { serviceCidrsOf } from './layout.js'
import { podObject } from './podObjects.js'
import { DEFAULT_POD_NAMESPACE } from './podSpec.js'
import type { LabPod, LabState } from './state.js'

/** The object store of the lab's datastore, writable as the lab's API server. */
export async function openLabObjects(state: LabState): Promise<WritableObjectStore> {
  const ds = state.datastore
  if (ds.kind !== 'file') {
    // The lab's etcd listens on the node network only (172.30.0.2), which this process is not on.
    throw new Error(`lab ${state.name}: cluster objects are supported on the file datastore only (this lab uses ${ds.kind})`)
  }
  const store = await openObjectStore({ kind: 'file', path: ds.path }, { serviceCIDRs: serviceCidrsOf(state.ipFamily) })
  if (!isWritable(store)) throw new Error(`lab ${state.name}: the object store of ${ds.path} is read-only`)
  return store
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
 * Runs `fn` with the lab's object store, or not at all on a datastore whose objects the lab cannot
 * reach (etcd: see openLabObjects): its pods then have no Pod objects and no policy applies to them.
 */
export async function withPodRecords(state: LabState, fn: (store: WritableObjectStore) => Promise<void>): Promise<void> {
  if (state.datastore.kind !== 'file') return
  const store = await openLabObjects(state)
  try {
    await fn(store)
  } finally {
    await store.close()
  }
}
