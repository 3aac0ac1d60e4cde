// `flatnetctl lab …`: a multi-node flatnet cluster on this machine, out of network namespaces.
import type { Argv } from 'yargs'
import {
  BACKENDS,
  DEFAULT_SEGMENTS,
  DEFAULT_TOPOLOGY,
  MAX_SEGMENTS,
  TOPOLOGIES,
  type LabBackend,
  type LabTopology,
  DEFAULT_IP_FAMILY,
  DEFAULT_LAB_NAME,
  IP_FAMILIES,
  labCheck,
  labDown,
  labDownAll,
  labNodeAdd,
  labNodeDel,
  labNodeStart,
  labNodeStop,
  labPodAdd,
  labPodDel,
  labStatus,
  labUp,
  renderCheck,
  renderStatus,
  subnetsText,
  type LabIpFamily,
  type LabRef,
} from '../lab/index.js'
import { parseLabels, parsePort, podRef } from '../lab/podSpec.js'
import { labObjectVerbs } from './labObjectVerbs.js'

function withLabName<T>(y: Argv<T>): Argv<T & { name: string }> {
  return y.option('name', {
    type: 'string',
    default: process.env.FLATNET_LAB ?? DEFAULT_LAB_NAME,
    describe: 'lab name (lower-case letters and digits): namespaces are fnlab-<name>-*, files /run/flatnet-lab/<name> [env FLATNET_LAB]',
  }) as Argv<T & { name: string }>
}

function withJson<T>(y: Argv<T>): Argv<T & { json: boolean }> {
  return y.option('json', { type: 'boolean', default: false, describe: 'print JSON for scripts' }) as Argv<T & { json: boolean }>
}

const ref = (args: { name: string }): LabRef => ({ name: args.name })
const say = (line: string) => process.stdout.write(line + '\n')
const json = (doc: unknown) => process.stdout.write(JSON.stringify(doc, null, 2) + '\n')

function nodeCommands(y: Argv<{ name: string }>): Argv<{ name: string }> {
  return y
    .command(
      'add',
      'Add a node: namespace on the node network, its own flatnetd, optionally pods',
      (c) => c.option('pods', { type: 'number', default: 0, describe: 'pods to start on it' }),
      async (args) => {
        const { node, pods } = await labNodeAdd({ ...ref(args), pods: args.pods, progress: say })
        say(`added ${node.name} (${node.addresses.join(', ')}, ${subnetsText(node)})${pods.length ? ` with ${pods.map((p) => p.name).join(', ')}` : ''}`)
      },
    )
    .command(
      'del <node>',
      'Remove a node: DEL its pods through the plugin, stop its flatnetd, remove it from the datastore, delete its namespace',
      (c) => c.positional('node', { type: 'string', demandOption: true }),
      async (args) => {
        const report = await labNodeDel({ ...ref(args), node: String(args.node) })
        for (const w of report.warnings) process.stderr.write(`warning: ${w}\n`)
        say(`deleted ${report.node}${report.podsDeleted.length ? ` and its pods ${report.podsDeleted.join(', ')}` : ''}; ${report.datastore}`)
      },
    )
    .command(
      'stop <node>',
      "Stop a node's flatnetd (routes and pods stay, as in a daemon upgrade)",
      (c) => c.positional('node', { type: 'string', demandOption: true }).option('kill', { type: 'boolean', default: false, describe: 'SIGKILL instead of SIGTERM: play a crash' }),
      async (args) => {
        const outcome = await labNodeStop({ ...ref(args), node: String(args.node), kill: args.kill })
        say(`flatnetd of ${args.node}: ${outcome}`)
      },
    )
    .command(
      'start <node>',
      "Start a node's flatnetd again and wait until it is ready",
      (c) => c.positional('node', { type: 'string', demandOption: true }),
      async (args) => {
        const node = await labNodeStart({ ...ref(args), node: String(args.node) })
        say(`flatnetd of ${node.name} ready (pid ${node.daemonPid}), ${subnetsText(node)}`)
      },
    )
    .demandCommand(1, 'name a lab node command: add, del, stop, start')
}

function podCommands(y: Argv<{ name: string }>): Argv<{ name: string }> {
  return y
    .command(
      'add <node>',
      "Add a pod on a node: a namespace attached by the node's conflist, as a runtime does, with a responder on each port",
      (c) =>
        c
          .positional('node', { type: 'string', demandOption: true })
          .option('pod-name', { type: 'string', describe: "the pod's name (default: the node's next podNx)" })
          .option('namespace', { alias: 'n', type: 'string', describe: 'its Kubernetes namespace (default: default)' })
          .option('label', { alias: 'l', type: 'string', array: true, default: [] as string[], describe: 'a label k=v (repeatable)' })
          .option('port', { alias: 'p', type: 'string', array: true, default: [] as string[], describe: 'a containerPort [name:]N[/TCP|UDP|SCTP] (repeatable; TCP by default)' }),
      async (args) => {
        const pod = await labPodAdd({
          ...ref(args),
          node: String(args.node),
          podName: args['pod-name'],
          namespace: args.namespace,
          labels: parseLabels(args.label.map(String)),
          ports: args.port.map((p) => parsePort(String(p))),
        })
        say(`added ${podRef(pod)} on ${pod.node}: ${pod.addresses.join(', ')} (network namespace ${pod.netns})`)
      },
    )
    .command(
      'del <pod>',
      'Delete a pod ([namespace/]name): DEL through the plugin chain, then its namespace',
      (c) => c.positional('pod', { type: 'string', demandOption: true }),
      async (args) => {
        const pod = await labPodDel({ ...ref(args), pod: String(args.pod) })
        say(`deleted ${podRef(pod)} (${pod.addresses.join(', ')} on ${pod.node})`)
      },
    )
    .demandCommand(1, 'name a lab pod command: add, del')
}

export function labCommands(y: Argv): Argv {
  return labObjectVerbs(withLabName(y))
    .command(
      'up',
      'Build the cluster: node network, N nodes each running flatnetd, M pods per node',
      (c) =>
        c
          .option('nodes', { type: 'number', default: 3, describe: 'number of nodes' })
          .option('pods-per-node', { type: 'number', default: 2, describe: 'pods started on each node' })
          .option('datastore', { type: 'string', choices: ['file', 'etcd'], default: 'file', describe: 'file: one shared file; etcd: a real etcd the lab starts' })
          .option('ip-family', {
            type: 'string',
            choices: [...IP_FAMILIES],
            default: DEFAULT_IP_FAMILY,
            describe: "families of the node network, nodes and pods (kind's networking.ipFamily); dual is IPv4-primary",
          })
          .option('topology', {
            type: 'string',
            choices: [...TOPOLOGIES],
            default: DEFAULT_TOPOLOGY,
            describe: 'flat: one L2 segment; routed: nodes round-robin over --segments L2 segments joined by a router that routes only node addresses',
          })
          .option('segments', { type: 'number', describe: `L2 segments of a routed lab (default ${DEFAULT_SEGMENTS}, at most ${MAX_SEGMENTS})` })
          .option('backend', { type: 'string', choices: [...BACKENDS], describe: "every flatnetd's --backend (default: not passed, the daemon's own default: auto)" })
          .option('cluster-cidr', {
            type: 'string',
            describe: 'the cluster ranges node subnets come from, one per family, comma separated (default: 10.244.0.0/16 and/or fd00:10:244::/56)',
          })
          .option('services', {
            type: 'boolean',
            default: true,
            describe: 'cluster DNS (kube-dns 10.96.0.10), LoadBalancer addresses and the demo Services demo/demo-nodeport (file datastore); --no-services for a bare lab',
          })
          .option('log-level', { type: 'string', default: 'info', describe: "flatnetd's --log-level" })
          .option('keep-on-failure', { type: 'boolean', default: false, describe: 'keep a half-built lab for inspection when up fails' }),
      async (args) => {
        const started = Date.now()
        await labUp({
          ...ref(args),
          nodes: args.nodes,
          podsPerNode: args['pods-per-node'],
          datastore: args.datastore as 'file' | 'etcd',
          ipFamily: args['ip-family'] as LabIpFamily,
          topology: args.topology as LabTopology,
          segments: args.segments,
          backend: args.backend as LabBackend | undefined,
          clusterCidrs: args['cluster-cidr']?.split(',').map((c) => c.trim()),
          daemonLogLevel: args['log-level'],
          services: args.services,
          keepOnFailure: args['keep-on-failure'],
          progress: say,
        })
        say(`lab ${args.name} is up in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
        process.stdout.write(renderStatus(await labStatus(ref(args))))
      },
    )
    .command(
      'down',
      'Remove the lab: processes, namespaces, files, etcd (also after a crash, without its state file)',
      (c) => c.option('all', { type: 'boolean', default: false, describe: 'remove every lab on this machine (all fnlab-* namespaces)' }),
      async (args) => {
        const reports = args.all ? await labDownAll() : [await labDown(ref(args))]
        if (reports.length === 0) say('no lab found')
        for (const r of reports) {
          say(r.namespaces.length || r.removedDir ? `lab ${r.name} removed (${r.namespaces.length} namespaces)` : `lab ${r.name}: nothing to remove`)
        }
      },
    )
    .command(
      'status',
      'Show nodes (namespace, address, subnet, flatnetd) and pods (namespace, node, address)',
      (c) => withJson(c),
      async (args) => {
        const status = await labStatus(ref(args))
        if (args.json) json(status)
        else process.stdout.write(renderStatus(status))
      },
    )
    .command(
      'check',
      'Prove the Kubernetes network model on the lab with real traffic; exit 1 if any requirement fails',
      (c) => withJson(c),
      async (args) => {
        const report = await labCheck(ref(args))
        if (args.json) json(report)
        else process.stdout.write(renderCheck(report))
        if (!report.ok) process.exitCode = 1
      },
    )
    .command(
      'cluster-addons',
      false, // the process of the lab's kube-system/coredns pod, started by `lab up` (lab/addons.ts)
      (c) =>
        c
          .option('datastore', { type: 'string', demandOption: true, describe: "the lab's file datastore (nodes.json)" })
          .option('families', { type: 'string', default: '4', describe: 'the lab families, e.g. 4,6' })
          .option('service-cidr', { type: 'string', default: '10.96.0.0/16', describe: "the lab's Service ranges, comma separated" })
          .option('dns-port', { type: 'number', default: 53 }),
      async (args) => {
        const { runClusterAddons } = await import('../lab/addons.js')
        const families = args.families.split(',').map((f) => (f.trim() === '6' ? 6 : 4) as 4 | 6)
        const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`)
        const addons = await runClusterAddons({ datastore: args.datastore, families, serviceCidrs: args['service-cidr'].split(','), dnsPort: args['dns-port'], log })
        // The same hello line as a pod's responder: the lab waits for it (responder.ts startPodProcess).
        say(JSON.stringify({ ready: true, pid: process.pid }))
        process.on('SIGTERM', () => void addons.stop().then(() => process.exit(0)))
        await new Promise(() => {}) // serves until the pod's namespace is deleted
      },
    )
    .command('node', 'Add, delete, stop or start a node of the lab', (c) => nodeCommands(c as Argv<{ name: string }>))
    .command('pod', 'Add or delete a pod of the lab', (c) => podCommands(c as Argv<{ name: string }>))
    .demandCommand(1, 'name a lab command: up, down, status, check, node, pod, apply, delete, get')
}
