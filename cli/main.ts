// flatnetctl: the operator's command line. `lab …` builds and checks a multi-node cluster on one
// machine; `node remove` takes a node out of the cluster's datastore; `ipam list|gc` shows and
// repairs this node's pod address store; `apply|delete|get` hold cluster objects (Namespaces, Pods,
// NetworkPolicies) in the file and etcd datastores, as kubectl does on Kubernetes.
import yargs from 'yargs'
import { ipamCommands } from './ipamCommands.js'
import { labCommands } from './labCommands.js'
import { nodeCommands } from './nodeCommands.js'
import { objectCommands } from './objectCommands.js'

async function main(): Promise<void> {
  await objectCommands(yargs(process.argv.slice(2)))
    .scriptName('flatnetctl')
    .version(false)
    .usage('flatnetctl: operate flatnet (lab clusters on this machine, cluster nodes)')
    .command('lab', 'A multi-node flatnet cluster on this machine, out of network namespaces', (y) => labCommands(y))
    .command('node', 'Nodes of the cluster in the datastore', (y) => nodeCommands(y))
    .command('ipam', "This node's pod address store: list reservations, reclaim what dead pods left", (y) => ipamCommands(y))
    .demandCommand(1, 'name a command: lab, node, ipam, apply, delete, get')
    .strict()
    .wrap(Math.min(120, process.stdout.columns || 100))
    .fail((msg, err) => {
      if (err) throw err
      process.stderr.write(`flatnetctl: ${msg}\n(see flatnetctl --help)\n`)
      process.exit(2)
    })
    .parseAsync()
}

main().catch((err: unknown) => {
  process.stderr.write(`flatnetctl: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
