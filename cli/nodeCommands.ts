// `flatnetctl node …`: operations on the cluster's node records in the datastore.
// `node remove NAME` is how a node leaves for good: its record goes, its subnet is free again,
// and every other flatnetd drops its route on the next change event.
import type { Argv } from 'yargs'
import { daemonOptions } from '../conf/daemonConfig.js'
import { nodeFamilies, openDatastore, type DatastoreConfig, type NodeFamily, type NodeRecord } from '../daemon/datastore/index.js'

async function listNodes(cfg: DatastoreConfig): Promise<NodeRecord[]> {
  const store = await openDatastore(cfg)
  try {
    return await store.list()
  } finally {
    await store.close()
  }
}

export interface DatastoreFlags {
  datastore: string
  'datastore-file': string
  'etcd-endpoints'?: string
}

/** The same flags, names and defaults as flatnetd's, so one copy-paste reaches the same store. */
export function withDatastoreFlags<T>(y: Argv<T>): Argv<T & DatastoreFlags> {
  return y
    .option('datastore', { type: 'string', choices: ['file', 'etcd'], default: String(daemonOptions.datastore.default), describe: daemonOptions.datastore.describe })
    .option('datastore-file', { type: 'string', default: String(daemonOptions['datastore-file'].default), describe: daemonOptions['datastore-file'].describe })
    .option('etcd-endpoints', { type: 'string', describe: daemonOptions['etcd-endpoints'].describe }) as Argv<T & DatastoreFlags>
}

export function datastoreConfigOf(flags: DatastoreFlags): DatastoreConfig {
  if (flags.datastore === 'etcd') {
    const endpoints = (flags['etcd-endpoints'] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    if (endpoints.length === 0) throw new Error('--etcd-endpoints is required with --datastore etcd (e.g. http://127.0.0.1:2379)')
    return { kind: 'etcd', endpoints }
  }
  return { kind: 'file', path: flags['datastore-file'] }
}

function describeStore(cfg: DatastoreConfig): string {
  if (cfg.kind === 'file') return `file datastore ${cfg.path}`
  if (cfg.kind === 'etcd') return `etcd datastore ${cfg.endpoints.join(',')}`
  return `kubernetes datastore ${cfg.kubeconfig ?? '(in-cluster)'}`
}

/** One row per node: its subnet and address of each family, side by side (a family without an address shows `-`). */
export function formatNodeTable(nodes: readonly NodeRecord[]): string {
  const rows = [['NAME', 'FAMILY', 'SUBNET', 'NODE IP', 'OWNER', 'UPDATED']]
  for (const n of nodes) {
    for (const [i, f] of nodeFamilies(n).entries())
      rows.push([i === 0 ? n.name : '', `IPv${f.family}`, f.subnet, f.nodeIP ?? '- (none: peers get no route of this family)', i === 0 ? n.owner : '', i === 0 ? n.updatedAt : ''])
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)))
  return rows
    .map((r) =>
      r
        .map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

/** A node as `node show` prints it: the record, and its families as nodeFamilies() reads them. */
export function nodeDetail(n: NodeRecord): NodeRecord & { families: NodeFamily[] } {
  return { ...n, families: nodeFamilies(n) }
}

export type RemoveOutcome = { removed: true; record: NodeRecord | undefined } | { removed: false }

/** Deletes node `name` from the datastore and frees its subnet. The code behind `flatnetctl node remove`. */
export async function removeNode(cfg: DatastoreConfig, name: string): Promise<RemoveOutcome> {
  const store = await openDatastore(cfg)
  try {
    const record = (await store.list()).find((n) => n.name === name)
    const removed = await store.remove(name)
    return removed ? { removed: true, record } : { removed: false }
  } finally {
    await store.close()
  }
}

export function nodeCommands(y: Argv): Argv {
  return y
    .command(
      'list',
      'List the nodes of the datastore: per node, its subnet and node address of each IP family',
      (c) => withDatastoreFlags(c).option('json', { type: 'boolean', default: false, describe: 'print the records as JSON (with their families)' }),
      async (args) => {
        const nodes = await listNodes(datastoreConfigOf(args))
        console.log(args.json ? JSON.stringify(nodes.map(nodeDetail), null, 2) : formatNodeTable(nodes))
      },
    )
    .command(
      'show <name>',
      'Show one node of the datastore as JSON: its record and its subnet and address of each IP family',
      (c) => withDatastoreFlags(c).positional('name', { type: 'string', demandOption: true, describe: 'node name, as flatnetd registered it' }),
      async (args) => {
        const cfg = datastoreConfigOf(args)
        const node = (await listNodes(cfg)).find((n) => n.name === String(args.name))
        if (!node) throw new Error(`show node ${String(args.name)}: not found in the ${describeStore(cfg)}`)
        console.log(JSON.stringify(nodeDetail(node), null, 2))
      },
    )
    .command(
      'remove <name>',
      'Remove a node from the cluster: delete its record, free its subnet; peers drop their route to it',
      (c) =>
        withDatastoreFlags(c)
          .positional('name', { type: 'string', demandOption: true, describe: 'node name, as flatnetd registered it' })
          .option('ignore-missing', { type: 'boolean', default: false, describe: 'succeed when the node is not in the datastore' }),
      async (args) => {
        const cfg = datastoreConfigOf(args)
        const name = String(args.name)
        const outcome = await removeNode(cfg, name)
        if (outcome.removed) {
          const r = outcome.record
          const subnets = r ? nodeFamilies(r).map((f) => f.subnet) : []
          console.log(`removed node ${name}${r ? ` (subnet ${subnets.join(',')}, node IP ${(r.nodeIPs ?? [r.nodeIP]).join(',')})` : ''} from the ${describeStore(cfg)}`)
        } else if (args['ignore-missing']) {
          console.log(`node ${name} is not in the ${describeStore(cfg)}; nothing to remove`)
        } else {
          throw new Error(`remove node ${name}: not found in the ${describeStore(cfg)}`)
        }
      },
    )
    .demandCommand(1, 'name a node command: list, show, remove')
}
