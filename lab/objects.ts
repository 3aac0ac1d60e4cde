// The lab's cluster objects: `lab apply|delete|get` and every lab pod go through the object store
// of the lab's datastore (daemon/objects), the one its flatnetd instances watch. Namespaces and
// NetworkPolicies are only stored; a Pod is also a real lab pod: apply creates it (on
// spec.nodeName, or the node with the fewest pods) and stores it with status.podIP(s), re-apply
// changes its labels live, delete removes the pod and its object.
import type { IPod } from 'kubernetes-models/v1'
import { describeKey, keyOf, OBJECT_KINDS, type ApplyAction, type ClusterObject, type ObjectKind, type ObjectKey, type ObjectOfKind, type WritableObjectStore } from '../daemon/objects/index.js'
import { errorText } from './exec.js'
import { layoutOf, type LabRef } from './lab.js'
import type { LabLayout } from './layout.js'
import { withLabLock } from './lock.js'
import { openLabObjects, recordPod } from './objectStore.js'
import { immutableChange, leastLoadedNode, podObject, podRequest } from './podObjects.js'
import { addPod, deletePod } from './pods.js'
import { DEFAULT_POD_NAMESPACE } from './podSpec.js'
import { readLabState, writeLabState, type LabPod, type LabState } from './state.js'

export interface ObjectOutcome {
  /** `Pod x/a`, `NetworkPolicy x/deny-all`. */
  object: string
  key: ObjectKey
  action: ApplyAction | 'deleted' | 'not found'
}

function orderForApply(objects: readonly ClusterObject[]): ClusterObject[] {
  // Namespaces first: a namespaced object needs its Namespace (stable within a kind).
  return [...objects].sort((a, b) => OBJECT_KINDS.indexOf(a.kind as ObjectKind) - OBJECT_KINDS.indexOf(b.kind as ObjectKind))
}

function labPodOf(state: LabState, key: ObjectKey): LabPod | undefined {
  return state.pods.find((p) => p.name === key.name && (p.k8sNamespace ?? DEFAULT_POD_NAMESPACE) === key.namespace)
}

async function applyPod(lab: LabLayout, state: LabState, store: WritableObjectStore, obj: IPod): Promise<ApplyAction> {
  const request = podRequest(obj)
  const key: ObjectKey = { kind: 'Pod', namespace: request.namespace, name: request.name }
  const existing = labPodOf(state, key)
  if (existing) {
    const why = immutableChange(existing, request)
    if (why) throw new Error(`apply ${describeKey(key)}: ${why}`)
    existing.labels = request.labels
    await writeLabState(lab, state)
    return (
      await store.apply(
        podObject(
          existing,
          state.nodes.find((n) => n.name === existing.node),
        ),
      )
    ).action
  }
  // The API server refuses a Pod in a namespace that does not exist: refuse before wiring it.
  if (!(await store.get({ kind: 'Namespace', namespace: '', name: request.namespace }))) throw new Error(`apply ${describeKey(key)}: namespace ${request.namespace} does not exist`)
  const node = request.nodeName !== undefined ? state.nodes.find((n) => n.name === request.nodeName) : leastLoadedNode(state.nodes, state.pods)
  if (!node) throw new Error(`apply ${describeKey(key)}: ${request.nodeName !== undefined ? `no node ${request.nodeName} in lab ${state.name}` : `lab ${state.name} has no node`}`)
  const pod = await addPod(lab, node, request.name, {
    namespace: request.namespace,
    labels: request.labels,
    ports: request.ports,
    ...(state.clusterDns ? { nameservers: state.clusterDns.nameservers } : {}),
  })
  state.pods.push(pod)
  await writeLabState(lab, state)
  try {
    await recordPod(store, state, pod, false)
  } catch (err) {
    // A pod the store does not know would run outside every policy: take it down again.
    await deletePod(lab, node, pod).catch(() => undefined)
    state.pods = state.pods.filter((p) => p !== pod)
    await writeLabState(lab, state)
    throw new Error(`apply ${describeKey(key)}: store the Pod object: ${errorText(err)}`)
  }
  await writeLabState(lab, state)
  return 'created'
}

async function deleteLabPod(lab: LabLayout, state: LabState, pod: LabPod): Promise<void> {
  await deletePod(
    lab,
    state.nodes.find((n) => n.name === pod.node),
    pod,
  )
  state.pods = state.pods.filter((p) => p !== pod)
  await writeLabState(lab, state)
}

/** `lab apply`: objects in their Kubernetes shape (already parsed and validated), Namespaces first. */
export async function labApply(ref: LabRef, objects: readonly ClusterObject[]): Promise<ObjectOutcome[]> {
  const lab = layoutOf(ref)
  return withLabLock(lab, 'lab apply', async () => {
    const state = await readLabState(lab)
    const store = await openLabObjects(state)
    try {
      const outcomes: ObjectOutcome[] = []
      for (const obj of orderForApply(objects)) {
        const key = keyOf(obj)
        const action = obj.kind === 'Pod' ? await applyPod(lab, state, store, obj as IPod) : (await store.apply(obj)).action
        outcomes.push({ object: describeKey(key), key, action })
      }
      return outcomes
    } finally {
      await store.close()
    }
  })
}

/** `lab delete`: a Pod takes its lab pod with it; a Namespace every lab pod in it. */
export async function labDelete(ref: LabRef, keys: readonly ObjectKey[]): Promise<ObjectOutcome[]> {
  const lab = layoutOf(ref)
  return withLabLock(lab, 'lab delete', async () => {
    const state = await readLabState(lab)
    const store = await openLabObjects(state)
    try {
      const outcomes: ObjectOutcome[] = []
      // In reverse, as `flatnetctl delete` does: a manifest lists a Namespace before what is in it.
      for (const key of [...keys].reverse()) {
        const pods =
          key.kind === 'Pod' ? [labPodOf(state, key)].filter((p) => p !== undefined) : key.kind === 'Namespace' ? state.pods.filter((p) => (p.k8sNamespace ?? DEFAULT_POD_NAMESPACE) === key.name) : []
        for (const pod of pods) await deleteLabPod(lab, state, pod)
        const gone = await store.delete(key)
        outcomes.push({ object: describeKey(key), key, action: gone || pods.length ? 'deleted' : 'not found' })
      }
      return outcomes
    } finally {
      await store.close()
    }
  })
}

/** `lab get`: the stored objects of a kind (of one namespace if given). */
export async function labGet<K extends ObjectKind>(ref: LabRef, kind: K, namespace?: string): Promise<Array<ObjectOfKind[K]>> {
  const lab = layoutOf(ref)
  const state = await readLabState(lab)
  const store = await openLabObjects(state)
  try {
    return await store.list(kind, namespace)
  } finally {
    await store.close()
  }
}
