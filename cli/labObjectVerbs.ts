// `flatnetctl lab apply|delete|get`: kubectl's verbs on a running lab. Manifests are read and
// validated as `flatnetctl apply` reads them (daemon/objects/manifests.ts); a Pod is a real lab
// pod (lab/objects.ts: created on spec.nodeName or the least-loaded node, labels changed live on
// re-apply, removed on delete), Namespaces, NetworkPolicies and Services are stored — in the
// lab's datastore, file or etcd (reached through etcd's unix socket: lab/etcd.ts).
import type { Argv } from 'yargs'
import { KINDS, OBJECT_KINDS, keyOf, type ClusterObject, type ObjectKind } from '../daemon/objects/index.js'
import { readManifests } from '../daemon/objects/manifests.js'
import { DEFAULT_LAB_NAME, labLayout, readLabState } from '../lab/index.js'
import { openLabObjects } from '../lab/objectStore.js'
import { labApply, labDelete } from '../lab/objects.js'
import { getText, readSource, resourceName } from './objectCommands.js'

const say = (line: string) => process.stdout.write(line + '\n')

function manifestVerb(verb: 'apply' | 'delete') {
  return async (args: { name: string; filename: string }) => {
    const source = args.filename === '-' ? 'stdin' : args.filename
    const text = await readSource(args.filename)
    const manifests = readManifests(text, source)
    const state = await readLabState(labLayout(args.name ?? DEFAULT_LAB_NAME))
    const objects = manifests.map((m) => m.object)
    const outcomes = verb === 'apply' ? await labApply({ name: state.name }, objects) : await labDelete({ name: state.name }, objects.map(keyOf))
    for (const { key, action } of outcomes) say(`${resourceName({ kind: key.kind, metadata: { name: key.name } } as ClusterObject)} ${action}`)
    if (outcomes.some((o) => o.action === 'not found')) process.exitCode = 1
  }
}

export function labObjectVerbs<T extends { name: string }>(y: Argv<T>): Argv<T> {
  const filename = <U>(c: Argv<U>, verb: string) =>
    c.option('filename', { alias: 'f', type: 'string', demandOption: true, describe: `manifest to ${verb} (YAML or JSON, multi-document; - reads stdin)` })
  return y
    .command(
      'apply',
      "Create or update objects in the lab's datastore; a Pod becomes a real lab pod (labels update live)",
      (c) => filename(c, 'apply'),
      (args) => manifestVerb('apply')(args as unknown as { name: string; filename: string }),
    )
    .command(
      'delete',
      "Delete the objects a manifest names from the lab's datastore; a Pod's lab pod goes with it, a Namespace's pods too",
      (c) => filename(c, 'delete'),
      (args) => manifestVerb('delete')(args as unknown as { name: string; filename: string }),
    )
    .command(
      'get <kind> [objectName]',
      "List the lab's objects of a kind, or show one",
      (c) =>
        c
          .positional('kind', { type: 'string', demandOption: true, describe: `kind: ${OBJECT_KINDS.map((k: ObjectKind) => KINDS[k].plural).join(', ')} (or pod, ns, netpol, …)` })
          .positional('objectName', { type: 'string', describe: 'one object by name' })
          .option('namespace', { alias: 'n', type: 'string', describe: 'namespace (default: default)' })
          .option('all-namespaces', { alias: 'A', type: 'boolean', default: false, describe: 'every namespace' })
          .option('output', { alias: 'o', type: 'string', choices: ['json', 'yaml', 'name'], describe: 'print the objects themselves' }),
      async (args) => {
        const state = await readLabState(labLayout(args.name ?? DEFAULT_LAB_NAME))
        const store = await openLabObjects(state)
        try {
          process.stdout.write(await getText(store, { kind: String(args.kind), name: args.objectName, namespace: args.namespace, allNamespaces: args['all-namespaces'], output: args.output }))
        } finally {
          await store.close()
        }
      },
    )
}
