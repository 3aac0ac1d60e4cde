// The on-disk format of the file datastore: one JSON document, one node per line so an operator
// can read and diff it. `generation` counts committed writes; the lock protocol (fileLock.ts)
// hands out the right to turn generation N into N+1 to one process at a time.
import { parseAddress, parseCidr } from '../../ipam/index.js'
import { readRecordBackend, readRecordFamilies } from './claimRules.js'
import { DatastoreError, type NodeRecord } from './types.js'

export const stateKind = 'flatnet/node-subnets'
/**
 * Version 1: single-family records. Version 2 adds per-family `subnets`/`nodeIPs`; it is written
 * only when some record has them, so a flatnet of the previous version (which reads version 1
 * only) refuses a dual-stack file instead of rewriting it without the other family's subnets.
 * Version 3 adds `backend`/`vtepMac` (the VXLAN backend); written only when some record has them,
 * for the same reason: a version-2 reader would rewrite the file without every peer's VTEP MAC,
 * and those peers would lose their VXLAN entries everywhere until they claimed again.
 */
export const stateFormatVersion = 3
const readableVersions = [1, 2, 3]

/** A node as stored: the record plus when its claim runs out (null: never). */
export interface StoredNode extends NodeRecord {
  expiresAt: string | null
}

export interface NodeState {
  generation: number
  nodes: StoredNode[]
}

export const emptyState: NodeState = { generation: 0, nodes: [] }

export function isLive(node: StoredNode, now: number): boolean {
  return node.expiresAt === null || Date.parse(node.expiresAt) > now
}

export function toRecord(node: StoredNode): NodeRecord {
  const record: NodeRecord = { name: node.name, nodeIP: node.nodeIP, subnet: node.subnet, owner: node.owner, updatedAt: node.updatedAt }
  if (node.subnets) record.subnets = [...node.subnets]
  if (node.nodeIPs) record.nodeIPs = [...node.nodeIPs]
  if (node.backend) record.backend = node.backend
  if (node.vtepMac) record.vtepMac = node.vtepMac
  return record
}

export function serializeState(state: NodeState): string {
  const nodes = [...state.nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const lines = nodes.map((n) => '    ' + JSON.stringify(n))
  const body = lines.length ? `[\n${lines.join(',\n')}\n  ]` : '[]'
  const version = nodes.some((n) => n.backend || n.vtepMac) ? 3 : nodes.some((n) => n.subnets || n.nodeIPs) ? 2 : 1
  return `{\n  "kind": ${JSON.stringify(stateKind)},\n  "formatVersion": ${version},\n  "generation": ${state.generation},\n  "nodes": ${body}\n}\n`
}

function corrupt(path: string, detail: string): DatastoreError {
  return new DatastoreError('corrupt', `read node state ${path}: not a valid flatnet node state file (${detail}); it is left untouched — repair it or move it away to start afresh`)
}

const isText = (v: unknown): v is string => typeof v === 'string' && v !== ''

/** Parses and checks the whole document; anything unexpected is 'corrupt', never guessed at. */
export function parseState(path: string, text: string): NodeState {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw corrupt(path, `invalid JSON: ${(err as Error).message}`)
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw corrupt(path, 'not a JSON object')
  const d = doc as Record<string, unknown>
  if (d.kind !== stateKind) throw corrupt(path, `"kind" is ${JSON.stringify(d.kind)}, expected ${JSON.stringify(stateKind)}`)
  if (!readableVersions.includes(d.formatVersion as number)) {
    throw corrupt(path, `"formatVersion" is ${JSON.stringify(d.formatVersion)}; this flatnet reads versions ${readableVersions.join(' and ')}`)
  }
  if (!Number.isSafeInteger(d.generation) || (d.generation as number) < 0) throw corrupt(path, `"generation" is ${JSON.stringify(d.generation)}`)
  if (!Array.isArray(d.nodes)) throw corrupt(path, '"nodes" is not an array')
  const names = new Set<string>()
  const subnets = new Set<string>()
  const nodes: StoredNode[] = d.nodes.map((raw: unknown, i: number) => {
    if (typeof raw !== 'object' || raw === null) throw corrupt(path, `nodes[${i}] is not an object`)
    const n = raw as Record<string, unknown>
    for (const field of ['name', 'nodeIP', 'subnet', 'owner', 'updatedAt'] as const) {
      if (!isText(n[field])) throw corrupt(path, `nodes[${i}].${field} is ${JSON.stringify(n[field])}`)
    }
    const node = n as unknown as StoredNode
    if (n.expiresAt !== null && !(isText(n.expiresAt) && !Number.isNaN(Date.parse(n.expiresAt)))) {
      throw corrupt(path, `nodes[${i}].expiresAt is ${JSON.stringify(n.expiresAt)}`)
    }
    let families
    let backend
    try {
      parseAddress(node.nodeIP)
      if (parseCidr(node.subnet).text !== node.subnet) throw new Error(`subnet ${node.subnet} is not in canonical form`)
      families = readRecordFamilies(n)
      backend = readRecordBackend(n)
    } catch (err) {
      throw corrupt(path, `nodes[${i}] (${node.name}): ${(err as Error).message}`)
    }
    if (names.has(node.name)) throw corrupt(path, `node ${node.name} appears twice`)
    for (const subnet of families.subnets ?? [node.subnet]) {
      if (subnets.has(subnet)) throw corrupt(path, `subnet ${subnet} is held twice`)
      subnets.add(subnet)
    }
    names.add(node.name)
    return { name: node.name, nodeIP: node.nodeIP, subnet: node.subnet, ...families, ...backend, owner: node.owner, updatedAt: node.updatedAt, expiresAt: node.expiresAt }
  })
  return { generation: d.generation as number, nodes }
}
