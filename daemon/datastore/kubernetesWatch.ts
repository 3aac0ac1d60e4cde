// The peer list from the API server: list Nodes, then watch them from the list's resourceVersion,
// the way client-go's reflector does. The stream resumes from the last resourceVersion seen — an
// event's or a BOOKMARK's — when the server ends it (timeoutSeconds) or the connection breaks; only
// when that version is too old for the server (`410 Gone`: its history was compacted) does it list
// again, which also catches Nodes deleted while no stream was open.
import { KubeApiError, type KubeApi, type WatchEvent } from './kubernetesApi.js'
import type { ListJson, NodeJson, NodeReading, StatusJson } from './kubernetesNodes.js'
import { sortByName } from './claimRules.js'
import type { NodeRecord, StopWatch } from './types.js'

export interface NodeWatchOptions {
  api: KubeApi
  /** What a Node means to flatnet (mode and family are the datastore's). */
  read(node: NodeJson): NodeReading
  onChange(nodes: NodeRecord[]): void
  onError(err: Error): void
  /** Maps a failure to the error reported (the datastore's DatastoreError with the operation named). */
  failure(err: unknown, operation: string): Error
  /** A corrupt flatnet claim on a Node, as an error. */
  corrupt(why: string, operation: string): Error
}

const maxBackoffMs = 5000

/** Ask the server to end each stream after 5–10 minutes (spread, so a fleet of nodes does not reconnect at once). */
function streamSeconds(): number {
  return 300 + Math.floor(Math.random() * 300)
}

export function watchNodes(opts: NodeWatchOptions): StopWatch {
  const { api } = opts
  const operation = `watch Nodes on ${api.server}`
  let stopped = false
  let records = new Map<string, NodeRecord>()
  /** Where the next stream starts; undefined: list first. */
  let resourceVersion: string | undefined
  let stream: { abort(): void } | undefined
  let retryTimer: NodeJS.Timeout | undefined
  let emitTimer: NodeJS.Timeout | undefined
  let emitted: string | undefined
  let backoffMs = 0

  const report = (err: unknown) => {
    if (!stopped) opts.onError(opts.failure(err, operation))
  }
  // Coalesce bursts (a re-list, many nodes joining) into one call; report only real changes (a
  // re-list that found nothing new calls nobody).
  const emitSoon = () => {
    if (emitTimer || stopped) return
    emitTimer = setTimeout(() => {
      emitTimer = undefined
      if (stopped) return
      const list = sortByName([...records.values()])
      const key = JSON.stringify(list)
      if (key === emitted) return
      emitted = key
      opts.onChange(list)
    }, 10)
  }
  /** Updates one Node's entry; true if the peer list changed (kubelet's status updates mostly do not change it). */
  const readInto = (map: Map<string, NodeRecord>, node: NodeJson): boolean => {
    const reading = opts.read(node)
    if (reading.kind === 'record') {
      const before = map.get(node.metadata.name)
      map.set(node.metadata.name, reading.record)
      return !before || (Object.keys(before) as Array<keyof NodeRecord>).some((k) => before[k] !== reading.record[k])
    }
    if (reading.kind === 'corrupt') report(opts.corrupt(reading.why, operation))
    return map.delete(node.metadata.name)
  }
  const retryLater = () => {
    backoffMs = Math.min(Math.max(100, backoffMs * 2), maxBackoffMs)
    retryTimer = setTimeout(() => void run(), backoffMs)
  }

  const run = async (): Promise<void> => {
    if (stopped) return
    if (resourceVersion === undefined) {
      try {
        const list = await api.request<ListJson<NodeJson>>('GET', '/api/v1/nodes')
        if (stopped) return
        const next = new Map<string, NodeRecord>()
        for (const node of list.items) readInto(next, node)
        records = next
        resourceVersion = list.metadata.resourceVersion ?? ''
        emitSoon()
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
    const handle = api.watch('/api/v1/nodes', { resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(seconds) }, seconds * 1000 + 2 * api.timeoutMs, {
      onEvent(event: WatchEvent) {
        if (event.type === 'ERROR') {
          const status = event.object as StatusJson
          handle.abort()
          return finish(status.code === 410 ? 'gone' : new Error(`watch error event: ${status.code ?? '?'} ${status.reason ?? ''}: ${status.message ?? JSON.stringify(status)}`))
        }
        const node = event.object as NodeJson
        const version = node.metadata?.resourceVersion
        if (typeof version === 'string' && version !== '') resourceVersion = version
        delivered = true
        backoffMs = 0
        if (event.type === 'BOOKMARK') return
        if (typeof node.metadata?.name !== 'string') return
        const changed = event.type === 'DELETED' ? records.delete(node.metadata.name) : readInto(records, node)
        if (changed) emitSoon()
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
    clearTimeout(emitTimer)
  }
}
