// `flatnetctl node …`: operations on the cluster's node records in the datastore.
// `node remove NAME` is how a node leaves for good: its record goes, its subnet is free again,
// and every other flatnetd drops its route on the next change event.
import type { Argv } from 'yargs'
import { daemonOptions } from '../conf/daemonConfig.js'
import { openDatastore, type DatastoreConfig, type NodeRecord } from '../daemon/datastore/index.js'

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
          console.log(`removed node ${name}${r ? ` (subnet ${r.subnet}, node IP ${r.nodeIP})` : ''} from the ${describeStore(cfg)}`)
        } else if (args['ignore-missing']) {
          console.log(`node ${name} is not in the ${describeStore(cfg)}; nothing to remove`)
        } else {
          throw new Error(`remove node ${name}: not found in the ${describeStore(cfg)}`)
        }
      },
    )
    .demandCommand(1, 'name a node command: remove')
}
