// What the API server does to an object on its way into storage, as pure functions over plain
// JSON, shared by the file and etcd backends: server-side defaults (pkg/apis/*/v1/defaults.go),
// the metadata the server owns (uid, resourceVersion, creationTimestamp, the namespace label),
// and the update rules (optimistic concurrency, what an update keeps, what it may not change).
import { randomUUID } from 'node:crypto'
import type { INamespace, IPod } from 'kubernetes-models/v1'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { BUILTIN_NAMESPACES, KINDS, describeKey, keyOf, type ClusterObject, type ObjectKey, type ObjectKind } from './kinds.js'
import { ObjectStoreError, type ApplyAction } from './store.js'

/** Set by the control plane on every Namespace (immutable), so policies can select a namespace by name. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name'

const clone = <T>(v: T): T => structuredClone(v)

/** ISO 8601 to the second, as the API server writes timestamps. */
export function apiTimestamp(now: Date): string {
  return now.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/**
 * Server-side defaults of one object (a new copy): namespace `default` for namespaced kinds, the
 * Namespace name label, protocol TCP on container ports and policy ports, and policyTypes:
 * `[Ingress]`, plus `Egress` when the policy has egress rules.
 */
export function withDefaults<O extends ClusterObject>(object: O): O {
  const o = clone(object) as ClusterObject
  const kind = o.kind as ObjectKind
  o.metadata ??= {}
  if (KINDS[kind].namespaced) o.metadata.namespace ||= 'default'
  else delete o.metadata.namespace
  switch (kind) {
    case 'Namespace': {
      const ns = o as INamespace
      ns.metadata!.labels = { ...ns.metadata!.labels, [NAMESPACE_NAME_LABEL]: ns.metadata!.name! }
      break
    }
    case 'Pod': {
      const pod = o as IPod
      for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) for (const p of c.ports ?? []) p.protocol ??= 'TCP'
      break
    }
    case 'NetworkPolicy': {
      const np = o as INetworkPolicy
      if (np.spec) {
        for (const rule of [...(np.spec.ingress ?? []), ...(np.spec.egress ?? [])]) for (const p of rule.ports ?? []) p.protocol ??= 'TCP'
        if (!np.spec.policyTypes || np.spec.policyTypes.length === 0) np.spec.policyTypes = np.spec.egress?.length ? ['Ingress', 'Egress'] : ['Ingress']
      }
      break
    }
  }
  return o as O
}

/** The Namespaces every store has from the start (as a cluster's control plane creates them). */
export function builtinNamespaces(now: Date, resourceVersion: string): INamespace[] {
  return BUILTIN_NAMESPACES.map((name) =>
    withDefaults<INamespace>({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name, uid: randomUUID(), resourceVersion, creationTimestamp: apiTimestamp(now) },
      spec: { finalizers: ['kubernetes'] },
      status: { phase: 'Active' },
    }),
  )
}

/** The API server's words for a lost compare-and-swap. */
export function conflictError(key: ObjectKey): ObjectStoreError {
  return new ObjectStoreError(
    'conflict',
    `Operation cannot be fulfilled on ${KINDS[key.kind].plural} ${JSON.stringify(key.name)}: the object has been modified; please apply your changes to the latest version and try again`,
  )
}

export function namespaceMissingError(key: ObjectKey): ObjectStoreError {
  return new ObjectStoreError('notFound', `create ${describeKey(key)}: namespaces ${JSON.stringify(key.namespace)} not found`)
}

export function undeletableNamespaceError(name: string): ObjectStoreError {
  return new ObjectStoreError('invalid', `delete Namespace ${name}: namespaces ${JSON.stringify(name)} is forbidden: this namespace may not be deleted`)
}

/** JSON text with object keys sorted: equal for equal objects whatever order their keys were written in. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) =>
    value && typeof value === 'object' && !Array.isArray(value) ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : value,
  )
}

const sameJson = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b)

/**
 * The object to store for an apply: `incoming` (defaults applied by the caller or here) over
 * `stored` (undefined: create). Keeps what the server owns; refuses a stale resourceVersion and,
 * for Pods, a change of the spec (the API server allows almost none: a pod is re-created
 * instead). `resourceVersion` is the version the write will have. Returns 'unchanged' with the
 * stored object when nothing but server-owned fields would differ.
 */
export function planApply(stored: ClusterObject | undefined, incoming: ClusterObject, resourceVersion: string, now: Date): { action: ApplyAction; object: ClusterObject } {
  const next = withDefaults(incoming)
  const key = keyOf(next)
  const meta = next.metadata!
  if (!stored) {
    if (meta.resourceVersion)
      throw new ObjectStoreError('notFound', `update ${describeKey(key)} at resourceVersion ${meta.resourceVersion}: ${KINDS[key.kind].plural} ${JSON.stringify(key.name)} not found`)
    meta.uid = randomUUID()
    meta.creationTimestamp = apiTimestamp(now)
    meta.resourceVersion = resourceVersion
    delete meta.deletionTimestamp
    if (next.kind === 'Namespace') next.status ??= { phase: 'Active' }
    return { action: 'created', object: next }
  }
  const was = stored.metadata!
  if (meta.resourceVersion && meta.resourceVersion !== was.resourceVersion) throw conflictError(key)
  meta.uid = was.uid
  meta.creationTimestamp = was.creationTimestamp
  const withStatus = next as { status?: unknown }
  const storedStatus = (stored as { status?: unknown }).status
  if (withStatus.status === undefined && storedStatus !== undefined) withStatus.status = clone(storedStatus)
  if (next.kind === 'Pod') {
    const pod = next as IPod
    const old = stored as IPod
    // The scheduler's binding is part of the stored spec; a re-applied manifest without it keeps it.
    if (pod.spec && old.spec?.nodeName && !pod.spec.nodeName) pod.spec.nodeName = old.spec.nodeName
    if (!sameJson(pod.spec, old.spec)) {
      throw new ObjectStoreError(
        'invalid',
        `Pod ${JSON.stringify(key.name)} is invalid: spec: Forbidden: pod updates may not change fields other than metadata (labels, annotations); delete the pod and create it again (${describeKey(key)})`,
      )
    }
  }
  meta.resourceVersion = was.resourceVersion
  if (sameJson(next, stored)) return { action: 'unchanged', object: stored }
  meta.resourceVersion = resourceVersion
  return { action: 'configured', object: next }
}
