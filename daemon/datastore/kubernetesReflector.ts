// List, then watch from the list's resourceVersion, the way client-go's reflector does — for any
// collection of the API server (Nodes here; Pods, Namespaces, NetworkPolicies in daemon/objects).
// A stream resumes from the last resourceVersion seen — an event's or a BOOKMARK's — when the
// server ends it (timeoutSeconds) or the connection breaks; only when that version is too old for
// the server (`410 Gone`: its history was compacted) does it list again, which also catches
// objects deleted while no stream was open. Every request has the KubeApi's deadline; a stream is
// bounded by the timeoutSeconds it asks for plus a margin.
import { KubeApiError, type KubeApi, type WatchEvent } from './kubernetesApi.js'
import type { StatusJson } from './kubernetesNodes.js'
import type { StopWatch } from './types.js'

/** The part of an object a reflector reads. */
export interface ReflectedObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string }
}

export interface ReflectorOptions<T extends ReflectedObject> {
  api: KubeApi
  /** The collection, e.g. `/api/v1/nodes`, `/apis/networking.k8s.io/v1/networkpolicies`. */
  path: string
  /** Every object of a (re-)list, replacing whatever was known. */
  onList(items: T[]): void
  /** An object added or modified. */
  onUpsert(item: T): void
  /** An object deleted. */
  onDelete(item: T): void
  /** A failure (the reflector keeps retrying with backoff). */
  onError(err: unknown): void
}

const maxBackoffMs = 5000

/** Ask the server to end each stream after 5–10 minutes (spread, so a fleet of nodes does not reconnect at once). */
function streamSeconds(): number {
  return 300 + Math.floor(Math.random() * 300)
}

interface ListJson<T> {
  metadata: { resourceVersion?: string }
  items: T[]
}

export function reflect<T extends ReflectedObject>(opts: ReflectorOptions<T>): StopWatch {
  const { api } = opts
  let stopped = false
  /** Where the next stream starts; undefined: list first. */
  let resourceVersion: string | undefined
  let stream: { abort(): void } | undefined
  let retryTimer: NodeJS.Timeout | undefined
  let backoffMs = 0

  const report = (err: unknown) => {
    if (!stopped) opts.onError(err)
  }
  const retryLater = () => {
    backoffMs = Math.min(Math.max(100, backoffMs * 2), maxBackoffMs)
    retryTimer = setTimeout(() => void run(), backoffMs)
  }

  const run = async (): Promise<void> => {
    if (stopped) return
    if (resourceVersion === undefined) {
      try {
        const list = await api.request<ListJson<T>>('GET', opts.path)
        if (stopped) return
        resourceVersion = list.metadata.resourceVersion ?? ''
        opts.onList(list.items ?? [])
      } catch (err) {
        report(err)
        return retryLater()
      }
    }
    connect()
  }

  const connect = () => {
    const seconds = streamSeconds()
    const startedAt = Date.now()
    let delivered = false
    const finish = (outcome: 'ended' | 'gone' | Error) => {
      stream = undefined
      if (stopped) return
      if (outcome === 'gone' || (outcome instanceof KubeApiError && outcome.status === 410)) {
        // Our resourceVersion is older than the server's history: start over from a fresh list.
        resourceVersion = undefined
        backoffMs = 0
        return void run()
      }
      if (outcome instanceof Error) {
        report(outcome)
        return retryLater()
      }
      // A normal end (timeoutSeconds): resume at once — unless the server keeps ending streams
      // right away, which must not become a busy loop.
      if (!delivered && Date.now() - startedAt < 1000) return retryLater()
      backoffMs = 0
      void run()
    }
    const handle = api.watch(opts.path, { resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(seconds) }, seconds * 1000 + 2 * api.timeoutMs, {
      onEvent(event: WatchEvent) {
        if (event.type === 'ERROR') {
          const status = event.object as StatusJson
          handle.abort()
          return finish(status.code === 410 ? 'gone' : new Error(`watch error event: ${status.code ?? '?'} ${status.reason ?? ''}: ${status.message ?? JSON.stringify(status)}`))
        }
        const item = event.object as T
        const version = item.metadata?.resourceVersion
        if (typeof version === 'string' && version !== '') resourceVersion = version
        delivered = true
        backoffMs = 0
        if (event.type === 'BOOKMARK') return
        if (typeof item.metadata?.name !== 'string') return
        if (event.type === 'DELETED') opts.onDelete(item)
        else opts.onUpsert(item)
      },
      onEnd(err) {
        finish(err ?? 'ended')
      },
    })
    stream = handle
  }

  void run()
  return () => {
    if (stopped) return
    stopped = true
    stream?.abort()
    clearTimeout(retryTimer)
  }
}
