// Cluster objects on Kubernetes: the API server is the store, flatnet only reads it (kubectl and
// controllers write). Each kind is listed and watched with ../datastore/kubernetesReflector.ts
// (deadlines, resume from the last resourceVersion, bookmarks, re-list on 410 Gone). Pods are
// kept in their JSON shape but cut down to what flatnet reads (namespace, labels, node, container
// ports, hostNetwork, phase, IPs): the kubelet rewrites a pod's status conditions often, and
// such an update that changes none of these is not delivered as a change. Services and
// EndpointSlices are cut down to what the service proxy reads (daemon/services/endpoints.ts): no
// annotations (kubectl's last-applied copy of the whole object), no managedFields, no topology
// hints; an EndpointSlice controller rewriting a slice for another reason is no change.
import type { IPod, IService } from 'kubernetes-models/v1'
import type { IEndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1'
import { connectKubeApi, KubeApiError, KubeConfigError, type KubeApi } from '../datastore/kubernetesApi.js'
import { reflect } from '../datastore/kubernetesReflector.js'
import { KINDS, compareObjects, type ClusterObject, type ObjectKind, type ObjectOfKind } from './kinds.js'
import { canonicalJson } from './rules.js'
import { ObjectStoreError, type ObjectStore, type StopWatch } from './store.js'

export interface KubernetesObjectStoreOptions {
  /** Path of a kubeconfig file; absent: the pod's in-cluster service account. */
  kubeconfig?: string
  /** Deadline of one API request, default 5000 ms. */
  timeoutMs?: number
}

/** The collection path of a kind (cluster-wide, or of one namespace). */
export function collectionPath(kind: ObjectKind, namespace?: string): string {
  const info = KINDS[kind]
  const group = info.apiVersion.includes('/') ? `/apis/${info.apiVersion}` : `/api/${info.apiVersion}`
  return info.namespaced && namespace !== undefined ? `${group}/namespaces/${encodeURIComponent(namespace)}/${info.plural}` : `${group}/${info.plural}`
}

/** A Pod reduced to what flatnet reads, still in the Pod's JSON shape. */
export function podEssentials(pod: IPod): IPod {
  const m = pod.metadata ?? {}
  const ports = (cs: NonNullable<IPod['spec']>['containers'] | undefined) => cs?.map((c) => ({ name: c.name, ...(c.ports ? { ports: c.ports } : {}) }))
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: m.name, namespace: m.namespace, uid: m.uid, ...(m.labels ? { labels: m.labels } : {}), ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}) },
    spec: {
      ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
      ...(pod.spec?.hostNetwork ? { hostNetwork: true } : {}),
      containers: ports(pod.spec?.containers) ?? [],
      ...(pod.spec?.initContainers ? { initContainers: ports(pod.spec.initContainers) } : {}),
    },
    status: { ...(pod.status?.phase ? { phase: pod.status.phase } : {}), ...(pod.status?.podIP ? { podIP: pod.status.podIP } : {}), ...(pod.status?.podIPs ? { podIPs: pod.status.podIPs } : {}) },
  }
}

const essentialMetadata = (m: NonNullable<IService['metadata']>) => ({
  name: m.name,
  namespace: m.namespace,
  uid: m.uid,
  ...(m.labels ? { labels: m.labels } : {}),
  ...(m.creationTimestamp ? { creationTimestamp: m.creationTimestamp } : {}),
})

/** A Service reduced to what the service proxy and `get` read, still in the Service's JSON shape. */
export function serviceEssentials(svc: IService): IService {
  const s = svc.spec ?? {}
  const pick = <K extends keyof typeof s>(...keys: K[]) => Object.fromEntries(keys.filter((k) => s[k] !== undefined).map((k) => [k, s[k]]))
  const ingress = svc.status?.loadBalancer?.ingress
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: essentialMetadata(svc.metadata ?? {}),
    spec: pick(
      'type',
      'selector',
      'ports',
      'clusterIP',
      'clusterIPs',
      'ipFamilies',
      'ipFamilyPolicy',
      'externalIPs',
      'externalName',
      'sessionAffinity',
      'sessionAffinityConfig',
      'externalTrafficPolicy',
      'internalTrafficPolicy',
      'publishNotReadyAddresses',
      'allocateLoadBalancerNodePorts',
    ),
    ...(ingress ? { status: { loadBalancer: { ingress: ingress.map((i) => ({ ...(i.ip ? { ip: i.ip } : {}), ...(i.hostname ? { hostname: i.hostname } : {}) })) } } } : {}),
  }
}

/** An EndpointSlice reduced to what the service proxy reads. */
export function endpointSliceEssentials(slice: IEndpointSlice): IEndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: essentialMetadata(slice.metadata ?? {}),
    addressType: slice.addressType,
    endpoints: (slice.endpoints ?? []).map((e) => ({
      addresses: e.addresses,
      ...(e.conditions ? { conditions: e.conditions } : {}),
      ...(e.nodeName ? { nodeName: e.nodeName } : {}),
      ...(e.targetRef ? { targetRef: { kind: e.targetRef.kind, namespace: e.targetRef.namespace, name: e.targetRef.name } } : {}),
    })),
    ...(slice.ports ? { ports: slice.ports } : {}),
  }
}

function reduce(kind: ObjectKind, obj: ClusterObject): ClusterObject {
  const withKind = { ...obj, apiVersion: KINDS[kind].apiVersion, kind } as ClusterObject // list items carry no kind
  switch (kind) {
    case 'Pod':
      return podEssentials(withKind as IPod)
    case 'Service':
      return serviceEssentials(withKind as IService)
    case 'EndpointSlice':
      return endpointSliceEssentials(withKind as IEndpointSlice)
    default:
      return withKind
  }
}

export async function openKubernetesObjectStore(options: KubernetesObjectStoreOptions): Promise<KubernetesObjectStore> {
  let api: KubeApi
  try {
    api = await connectKubeApi({ kubeconfig: options.kubeconfig, timeoutMs: options.timeoutMs ?? 5000 })
  } catch (err) {
    if (err instanceof KubeConfigError) throw new ObjectStoreError('invalid', `open kubernetes object store: ${err.message}`, { cause: err })
    throw err
  }
  return new KubernetesObjectStore(api)
}

export class KubernetesObjectStore implements ObjectStore {
  readonly backend = 'kubernetes' as const
  private readonly stops = new Set<StopWatch>()

  constructor(private readonly api: KubeApi) {}

  async list<K extends ObjectKind>(kind: K, namespace?: string): Promise<Array<ObjectOfKind[K]>> {
    const operation = `list ${KINDS[kind].plural}`
    try {
      const list = await this.api.request<{ items: ClusterObject[] }>('GET', collectionPath(kind, namespace))
      return (list.items ?? []).map((o) => reduce(kind, o) as ObjectOfKind[K]).sort(compareObjects)
    } catch (err) {
      throw this.failure(err, operation)
    }
  }

  watch<K extends ObjectKind>(kind: K, onList: (objects: Array<ObjectOfKind[K]>) => void, onError: (err: Error) => void): StopWatch {
    const operation = `watch ${KINDS[kind].plural} on ${this.api.server}`
    let stopped = false
    let listed = false
    /** By namespace/name: the reduced object and its canonical text (what a change is judged by). */
    let objects = new Map<string, { object: ClusterObject; text: string }>()
    let emitTimer: NodeJS.Timeout | undefined
    const id = (o: ClusterObject) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name}`
    // Coalesce bursts (a re-list, a rollout) into one call.
    const emitSoon = () => {
      if (emitTimer || stopped || !listed) return
      emitTimer = setTimeout(() => {
        emitTimer = undefined
        if (!stopped) onList([...objects.values()].map((e) => e.object as ObjectOfKind[K]).sort(compareObjects))
      }, 5)
    }
    const entry = (o: ClusterObject) => {
      const object = reduce(kind, o)
      // resourceVersion moves on every write; what flatnet reads is the rest.
      const text = canonicalJson({ ...object, metadata: { ...object.metadata, resourceVersion: undefined } })
      return { object, text }
    }
    const stopReflector = reflect<ClusterObject>({
      api: this.api,
      path: collectionPath(kind),
      onList: (items) => {
        const next = new Map(items.map((o) => [id(o), entry(o)]))
        const same = listed && next.size === objects.size && [...next].every(([k, e]) => objects.get(k)?.text === e.text)
        objects = next
        listed = true
        if (!same) emitSoon()
      },
      onUpsert: (o) => {
        const e = entry(o)
        if (objects.get(id(o))?.text === e.text) return
        objects.set(id(o), e)
        emitSoon()
      },
      onDelete: (o) => {
        if (objects.delete(id(o))) emitSoon()
      },
      onError: (err) => {
        if (!stopped) onError(this.failure(err, operation))
      },
    })
    const stop = () => {
      if (stopped) return
      stopped = true
      stopReflector()
      clearTimeout(emitTimer)
      this.stops.delete(stop)
    }
    this.stops.add(stop)
    return stop
  }

  async close(): Promise<void> {
    for (const stop of [...this.stops]) stop()
  }

  private failure(err: unknown, operation: string): ObjectStoreError {
    if (err instanceof ObjectStoreError) return err
    const message = err instanceof Error ? err.message : String(err)
    if (err instanceof KubeConfigError) return new ObjectStoreError('invalid', `${operation}: ${message}`, { cause: err })
    const kind = err instanceof KubeApiError && err.status === 404 ? 'notFound' : 'unavailable'
    return new ObjectStoreError(kind, `${operation}: Kubernetes API ${this.api.server}: ${message}`, { cause: err })
  }
}
