// The cluster objects as flatnetd sees them: the object store of the daemon's datastore (opened
// again until it opens), one watch per kind a reconciler needs, and the latest full list of each
// — the ObjectInputs reconcilers read. A kind counts as synced once fully listed; the runner never
// syncs a reconciler that needs it before that. Trouble (the store unreachable, a watch failing)
// keeps the last good lists — the last programmed policy stays in force rather than opening up —
// and makes the node not ready, naming the kind, until that kind is listed again.
import type { INamespace, IPod, IService } from 'kubernetes-models/v1'
import type { IEndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import type { Logger } from 'pino'
import type { DatastoreConfig } from '../datastore/types.js'
import { errField } from '../log.js'
import type { InputKind, ReadinessGate } from '../reconcile/contract.js'
import { KINDS, OBJECT_KINDS, type ClusterObject, type ObjectKind } from './kinds.js'
import { openObjectStore } from './index.js'
import type { ObjectStore, StopWatch } from './store.js'
import type { ObjectInputKind, ObjectInputs } from './view.js'

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))

export interface ObjectViewOptions {
  datastore: DatastoreConfig
  /** The input kinds the enabled reconcilers need; only these are watched. */
  inputs: readonly ObjectInputKind[]
  log: Logger
  /** Wait before reopening the store after a failure. */
  retryMs: number
  /** Every failed store operation (for the metrics). */
  onDatastoreError(op: string): void
  /** Kinds whose full list changed. */
  onChange(kinds: InputKind[]): void
}

/** The kind an input kind stands for. */
export function kindOfInput(input: ObjectInputKind): ObjectKind {
  return OBJECT_KINDS.find((k) => KINDS[k].input === input)!
}

export class ObjectView implements ObjectInputs {
  private store: ObjectStore | undefined
  private readonly lists = new Map<ObjectKind, readonly ClusterObject[]>()
  /** Per kind, the last watch error since its last full list. */
  private readonly trouble = new Map<ObjectKind, string>()
  private readonly stops: StopWatch[] = []
  private retryTimer: NodeJS.Timeout | undefined
  private openProblem: string | undefined
  private stopped = false

  constructor(private readonly opts: ObjectViewOptions) {}

  /** Opens the store in the background and watches the kinds needed; nothing when none is. */
  start(): void {
    if (this.opts.inputs.length === 0) return
    this.openProblem = 'opening the cluster object store'
    void this.open()
  }

  namespaces(): readonly INamespace[] | undefined {
    return this.lists.get('Namespace') as readonly INamespace[] | undefined
  }

  pods(): readonly IPod[] | undefined {
    return this.lists.get('Pod') as readonly IPod[] | undefined
  }

  networkPolicies(): readonly INetworkPolicy[] | undefined {
    return this.lists.get('NetworkPolicy') as readonly INetworkPolicy[] | undefined
  }

  services(): readonly IService[] | undefined {
    return this.lists.get('Service') as readonly IService[] | undefined
  }

  endpointSlices(): readonly IEndpointSlice[] | undefined {
    return this.lists.get('EndpointSlice') as readonly IEndpointSlice[] | undefined
  }

  synced(input: ObjectInputKind): boolean {
    return this.lists.has(kindOfInput(input))
  }

  /** Readiness: the store open, and every watched kind listed without a failure since. */
  readonly gate: ReadinessGate = {
    name: 'objects',
    problem: () => {
      if (this.openProblem) return this.openProblem
      const reasons = this.opts.inputs.map(kindOfInput).flatMap((kind) => {
        const why = this.trouble.get(kind)
        if (why) return [`${KINDS[kind].plural}: ${why}; keeping the last full list`]
        return this.lists.has(kind) ? [] : [`${KINDS[kind].plural} not listed yet`]
      })
      return reasons.length ? reasons.join('; ') : undefined
    },
  }

  private async open(): Promise<void> {
    if (this.stopped) return
    let store: ObjectStore
    try {
      store = await openObjectStore(this.opts.datastore)
    } catch (e) {
      this.opts.onDatastoreError('open objects')
      this.openProblem = `cluster object store not open: ${errorText(e)}`
      this.opts.log.error({ err: errField(e), retryInMs: this.opts.retryMs }, 'open cluster object store failed; retrying')
      this.retryTimer = setTimeout(() => void this.open(), this.opts.retryMs)
      return
    }
    if (this.stopped) return void (await store.close())
    this.store = store
    this.openProblem = undefined
    for (const input of this.opts.inputs) {
      const kind = kindOfInput(input)
      this.stops.push(
        store.watch(
          kind,
          (objects) => {
            const first = !this.lists.has(kind)
            this.lists.set(kind, objects)
            if (this.trouble.delete(kind)) this.opts.log.info({ kind }, 'cluster objects readable again')
            if (first) this.opts.log.info({ kind, count: objects.length }, 'cluster objects listed')
            this.opts.onChange([input])
          },
          (e) => {
            this.opts.onDatastoreError(`watch ${KINDS[kind].plural}`)
            if (!this.trouble.has(kind)) this.opts.log.warn({ kind, err: errField(e) }, 'cluster object watch failed; keeping the last list (it keeps retrying)')
            this.trouble.set(kind, errorText(e))
          },
        ),
      )
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.retryTimer)
    for (const stop of this.stops.splice(0)) stop()
  }

  async close(): Promise<void> {
    await this.store?.close()
  }
}
