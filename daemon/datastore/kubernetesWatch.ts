// The peer list from the API server: list Nodes, then watch them (kubernetesReflector.ts: resume
// from the last resourceVersion, bookmarks, re-list on `410 Gone`), reduced to the node records
// flatnet routes to.
import type { KubeApi } from './kubernetesApi.js'
import type { NodeJson, NodeReading } from './kubernetesNodes.js'
import { reflect } from './kubernetesReflector.js'
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

export function watchNodes(opts: NodeWatchOptions): StopWatch {
  const { api } = opts
  const operation = `watch Nodes on ${api.server}`
  let stopped = false
  let records = new Map<string, NodeRecord>()
  let emitTimer: NodeJS.Timeout | undefined
  let emitted: string | undefined

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

  const stopReflector = reflect<NodeJson>({
    api,
    path: '/api/v1/nodes',
    onList(items) {
      const next = new Map<string, NodeRecord>()
      for (const node of items) readInto(next, node)
      records = next
      emitSoon()
    },
    onUpsert(node) {
      if (readInto(records, node)) emitSoon()
    },
    onDelete(node) {
      if (records.delete(node.metadata.name)) emitSoon()
    },
    onError: report,
  })
  return () => {
    if (stopped) return
    stopped = true
    stopReflector()
    clearTimeout(emitTimer)
  }
}
