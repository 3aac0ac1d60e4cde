// The one interface every backend of cluster objects implements (file, etcd, kubernetes): list and
// watch per kind, for flatnetd; apply and delete, for `flatnetctl apply|delete` and the lab, on
// the backends flatnet is the API server of (file, etcd). On Kubernetes the API server is the
// store: flatnet only reads (kubectl writes). Code only against this file and index.ts.
import type { StopWatch } from '../datastore/types.js'
import type { ClusterObject, ObjectKey, ObjectKind, ObjectOfKind } from './kinds.js'

export type { StopWatch }

export type ObjectStoreErrorKind =
  /** The object does not exist (delete of a missing object, or a Pod in a namespace that does not exist). */
  | 'notFound'
  /** A resourceVersion compare-and-swap lost: the object changed since it was read. */
  | 'conflict'
  /** The object itself is refused (validation, a forbidden update, a protected namespace). */
  | 'invalid'
  /** The backend cannot be reached or did not answer in time. */
  | 'unavailable'
  /** Stored state flatnet cannot read; left untouched for an operator. */
  | 'corrupt'

export class ObjectStoreError extends Error {
  override name = 'ObjectStoreError'
  constructor(
    readonly kind: ObjectStoreErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

export function isObjectStoreError(err: unknown, kind?: ObjectStoreErrorKind): err is ObjectStoreError {
  return err instanceof ObjectStoreError && (kind === undefined || err.kind === kind)
}

/** What apply did, as kubectl says it. */
export type ApplyAction = 'created' | 'configured' | 'unchanged'

export interface ApplyResult<O extends ClusterObject = ClusterObject> {
  action: ApplyAction
  /** The object as stored (defaults, uid, resourceVersion, creationTimestamp). */
  object: O
}

export interface ObjectStore {
  /** Backend name, for logs. */
  readonly backend: 'file' | 'etcd' | 'kubernetes'

  /** Every object of `kind` (of one namespace if given), sorted by namespace then name. */
  list<K extends ObjectKind>(kind: K, namespace?: string): Promise<Array<ObjectOfKind[K]>>

  /**
   * Calls onList with the full list of `kind` (sorted by namespace then name) once it has been
   * read completely, then after every change (bursts may be coalesced into one call; a list
   * equal to the last one is not delivered again). Errors go to onError; the watch keeps
   * retrying. Returns a function that stops it.
   */
  watch<K extends ObjectKind>(kind: K, onList: (objects: Array<ObjectOfKind[K]>) => void, onError: (err: Error) => void): StopWatch

  close(): Promise<void>
}

/** The backends flatnet serves objects from itself (file, etcd): writes as the API server would do them. */
export interface WritableObjectStore extends ObjectStore {
  get<K extends ObjectKind>(key: ObjectKey & { kind: K }): Promise<ObjectOfKind[K] | undefined>

  /**
   * Creates the object or replaces the stored one (server defaults applied; see rules.ts), in one
   * compare-and-swap: two concurrent applies never lose one. When the object carries
   * `metadata.resourceVersion` it must equal the stored one ('conflict' otherwise). A namespaced
   * object needs its Namespace to exist ('notFound'). An object without `status` keeps the stored
   * status (as a spec update through the API server does).
   */
  apply<O extends ClusterObject>(object: O): Promise<ApplyResult<O>>

  /**
   * Deletes the object; returns it, or undefined if there was none. Deleting a Namespace deletes
   * every object in it; `default` and `kube-system` cannot be deleted ('invalid').
   */
  delete<K extends ObjectKind>(key: ObjectKey & { kind: K }): Promise<ObjectOfKind[K] | undefined>
}

export function isWritable(store: ObjectStore): store is WritableObjectStore {
  return typeof (store as Partial<WritableObjectStore>).apply === 'function'
}
