// Cluster objects on etcd, one key per object: `<prefix>objects/<Kind>/<namespace>/<name>`
// (`<prefix>objects/Namespace/<name>` for Namespaces), the object's JSON as value. As in the
// Kubernetes API server, an object's resourceVersion is its key's mod_revision (filled in on
// read, never stored), and every write is one transaction guarded by compares: "unchanged since
// read" (or "absent" for a create) on the object, "exists" on its Namespace — so two concurrent
// applies never lose one and no object lands in a namespace that is being deleted.
import { Etcd3, type IKeyValue, type IOperation, type Watcher } from 'etcd3'
import { BUILTIN_NAMESPACES, KINDS, OBJECT_KINDS, compareObjects, describeKey, keyOf, type ClusterObject, type ObjectKey, type ObjectKind, type ObjectOfKind } from './kinds.js'
import { builtinNamespaces, canonicalJson, withDefaults, namespaceMissingError, planApply, undeletableNamespaceError } from './rules.js'
import { ObjectStoreError, type ApplyResult, type StopWatch, type WritableObjectStore } from './store.js'
import { withEtcdDeadline } from '../datastore/etcdDeadline.js'
import type { IService } from 'kubernetes-models/v1'
import type { Cidr } from '../../ipam/index.js'
import { DEFAULT_SERVICE_CIDRS, admitService, parseServiceCidrs, serviceAllocations } from './serviceRules.js'

export interface EtcdObjectStoreOptions {
  endpoints: string[]
  /** Key prefix, default `/flatnet/` (the node datastore's); objects live under `<prefix>objects/`. */
  prefix?: string
  /** Deadline of one etcd request, default 5000 ms. */
  timeoutMs?: number
  /** Ranges Service cluster IPs are allocated from, primary first (serviceRules.ts); default 10.96.0.0/16. */
  serviceCIDRs?: readonly string[]
}

const maxLostRaces = 200

/** Watch reconnect backoff: etcd3's default grows to 30 s, too slow for a node agent to notice etcd is back. */
class CappedBackoff {
  constructor(readonly duration = 100) {}
  next(): CappedBackoff {
    return new CappedBackoff(Math.min(this.duration * 2, 2000))
  }
}

export async function openEtcdObjectStore(options: EtcdObjectStoreOptions): Promise<EtcdObjectStore> {
  const timeoutMs = options.timeoutMs ?? 5000
  let prefix = options.prefix ?? '/flatnet/'
  if (!prefix.endsWith('/')) prefix += '/'
  if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) throw new ObjectStoreError('invalid', 'open etcd object store: no endpoints given')
  const client = new Etcd3({
    hosts: options.endpoints,
    dialTimeout: timeoutMs,
    // Unary calls get a deadline; streams (watch) must not, they live long.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: new Date(Date.now() + timeoutMs) }),
    faultHandling: { watchBackoff: new CappedBackoff() },
  })
  const ranges = parseServiceCidrs(options.serviceCIDRs ?? DEFAULT_SERVICE_CIDRS)
  const store = new EtcdObjectStore(client, options.endpoints, `${prefix}objects/`, timeoutMs, `${prefix}serviceallocations/`, ranges)
  try {
    await store.initialize() // an unreachable etcd is reported at open, not at first use
  } catch (err) {
    client.close()
    throw err
  }
  return store
}

export class EtcdObjectStore implements WritableObjectStore {
  readonly backend = 'etcd' as const
  private readonly stops = new Set<StopWatch>()

  constructor(
    private readonly client: Etcd3,
    private readonly endpoints: string[],
    /** `<prefix>objects/` */
    readonly root: string,
    private readonly timeoutMs: number,
    /**
     * `<prefix>serviceallocations/`: one key per allocated cluster IP (`clusterips/<ip>`) and node
     * port (`nodeports/<n>`), its value the holding Service's `namespace/name` — as the API
     * server's IPAddress objects. A Service's write creates its new ones (compare: absent) and
     * deletes those it released in the same transaction, so two applies never get one.
     */
    readonly allocationRoot: string,
    private readonly serviceRanges: readonly Cidr[],
  ) {}

  private allocationKeys(svc: IService | undefined): string[] {
    const held = serviceAllocations(svc)
    return [...held.ips.map((ip) => `${this.allocationRoot}clusterips/${ip}`), ...held.nodePorts.map((n) => `${this.allocationRoot}nodeports/${n}`)]
  }

  /**
   * The allocation keys as last read, with their holders, kept up to date by this store's own
   * writes and read again after any lost compare-and-swap: an apply costs no listing of every key
   * (10 000 Services would list 10 000 keys each). A stale cache is safe: the write's compares
   * (absent, or unchanged) refuse what another writer took meanwhile, and the retry reads again.
   */
  private allocationCache: Map<string, { holder: string; revision: string }> | undefined

  /**
   * What other Services hold: every allocation key but `stored`'s own. A key whose holder no
   * longer holds it (left by a Service created while its Namespace was being deleted) is taken
   * back when asked for by number: `stale` maps it to the revision the write must compare.
   */
  private async takenAllocations(operation: string, stored: IService | undefined, incoming: IService) {
    if (!this.allocationCache) {
      const all = await this.timed(operation, this.client.getAll().prefix(this.allocationRoot).exec())
      this.allocationCache = new Map(all.kvs.map((kv) => [kv.key.toString(), { holder: kv.value.toString(), revision: kv.mod_revision }]))
    }
    const cache = this.allocationCache
    const own = new Set(this.allocationKeys(stored))
    const stale = new Map<string, string>()
    for (const key of this.allocationKeys(incoming)) {
      const held = cache.get(key)
      if (!held || own.has(key)) continue
      const [ns, name] = held.holder.split('/')
      const holderKv = ns && name ? (await this.timed(operation, this.client.get(this.keyOf({ kind: 'Service', namespace: ns, name })).exec())).kvs[0] : undefined
      const holds = holderKv && this.allocationKeys(this.decode(holderKv, 'Service', operation) as IService).includes(key)
      if (!holds) stale.set(key, held.revision)
    }
    const takenKey = (key: string) => cache.has(key) && !own.has(key) && !stale.has(key)
    const taken = {
      ips: { has: (ip: string) => takenKey(`${this.allocationRoot}clusterips/${ip}`) },
      nodePorts: { has: (n: number) => takenKey(`${this.allocationRoot}nodeports/${n}`) },
    }
    return { taken, stale }
  }

  private kindPrefix(kind: ObjectKind): string {
    return `${this.root}${kind}/`
  }

  private keyOf(key: ObjectKey): string {
    return KINDS[key.kind].namespaced ? `${this.kindPrefix(key.kind)}${key.namespace}/${key.name}` : `${this.kindPrefix(key.kind)}${key.name}`
  }

  /** Creates the built-in namespaces where absent. */
  async initialize(): Promise<void> {
    for (const ns of builtinNamespaces(new Date(), '')) {
      const key = this.keyOf(keyOf(ns))
      await this.timed(
        'create the built-in namespaces',
        this.client
          .if(key, 'Create', '==', 0)
          .then(this.client.put(key).value(this.encode(ns)))
          .commit(),
      )
    }
  }

  async list<K extends ObjectKind>(kind: K, namespace?: string): Promise<Array<ObjectOfKind[K]>> {
    const operation = `list ${KINDS[kind].plural}`
    const prefix = namespace !== undefined && KINDS[kind].namespaced ? `${this.kindPrefix(kind)}${namespace}/` : this.kindPrefix(kind)
    const response = await this.timed(operation, this.client.getAll().prefix(prefix).exec())
    return response.kvs.map((kv) => this.decode(kv, kind, operation) as ObjectOfKind[K]).sort(compareObjects)
  }

  async get<K extends ObjectKind>(key: ObjectKey & { kind: K }): Promise<ObjectOfKind[K] | undefined> {
    const operation = `get ${describeKey(key)}`
    const kv = (await this.timed(operation, this.client.get(this.keyOf(key)).exec())).kvs[0]
    return kv ? (this.decode(kv, key.kind, operation) as ObjectOfKind[K]) : undefined
  }

  async apply<O extends ClusterObject>(object: O): Promise<ApplyResult<O>> {
    const operation = `apply ${describeKey(keyOf(withDefaults(object)))}`
    for (let lostRaces = 0; ;) {
      const key = keyOf(withDefaults(object)) // the namespace defaults to `default`
      const etcdKey = this.keyOf(key)
      const kv = (await this.timed(operation, this.client.get(etcdKey).exec())).kvs[0]
      const stored = kv ? this.decode(kv, key.kind, operation) : undefined
      if (KINDS[key.kind].namespaced && !stored) {
        const nsKv = (await this.timed(operation, this.client.get(this.keyOf({ kind: 'Namespace', namespace: '', name: key.namespace })).exec())).kvs[0]
        if (!nsKv) throw namespaceMissingError(key)
      }
      let admitted: ClusterObject = object
      let stale = new Map<string, string>()
      if (key.kind === 'Service') {
        const found = await this.takenAllocations(operation, stored as IService | undefined, object as unknown as IService)
        stale = found.stale
        admitted = admitService(stored as IService | undefined, object as unknown as IService, found.taken, this.serviceRanges)
      }
      const plan = planApply(stored, admitted, 'pending', new Date())
      if (plan.action === 'unchanged') return plan as unknown as ApplyResult<O>
      const txn = kv ? this.client.if(etcdKey, 'Mod', '==', kv.mod_revision) : this.client.if(etcdKey, 'Create', '==', 0)
      if (KINDS[key.kind].namespaced) txn.and(this.keyOf({ kind: 'Namespace', namespace: '', name: key.namespace }), 'Create', '>', 0)
      const writes: IOperation[] = [this.client.put(etcdKey).value(this.encode(plan.object))]
      if (key.kind === 'Service') {
        const before = new Set(this.allocationKeys(stored as IService | undefined))
        const after = this.allocationKeys(plan.object as IService)
        const holder = `${key.namespace}/${key.name}`
        for (const k of after) {
          if (before.has(k)) continue
          const staleRevision = stale.get(k)
          if (staleRevision !== undefined) txn.and(k, 'Mod', '==', staleRevision)
          else txn.and(k, 'Create', '==', 0)
          writes.push(this.client.put(k).value(holder))
        }
        for (const k of before) if (!after.includes(k)) writes.push(this.client.delete().key(k))
      }
      const result = await this.timed(operation, txn.then(...writes).commit())
      if (result.succeeded) {
        plan.object.metadata!.resourceVersion = String(result.header.revision)
        if (key.kind === 'Service' && this.allocationCache) {
          const after = new Set(this.allocationKeys(plan.object as IService))
          for (const k of this.allocationKeys(stored as IService | undefined)) if (!after.has(k)) this.allocationCache.delete(k)
          for (const k of after) this.allocationCache.set(k, { holder: `${key.namespace}/${key.name}`, revision: String(result.header.revision) })
        }
        return plan as unknown as ApplyResult<O>
      }
      this.allocationCache = undefined // another writer was first: read what it holds
      if (++lostRaces > maxLostRaces) throw new ObjectStoreError('unavailable', `${operation}: etcd ${this.endpoints.join(',')}: lost ${maxLostRaces} compare-and-swap races in a row`)
    }
  }

  async delete<K extends ObjectKind>(key: ObjectKey & { kind: K }): Promise<ObjectOfKind[K] | undefined> {
    const operation = `delete ${describeKey(key)}`
    if (key.kind === 'Namespace' && BUILTIN_NAMESPACES.includes(key.name)) throw undeletableNamespaceError(key.name)
    const etcdKey = this.keyOf(key)
    for (let lostRaces = 0; ;) {
      const kv = (await this.timed(operation, this.client.get(etcdKey).exec())).kvs[0]
      if (!kv) return undefined
      const found = this.decode(kv, key.kind, operation) as ObjectOfKind[K]
      const deletes = [this.client.delete().key(etcdKey)]
      // A Service's addresses and node ports are released with it.
      if (key.kind === 'Service') for (const k of this.allocationKeys(found as IService)) deletes.push(this.client.delete().key(k))
      // A Namespace takes everything in it along (the API server's namespace lifecycle).
      if (key.kind === 'Namespace') {
        for (const kind of OBJECT_KINDS.filter((k) => KINDS[k].namespaced)) deletes.push(this.client.delete().prefix(`${this.kindPrefix(kind)}${key.name}/`))
        for (const svc of await this.list('Service', key.name)) for (const k of this.allocationKeys(svc)) deletes.push(this.client.delete().key(k))
      }
      const result = await this.timed(
        operation,
        this.client
          .if(etcdKey, 'Mod', '==', kv.mod_revision)
          .then(...deletes)
          .commit(),
      )
      if (result.succeeded) {
        if (key.kind === 'Service') for (const k of this.allocationKeys(found as IService)) this.allocationCache?.delete(k)
        if (key.kind === 'Namespace') this.allocationCache = undefined
        return found
      }
      if (++lostRaces > maxLostRaces) throw new ObjectStoreError('unavailable', `${operation}: etcd ${this.endpoints.join(',')}: lost ${maxLostRaces} compare-and-swap races in a row`)
    }
  }

  watch<K extends ObjectKind>(kind: K, onList: (objects: Array<ObjectOfKind[K]>) => void, onError: (err: Error) => void): StopWatch {
    const operation = `watch ${this.kindPrefix(kind)} on etcd`
    const prefix = this.kindPrefix(kind)
    let stopped = false
    let watcher: Watcher | undefined
    let objects: Map<string, ClusterObject> | undefined
    let listRevision = -1n
    // Events that arrive while a re-list is in flight wait here, then apply if newer than it.
    let buffered: Array<{ type: 'put' | 'delete'; kv: IKeyValue }> | undefined
    let emitted: string | undefined
    let emitTimer: NodeJS.Timeout | undefined
    let connectTimer: NodeJS.Timeout | undefined
    let restartTimer: NodeJS.Timeout | undefined
    let relistTimer: NodeJS.Timeout | undefined

    const report = (err: unknown) => {
      if (!stopped) onError(this.toStoreError(err, operation))
    }
    // Coalesce bursts (a re-list, a file of many objects applied) into one call; only real changes.
    const emitSoon = () => {
      if (emitTimer || stopped || !objects) return
      emitTimer = setTimeout(() => {
        emitTimer = undefined
        if (stopped || !objects) return
        const list = [...objects.values()].sort(compareObjects) as Array<ObjectOfKind[K]>
        const text = canonicalJson(list)
        if (text === emitted) return
        emitted = text
        onList(list)
      }, 5)
    }
    const apply = (type: 'put' | 'delete', kv: IKeyValue) => {
      if (buffered) return void buffered.push({ type, kv })
      if (!objects || BigInt(kv.mod_revision) <= listRevision) return
      const key = kv.key.toString()
      if (type === 'delete') objects.delete(key)
      else {
        try {
          objects.set(key, this.decode(kv, kind, operation))
        } catch (err) {
          // Keep what was known of it: a bad write is reported, not taken as a deletion.
          return report(err)
        }
      }
      emitSoon()
    }
    let relisting = false
    let relistAgain = false
    const relist = async (): Promise<void> => {
      if (relisting) {
        relistAgain = true
        return
      }
      relisting = true
      buffered = []
      try {
        const response = await this.timed(operation, this.client.getAll().prefix(prefix).exec())
        const next = new Map<string, ClusterObject>()
        for (const kv of response.kvs) next.set(kv.key.toString(), this.decode(kv, kind, operation))
        objects = next
        listRevision = BigInt(response.header.revision)
      } catch (err) {
        report(err)
        clearTimeout(relistTimer)
        if (!stopped) relistTimer = setTimeout(() => void relist(), 1000)
      } finally {
        const events = buffered
        buffered = undefined
        for (const e of events) apply(e.type, e.kv)
        emitSoon()
        relisting = false
      }
      if (relistAgain && !stopped) {
        relistAgain = false
        await relist()
      }
    }
    const start = () => {
      if (stopped) return
      const w = this.client.watch().prefix(prefix).watcher()
      watcher = w
      connectTimer = setTimeout(() => report(new Error(`not connected after ${this.timeoutMs} ms; still trying`)), this.timeoutMs)
      // On every (re)connect a full re-list also covers history etcd compacted away meanwhile.
      w.on('connected', () => {
        clearTimeout(connectTimer)
        void relist()
      })
      w.on('put', (kv) => apply('put', kv))
      w.on('delete', (kv) => apply('delete', kv))
      w.on('disconnected', (err) => report(err))
      w.on('error', (err) => {
        report(err)
        void w.cancel().catch(() => undefined)
        if (watcher === w && !stopped) restartTimer = setTimeout(start, 1000)
      })
    }
    start()
    const stop = () => {
      if (stopped) return
      stopped = true
      for (const t of [emitTimer, connectTimer, restartTimer, relistTimer]) clearTimeout(t)
      void watcher?.cancel().catch(() => undefined)
      this.stops.delete(stop)
    }
    this.stops.add(stop)
    return stop
  }

  async close(): Promise<void> {
    for (const stop of [...this.stops]) stop()
    this.client.close()
  }

  private encode(object: ClusterObject): string {
    const copy = structuredClone(object)
    delete copy.metadata?.resourceVersion
    return JSON.stringify(copy)
  }

  private decode(kv: IKeyValue, kind: ObjectKind, operation: string): ClusterObject {
    const key = kv.key.toString()
    let obj: ClusterObject
    try {
      obj = JSON.parse(kv.value.toString()) as ClusterObject
    } catch (err) {
      throw new ObjectStoreError('corrupt', `${operation}: etcd key ${key} is not a flatnet object: invalid JSON: ${(err as Error).message}`)
    }
    if (!obj || typeof obj !== 'object' || obj.kind !== kind || typeof obj.metadata?.name !== 'string' || this.keyOf(keyOf(obj)) !== key)
      throw new ObjectStoreError('corrupt', `${operation}: etcd key ${key} does not hold the ${kind} its key names`)
    obj.metadata!.resourceVersion = String(kv.mod_revision)
    return obj
  }

  /** Bounds any etcd promise by the request timeout and maps its failure to an ObjectStoreError. */
  private async timed<T>(operation: string, work: Promise<T>): Promise<T> {
    try {
      return await withEtcdDeadline(work, this.timeoutMs)
    } catch (err) {
      throw this.toStoreError(err, operation)
    }
  }

  private toStoreError(err: unknown, operation: string): ObjectStoreError {
    if (err instanceof ObjectStoreError) return err
    return new ObjectStoreError('unavailable', `${operation}: etcd ${this.endpoints.join(',')}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}
