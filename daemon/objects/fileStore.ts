// Cluster objects in the file datastore: one JSON state file, `objects.json` beside the node state
// file, holding every object by kind and `namespace/name`, one object per line. Every write is one
// read-modify-write under the generation lock of ../datastore/fileLock.ts and commits by rename(2):
// many processes (each lab node's flatnetd, flatnetctl, the lab) share it safely, readers see the
// old or the new file, never half of one, and two concurrent applies never lose one. The
// generation a write produces is the resourceVersion of what it wrote (like etcd's revision).
import { watchStateFile } from '../datastore/fileWatch.js'
import { mkdir, open, rename, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { GenerationLock } from '../datastore/fileLock.js'
import { BUILTIN_NAMESPACES, OBJECT_KINDS, KINDS, compareObjects, describeKey, isObjectKind, keyOf, type ClusterObject, type ObjectKey, type ObjectKind, type ObjectOfKind } from './kinds.js'
import { builtinNamespaces, namespaceMissingError, planApply, undeletableNamespaceError } from './rules.js'
import { ObjectStoreError, type ApplyResult, type StopWatch, type WritableObjectStore } from './store.js'
import { AllocationIndex, DEFAULT_SERVICE_CIDRS, admitService, parseServiceCidrs } from './serviceRules.js'
import type { IService } from 'kubernetes-models/v1'
import type { Cidr } from '../../ipam/index.js'

export const OBJECT_STATE_KIND = 'flatnet/objects'
const OBJECT_STATE_VERSION = 1

/** The objects file of a file datastore whose node state is `nodesPath`. */
export function objectsPathFor(nodesPath: string): string {
  return join(dirname(nodesPath), 'objects.json')
}

export interface FileObjectStoreOptions {
  /** The objects state file, e.g. `/var/lib/flatnet/objects.json` (objectsPathFor). */
  path: string
  /** watch() re-checks the file this often besides inotify (which can miss events); default 500 ms. */
  pollIntervalMs?: number
  /** A write waits this long for a live lock holder before failing 'unavailable'; default 10 s. */
  lockTimeoutMs?: number
  /** Ranges Service cluster IPs are allocated from, primary first (serviceRules.ts); default 10.96.0.0/16. */
  serviceCIDRs?: readonly string[]
}

interface KindState {
  /** Generation of the last write that changed this kind: a watcher delivers when it moves. */
  changed: number
  /** By `namespace/name` ('' namespace for Namespaces). */
  objects: Map<string, ClusterObject>
}

interface ObjectState {
  generation: number
  kinds: Record<ObjectKind, KindState>
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const errnoText = (err: unknown) => (err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message ?? String(err)
const mapKey = (key: { namespace: string; name: string }) => `${key.namespace}/${key.name}`

function emptyState(): ObjectState {
  return { generation: 0, kinds: Object.fromEntries(OBJECT_KINDS.map((k) => [k, { changed: 0, objects: new Map() }])) as Record<ObjectKind, KindState> }
}

function corrupt(path: string, detail: string): ObjectStoreError {
  return new ObjectStoreError('corrupt', `read cluster objects ${path}: not a valid flatnet objects file (${detail}); it is left untouched — repair it or move it away to start afresh`)
}

function parseState(path: string, text: string): ObjectState {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw corrupt(path, `invalid JSON: ${(err as Error).message}`)
  }
  const d = doc as { kind?: unknown; formatVersion?: unknown; generation?: unknown; kinds?: unknown } | null
  if (!d || typeof d !== 'object' || d.kind !== OBJECT_STATE_KIND) throw corrupt(path, `kind is not ${JSON.stringify(OBJECT_STATE_KIND)}`)
  if (d.formatVersion !== OBJECT_STATE_VERSION) throw corrupt(path, `formatVersion ${JSON.stringify(d.formatVersion)}, expected ${OBJECT_STATE_VERSION}`)
  if (!Number.isSafeInteger(d.generation) || (d.generation as number) < 0) throw corrupt(path, `generation ${JSON.stringify(d.generation)}`)
  const state = emptyState()
  state.generation = d.generation as number
  const kinds = (d.kinds ?? {}) as Record<string, { changed?: unknown; objects?: unknown }>
  for (const [kind, entry] of Object.entries(kinds)) {
    if (!isObjectKind(kind)) continue // a later version's kind: not ours to read
    if (!Array.isArray(entry?.objects) || !Number.isSafeInteger(entry.changed)) throw corrupt(path, `kinds.${kind} has no objects list or changed generation`)
    const ks = state.kinds[kind]
    ks.changed = entry.changed as number
    for (const o of entry.objects as unknown[]) {
      const obj = o as ClusterObject
      if (!obj || typeof obj !== 'object' || obj.kind !== kind || typeof obj.metadata?.name !== 'string') throw corrupt(path, `kinds.${kind} holds ${JSON.stringify(o).slice(0, 100)}`)
      ks.objects.set(mapKey(keyOf(obj)), obj)
    }
  }
  return state
}

function serializeState(state: ObjectState): string {
  const kinds = OBJECT_KINDS.map((kind) => {
    const ks = state.kinds[kind]
    const lines = [...ks.objects.values()].sort(compareObjects).map((o) => '        ' + JSON.stringify(o))
    const body = lines.length ? `[\n${lines.join(',\n')}\n      ]` : '[]'
    return `    ${JSON.stringify(kind)}: {\n      "changed": ${ks.changed},\n      "objects": ${body}\n    }`
  })
  return `{\n  "kind": ${JSON.stringify(OBJECT_STATE_KIND)},\n  "formatVersion": ${OBJECT_STATE_VERSION},\n  "generation": ${state.generation},\n  "kinds": {\n${kinds.join(',\n')}\n  }\n}\n`
}

function sortedList<K extends ObjectKind>(state: ObjectState, kind: K, namespace?: string): Array<ObjectOfKind[K]> {
  const all = [...state.kinds[kind].objects.values()] as Array<ObjectOfKind[K]>
  return (namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace)).sort(compareObjects)
}

/** Opens (and on first use creates, with the built-in namespaces) the objects file. */
export async function openFileObjectStore(options: FileObjectStoreOptions): Promise<FileObjectStore> {
  const dir = dirname(options.path)
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new ObjectStoreError('unavailable', `open cluster objects ${options.path}: create directory ${dir}: ${errnoText(err)}`, { cause: err })
  }
  const store = new FileObjectStore(options.path, options.pollIntervalMs ?? 500, options.lockTimeoutMs ?? 10_000, parseServiceCidrs(options.serviceCIDRs ?? DEFAULT_SERVICE_CIDRS))
  await store.initialize()
  return store
}

/** A change to commit: the kinds whose objects a mutation replaced. */
type Mutation<T> = { changed: ObjectKind[]; result: T }

export class FileObjectStore implements WritableObjectStore {
  readonly backend = 'file' as const
  private readonly lock: GenerationLock
  private queue: Promise<unknown> = Promise.resolve()
  private readonly stops = new Set<StopWatch>()
  private closed = false
  private parsed: { identity: string; state: ObjectState } | undefined

  constructor(
    readonly path: string,
    private readonly pollIntervalMs: number,
    private readonly lockTimeoutMs: number,
    private readonly serviceRanges: readonly Cidr[],
  ) {
    this.lock = new GenerationLock(path)
  }

  /** Writes the built-in namespaces into a new file; reports an unreadable one at open. */
  async initialize(): Promise<void> {
    const state = await this.readState()
    if (state.generation > 0) return
    await this.update('create the built-in namespaces', (s, generation, now) => {
      if (s.generation > 0) return { changed: [], result: undefined }
      for (const ns of builtinNamespaces(now, String(generation))) s.kinds.Namespace.objects.set(mapKey(keyOf(ns)), ns)
      return { changed: ['Namespace'], result: undefined }
    })
  }

  async list<K extends ObjectKind>(kind: K, namespace?: string): Promise<Array<ObjectOfKind[K]>> {
    return sortedList(await this.readState(), kind, namespace)
  }

  async get<K extends ObjectKind>(key: ObjectKey & { kind: K }): Promise<ObjectOfKind[K] | undefined> {
    return (await this.readState()).kinds[key.kind].objects.get(mapKey(key)) as ObjectOfKind[K] | undefined
  }

  apply<O extends ClusterObject>(object: O): Promise<ApplyResult<O>> {
    return this.applyMany([object]).then((r) => r[0] as ApplyResult<O>)
  }

  /** Several applies in one write (seeding, benchmarks); all or none: a refused one fails the whole batch. */
  async applyMany(objects: ClusterObject[]): Promise<ApplyResult[]> {
    if (objects.length === 0) return []
    const what = objects.length === 1 ? `apply ${describeKey(keyOf(objects[0]!))}` : `apply ${objects.length} objects`
    return this.update(what, (state, generation, now) => {
      const changed = new Set<ObjectKind>()
      // Allocation reads what every other Service holds in this same locked read-modify-write.
      let allocations: AllocationIndex | undefined
      const results = objects.map((incoming) => {
        const key = keyOf(incoming)
        const namespaced = KINDS[key.kind].namespaced
        const ns = namespaced ? key.namespace || 'default' : ''
        if (namespaced && !state.kinds.Namespace.objects.has(mapKey({ namespace: '', name: ns }))) throw namespaceMissingError({ ...key, namespace: ns })
        const objects = state.kinds[key.kind].objects
        const id = mapKey({ namespace: ns, name: key.name })
        const stored = objects.get(id)
        let admitted = incoming
        if (key.kind === 'Service') {
          allocations ??= AllocationIndex.of(state.kinds.Service.objects.values() as Iterable<IService>)
          admitted = admitService(stored as IService | undefined, incoming as IService, allocations.takenBy(id), this.serviceRanges)
        }
        const plan = planApply(stored, admitted, String(generation), now)
        if (plan.action !== 'unchanged') {
          objects.set(id, plan.object)
          changed.add(key.kind)
          if (key.kind === 'Service') {
            allocations!.release(id, stored as IService | undefined)
            allocations!.hold(id, plan.object as IService)
          }
        }
        return plan as ApplyResult
      })
      return { changed: [...changed], result: results }
    })
  }

  async delete<K extends ObjectKind>(key: ObjectKey & { kind: K }): Promise<ObjectOfKind[K] | undefined> {
    if (key.kind === 'Namespace' && BUILTIN_NAMESPACES.includes(key.name)) throw undeletableNamespaceError(key.name)
    return this.update(`delete ${describeKey(key)}`, (state) => {
      const objects = state.kinds[key.kind].objects
      const id = mapKey(key)
      const found = objects.get(id) as ObjectOfKind[K] | undefined
      if (!found) return { changed: [], result: undefined }
      objects.delete(id)
      const changed: ObjectKind[] = [key.kind]
      // A Namespace takes everything in it along (the API server's namespace lifecycle).
      if (key.kind === 'Namespace') {
        for (const kind of OBJECT_KINDS.filter((k) => KINDS[k].namespaced)) {
          const inside = [...state.kinds[kind].objects.keys()].filter((k) => k.startsWith(`${key.name}/`))
          for (const k of inside) state.kinds[kind].objects.delete(k)
          if (inside.length) changed.push(kind)
        }
      }
      return { changed, result: found }
    })
  }

  watch<K extends ObjectKind>(kind: K, onList: (objects: Array<ObjectOfKind[K]>) => void, onError: (err: Error) => void): StopWatch {
    let emitted: number | undefined
    const look = async (stopped: () => boolean): Promise<void> => {
      const state = await this.readState()
      const changed = state.kinds[kind].changed
      if (changed !== emitted && !stopped()) {
        emitted = changed
        onList(sortedList(state, kind))
      }
    }
    const stopWatching = watchStateFile({
      path: this.path,
      pollIntervalMs: this.pollIntervalMs,
      look,
      onError,
      watchError: (message, cause) => new ObjectStoreError('unavailable', message, { cause }),
    })
    const stop = () => {
      stopWatching()
      this.stops.delete(stop)
    }
    this.stops.add(stop)
    return stop
  }

  async close(): Promise<void> {
    this.closed = true
    for (const stop of [...this.stops]) stop()
    await this.queue.catch(() => undefined)
  }

  /** The current state; a fresh copy the caller may change (the parse cache keeps its own). */
  private async readState(): Promise<ObjectState> {
    if (this.closed) throw new ObjectStoreError('unavailable', `read cluster objects ${this.path}: store is closed`)
    let handle
    try {
      handle = await open(this.path, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState()
      throw new ObjectStoreError('unavailable', `read cluster objects ${this.path}: ${errnoText(err)}`, { cause: err })
    }
    try {
      // Only ever replaced by rename, never rewritten in place: same inode and ctime, same content.
      const st = await handle.stat({ bigint: true })
      const identity = `${st.dev}:${st.ino}:${st.ctimeNs}:${st.size}`
      if (this.parsed?.identity !== identity) this.parsed = { identity, state: parseState(this.path, await handle.readFile('utf8')) }
      const s = this.parsed.state
      return {
        generation: s.generation,
        kinds: Object.fromEntries(OBJECT_KINDS.map((k) => [k, { changed: s.kinds[k].changed, objects: new Map(s.kinds[k].objects) }])) as Record<ObjectKind, KindState>,
      }
    } catch (err) {
      if (err instanceof ObjectStoreError) throw err
      throw new ObjectStoreError('unavailable', `read cluster objects ${this.path}: ${errnoText(err)}`, { cause: err })
    } finally {
      await handle.close()
    }
  }

  private async writeState(state: ObjectState): Promise<void> {
    const temp = this.lock.tempPath('state')
    try {
      const file = await open(temp, 'wx', 0o600)
      try {
        await file.writeFile(serializeState(state))
        await file.sync()
      } finally {
        await file.close()
      }
      await rename(temp, this.path)
      const dir = await open(dirname(this.path), 'r')
      try {
        await dir.sync() // the rename is durable only once the directory entry is
      } finally {
        await dir.close()
      }
    } catch (err) {
      await unlink(temp).catch(() => undefined)
      throw new ObjectStoreError('unavailable', `write cluster objects ${this.path}: ${errnoText(err)}`, { cause: err })
    }
  }

  /** One read-modify-write under the generation lock; writes of this instance run one at a time. */
  private update<T>(operation: string, mutate: (state: ObjectState, generation: number, now: Date) => Mutation<T>): Promise<T> {
    const run = this.queue.then(() => this.transaction(operation, mutate))
    this.queue = run.catch(() => undefined)
    return run
  }

  private async transaction<T>(operation: string, mutate: (state: ObjectState, generation: number, now: Date) => Mutation<T>): Promise<T> {
    const deadline = Date.now() + this.lockTimeoutMs
    let backoff = 1
    for (;;) {
      const seen = await this.readState()
      const attempt = await this.lock.tryAcquire(seen.generation).catch((err: unknown) => {
        throw new ObjectStoreError('unavailable', `${operation}: lock ${this.path}: ${errnoText(err)}`, { cause: err })
      })
      if (!attempt.held) {
        if (Date.now() > deadline)
          throw new ObjectStoreError('unavailable', `${operation}: ${this.path} stayed locked for more than ${this.lockTimeoutMs} ms: ${attempt.slot} is held by pid ${attempt.holder.pid}`)
        await sleep(backoff * (0.5 + Math.random()))
        backoff = Math.min(backoff * 2, 20)
        continue
      }
      let committed: number | undefined
      try {
        const current = await this.readState()
        // Someone committed between our read and our slot: start over from what they wrote.
        if (current.generation !== seen.generation) continue
        const generation = current.generation + 1
        const { changed, result } = mutate(current, generation, new Date())
        if (changed.length) {
          for (const kind of changed) current.kinds[kind].changed = generation
          current.generation = generation
          await this.writeState(current)
          committed = generation
        }
        return result
      } finally {
        await this.lock.release(attempt.slot)
        if (committed !== undefined) await this.lock.collectGarbage(committed).catch(() => undefined)
      }
    }
  }
}
