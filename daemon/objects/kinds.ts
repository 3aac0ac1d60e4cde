// The kinds of Kubernetes-shaped cluster objects flatnet stores and watches, in one table: their
// API group/version, plural, scope, and which daemon input they feed. Objects stay in their
// Kubernetes JSON shape everywhere (types from kubernetes-models, imported as types only so
// flatnetd pays nothing for them at run time).
import type { INamespace, IPod, IService } from 'kubernetes-models/v1'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import type { IEndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1'
import type { InputKind } from '../reconcile/contract.js'

/** The object kinds, as `kind:` spells them. */
export type ObjectKind = 'Namespace' | 'Pod' | 'NetworkPolicy' | 'Service' | 'EndpointSlice'

/** The JSON shape of each kind. */
export interface ObjectOfKind {
  Namespace: INamespace
  Pod: IPod
  NetworkPolicy: INetworkPolicy
  Service: IService
  EndpointSlice: IEndpointSlice
}

/** Any stored object. */
export type ClusterObject = ObjectOfKind[ObjectKind]

export interface KindInfo {
  kind: ObjectKind
  apiVersion: string
  /** The API path segment and `flatnetctl get` name (`pods`). */
  plural: string
  /** Names `flatnetctl get` also accepts (`pod`, `po`, `netpol`). */
  aliases: readonly string[]
  /** Namespaced kinds live under a namespace; Namespaces themselves do not. */
  namespaced: boolean
  /** The daemon input (reconcile/contract.ts) a change of this kind triggers. */
  input: InputKind
}

export const KINDS: Readonly<Record<ObjectKind, KindInfo>> = {
  Namespace: { kind: 'Namespace', apiVersion: 'v1', plural: 'namespaces', aliases: ['namespace', 'ns'], namespaced: false, input: 'namespaces' },
  Pod: { kind: 'Pod', apiVersion: 'v1', plural: 'pods', aliases: ['pod', 'po'], namespaced: true, input: 'pods' },
  NetworkPolicy: {
    kind: 'NetworkPolicy',
    apiVersion: 'networking.k8s.io/v1',
    plural: 'networkpolicies',
    aliases: ['networkpolicy', 'netpol'],
    namespaced: true,
    input: 'networkpolicies',
  },
  Service: { kind: 'Service', apiVersion: 'v1', plural: 'services', aliases: ['service', 'svc'], namespaced: true, input: 'services' },
  EndpointSlice: {
    kind: 'EndpointSlice',
    apiVersion: 'discovery.k8s.io/v1',
    plural: 'endpointslices',
    aliases: ['endpointslice'],
    namespaced: true,
    input: 'endpointslices',
  },
}

/** Every kind, in the order objects are applied when a file mixes them (namespaces first). */
export const OBJECT_KINDS: readonly ObjectKind[] = ['Namespace', 'Pod', 'NetworkPolicy', 'Service', 'EndpointSlice']

export function isObjectKind(s: unknown): s is ObjectKind {
  return typeof s === 'string' && Object.hasOwn(KINDS, s)
}

/** The kind a `flatnetctl get` argument names (`pods`, `pod`, `po`, `Pod`), case-insensitive. */
export function kindByName(name: string): ObjectKind | undefined {
  const n = name.toLowerCase()
  return OBJECT_KINDS.find((k) => k.toLowerCase() === n || KINDS[k].plural === n || KINDS[k].aliases.includes(n))
}

/** Namespaces every store has from the start, as a cluster's control plane creates them. */
export const BUILTIN_NAMESPACES: readonly string[] = ['default', 'kube-system']

/** Where an object lives: its kind, namespace ('' for cluster-scoped kinds) and name. */
export interface ObjectKey {
  kind: ObjectKind
  namespace: string
  name: string
}

/** `Pod ns/name`, `Namespace name`: how messages name an object. */
export function describeKey(key: ObjectKey): string {
  return `${key.kind} ${key.namespace ? `${key.namespace}/` : ''}${key.name}`
}

export function keyOf(obj: ClusterObject): ObjectKey {
  const kind = obj.kind as ObjectKind
  return { kind, namespace: KINDS[kind].namespaced ? (obj.metadata?.namespace ?? '') : '', name: obj.metadata?.name ?? '' }
}

/** Order of lists: by namespace, then name. */
export function compareObjects(a: ClusterObject, b: ClusterObject): number {
  const an = a.metadata?.namespace ?? ''
  const bn = b.metadata?.namespace ?? ''
  if (an !== bn) return an < bn ? -1 : 1
  const a2 = a.metadata?.name ?? ''
  const b2 = b.metadata?.name ?? ''
  return a2 < b2 ? -1 : a2 > b2 ? 1 : 0
}
