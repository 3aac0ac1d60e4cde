// `flatnetctl apply|delete|get`: cluster objects (Namespaces, Pods, NetworkPolicies) in the file
// and etcd datastores, with kubectl's manifests and kubectl's words; and `flatnetctl lab
// apply|delete|get`, the same on a running lab's datastore. Manifests are validated and defaulted
// as the API server would (daemon/objects/manifests.ts, rules.ts) before anything is stored.
import { readFile } from 'node:fs/promises'
import type { Argv } from 'yargs'
import { stringify as toYaml } from 'yaml'
import type { DatastoreConfig } from '../daemon/datastore/types.js'
import {
  KINDS,
  OBJECT_KINDS,
  describeKey,
  isWritable,
  keyOf,
  kindByName,
  openObjectStore,
  withDefaults,
  DEFAULT_SERVICE_CIDRS,
  type ClusterObject,
  type ObjectKind,
  type ObjectStoreOptions,
  type WritableObjectStore,
} from '../daemon/objects/index.js'
import { readManifests, type ManifestObject } from '../daemon/objects/manifests.js'
import { datastoreConfigOf, withDatastoreFlags, type DatastoreFlags } from './nodeCommands.js'

const say = (line: string) => process.stdout.write(line + '\n')

/** kubectl's name of an object in its messages: `pod/a`, `networkpolicy.networking.k8s.io/deny`. */
export function resourceName(object: ClusterObject): string {
  const info = KINDS[object.kind as ObjectKind]
  const group = info.apiVersion.includes('/') ? `.${info.apiVersion.split('/')[0]}` : ''
  return `${info.kind.toLowerCase()}${group}/${object.metadata?.name}`
}

/** A manifest's text from a file, or from stdin for `-`. */
export async function readSource(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = []
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks).toString('utf8')
  }
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    throw new Error(`read manifest ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

async function withStore<T>(cfg: DatastoreConfig, fn: (store: WritableObjectStore) => Promise<T>, options: ObjectStoreOptions = {}): Promise<T> {
  const store = await openObjectStore(cfg, options)
  try {
    if (!isWritable(store)) throw new Error(`the ${cfg.kind} datastore's objects are the API server's: use kubectl`)
    return await fn(store)
  } finally {
    await store.close()
  }
}

/**
 * Applies every object in order, each in its own compare-and-swap, saying what happened to each as
 * kubectl does; an object refused does not stop the next. Returns how many failed.
 */
export async function applyObjects(store: WritableObjectStore, objects: ManifestObject[], out: (line: string) => void, err: (line: string) => void): Promise<number> {
  let failed = 0
  for (const { document, object } of objects) {
    try {
      const { action, object: stored } = await store.apply(object)
      out(`${resourceName(stored)} ${action}`)
    } catch (e) {
      failed++
      err(`document ${document}: ${(e as Error).message}`)
    }
  }
  return failed
}

/** Deletes every object named (in reverse order, so a Namespace goes after what is in it). Returns how many failed. */
export async function deleteObjects(store: WritableObjectStore, objects: ManifestObject[], ignoreNotFound: boolean, out: (line: string) => void, err: (line: string) => void): Promise<number> {
  let failed = 0
  for (const { object } of [...objects].reverse()) {
    const key = keyOf(withDefaults(object))
    try {
      const deleted = await store.delete(key)
      if (deleted) out(`${KINDS[key.kind].kind.toLowerCase()} ${JSON.stringify(key.name)} deleted${KINDS[key.kind].namespaced ? ` from ${key.namespace} namespace` : ''}`)
      else if (!ignoreNotFound) {
        failed++
        err(`Error from server (NotFound): ${KINDS[key.kind].plural} ${JSON.stringify(key.name)} not found${KINDS[key.kind].namespaced ? ` in namespace ${key.namespace}` : ''}`)
      }
    } catch (e) {
      failed++
      err(`delete ${describeKey(key)}: ${(e as Error).message}`)
    }
  }
  return failed
}

export interface GetRequest {
  kind: string
  name?: string
  namespace?: string
  allNamespaces: boolean
  output?: string
}

const age = (created: string | undefined, now: number): string => {
  if (!created) return '<unknown>'
  const s = Math.max(0, Math.floor((now - Date.parse(created)) / 1000))
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.floor(s / 60)}m` : s < 172800 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`
}

const labelText = (labels: Record<string, string> | undefined) =>
  Object.entries(labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',') || '<none>'

/** The columns of `get` per kind (kubectl's, with the labels policies select on). */
function row(kind: ObjectKind, o: ClusterObject, now: number): string[] {
  const m = o.metadata ?? {}
  if (kind === 'Namespace') return [m.name ?? '', (o as { status?: { phase?: string } }).status?.phase ?? 'Active', age(m.creationTimestamp, now), labelText(m.labels)]
  if (kind === 'Pod') {
    const pod = o as Extract<ClusterObject, { kind: 'Pod' }>
    const ips = pod.status?.podIPs?.map((p) => p.ip).join(',') || pod.status?.podIP || '<none>'
    return [m.name ?? '', pod.status?.phase ?? 'Pending', ips, pod.spec?.nodeName || '<none>', age(m.creationTimestamp, now), labelText(m.labels)]
  }
  if (kind === 'Service') {
    const svc = o as Extract<ClusterObject, { kind: 'Service' }>
    const s = svc.spec ?? {}
    const external = svc.status?.loadBalancer?.ingress?.map((i) => i.ip ?? i.hostname).join(',') || s.externalName || (s.type === 'LoadBalancer' ? '<pending>' : '<none>')
    const ports = (s.ports ?? []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',') || '<none>'
    // kubectl shows the primary cluster IP only (`-o yaml` has both of a dual-stack Service).
    return [m.name ?? '', s.type ?? 'ClusterIP', s.clusterIPs?.[0] || s.clusterIP || '<none>', external, ports, age(m.creationTimestamp, now)]
  }
  if (kind === 'EndpointSlice') {
    const es = o as Extract<ClusterObject, { kind: 'EndpointSlice' }>
    const ports = (es.ports ?? []).map((p) => String(p.port ?? '')).join(',') || '<unset>'
    const eps = es.endpoints.flatMap((e) => e.addresses).join(',') || '<unset>'
    return [m.name ?? '', es.addressType, ports, eps, age(m.creationTimestamp, now)]
  }
  const np = o as Extract<ClusterObject, { kind: 'NetworkPolicy' }>
  const sel = np.spec?.podSelector
  const selText =
    Object.keys(sel?.matchLabels ?? {}).length || sel?.matchExpressions?.length
      ? labelText(sel?.matchLabels) + (sel?.matchExpressions?.length ? ` +${sel.matchExpressions.length} expr` : '')
      : '<none>'
  return [m.name ?? '', selText, (np.spec?.policyTypes ?? []).join(','), age(m.creationTimestamp, now)]
}

const headers: Record<ObjectKind, string[]> = {
  Namespace: ['NAME', 'STATUS', 'AGE', 'LABELS'],
  Pod: ['NAME', 'STATUS', 'IP', 'NODE', 'AGE', 'LABELS'],
  NetworkPolicy: ['NAME', 'POD-SELECTOR', 'POLICY-TYPES', 'AGE'],
  Service: ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE'],
  EndpointSlice: ['NAME', 'ADDRESSTYPE', 'PORTS', 'ENDPOINTS', 'AGE'],
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('')).join('\n') + '\n'
}

/** `get`'s text: a table, JSON or YAML (one object when named, else a List); throws NotFound for a named object that is not there. */
export async function getText(store: WritableObjectStore, req: GetRequest): Promise<string> {
  const kind = kindByName(req.kind)
  if (!kind) throw new Error(`the server doesn't have a resource type ${JSON.stringify(req.kind)} (flatnet stores ${OBJECT_KINDS.map((k) => KINDS[k].plural).join(', ')})`)
  const info = KINDS[kind]
  const namespace = info.namespaced && !req.allNamespaces ? (req.namespace ?? 'default') : undefined
  let objects: ClusterObject[]
  if (req.name !== undefined) {
    const found = await store.get({ kind, namespace: namespace ?? '', name: req.name })
    if (!found) throw new Error(`Error from server (NotFound): ${info.plural} ${JSON.stringify(req.name)} not found${namespace ? ` in namespace ${namespace}` : ''}`)
    objects = [found]
  } else objects = await store.list(kind, namespace)
  const output = req.output ?? 'table'
  const doc = req.name !== undefined ? objects[0] : { apiVersion: 'v1', kind: 'List', items: objects, metadata: { resourceVersion: '' } }
  if (output === 'json') return JSON.stringify(doc, null, 2) + '\n'
  if (output === 'yaml') return toYaml(doc)
  if (output === 'name') return objects.map((o) => resourceName(o) + '\n').join('')
  if (objects.length === 0) return `No resources found${namespace ? ` in ${namespace} namespace` : ''}.\n`
  const now = Date.now()
  const withNs = info.namespaced && req.allNamespaces
  const rows = [withNs ? ['NAMESPACE', ...headers[kind]] : headers[kind], ...objects.map((o) => (withNs ? [o.metadata?.namespace ?? '', ...row(kind, o, now)] : row(kind, o, now)))]
  return table(rows)
}

interface ApplyArgs {
  filename: string
}

function withFilename<T>(y: Argv<T>, verb: string): Argv<T & ApplyArgs> {
  return y.option('filename', { alias: 'f', type: 'string', demandOption: true, describe: `manifest to ${verb} (YAML or JSON, multi-document; - reads stdin)` }) as Argv<T & ApplyArgs>
}

function withGetArgs<T>(y: Argv<T>) {
  return y
    .positional('kind', { type: 'string', demandOption: true, describe: `kind: ${OBJECT_KINDS.map((k) => KINDS[k].plural).join(', ')} (or pod, ns, netpol, …)` })
    .positional('objectName', { type: 'string', describe: 'one object by name' })
    .option('namespace', { alias: 'n', type: 'string', describe: 'namespace (default: default)' })
    .option('all-namespaces', { alias: 'A', type: 'boolean', default: false, describe: 'every namespace' })
    .option('output', { alias: 'o', type: 'string', choices: ['json', 'yaml', 'name'], describe: 'print the objects themselves' })
}

/** The three verbs on the store `cfgOf` names (top level: with the --datastore flags `flags` adds; lab: the lab's own). */
function objectVerbs<T, F>(y: Argv<T>, flags: <U>(c: Argv<U>) => Argv<U & F>, cfgOf: (args: T & F) => Promise<DatastoreConfig> | DatastoreConfig, prefix: string): Argv<T> {
  return y
    .command(
      'apply',
      'Create or update objects from a manifest (validated and defaulted as the API server would)',
      (c) =>
        withFilename(flags(c), 'apply').option('service-cidr', {
          type: 'string',
          default: process.env.FLATNET_SERVICE_CIDR || DEFAULT_SERVICE_CIDRS.join(','),
          describe:
            'ranges Service cluster IPs are allocated from, primary first, one per family (10.96.0.0/16,fd00:10:96::/112); every writer of a datastore must give the same (env FLATNET_SERVICE_CIDR)',
        }),
      async (args) => {
        const objects = readManifests(await readSource(args.filename), args.filename === '-' ? 'stdin' : args.filename)
        const serviceCIDRs = args['service-cidr']
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
        const failed = await withStore(await cfgOf(args as unknown as T & F), (store) => applyObjects(store, objects, say, (l) => process.stderr.write(`${prefix}${l}\n`)), { serviceCIDRs })
        if (failed) process.exitCode = 1
      },
    )
    .command(
      'delete',
      'Delete the objects a manifest names (a Namespace takes everything in it along)',
      (c) => withFilename(flags(c), 'delete').option('ignore-not-found', { type: 'boolean', default: false, describe: 'succeed for objects that are not there' }),
      async (args) => {
        const objects = readManifests(await readSource(args.filename), args.filename === '-' ? 'stdin' : args.filename)
        const failed = await withStore(await cfgOf(args as unknown as T & F), (store) => deleteObjects(store, objects, args['ignore-not-found'], say, (l) => process.stderr.write(`${prefix}${l}\n`)))
        if (failed) process.exitCode = 1
      },
    )
    .command(
      'get <kind> [objectName]',
      'List objects of a kind, or show one',
      (c) => withGetArgs(flags(c)),
      async (args) => {
        const text = await withStore(await cfgOf(args as unknown as T & F), (store) =>
          getText(store, { kind: String(args.kind), name: args.objectName, namespace: args.namespace, allNamespaces: args['all-namespaces'], output: args.output }),
        )
        process.stdout.write(text)
      },
    )
}

/** `flatnetctl apply|delete|get` with the --datastore flags of `flatnetctl node`. */
export function objectCommands<T>(y: Argv<T>): Argv<T> {
  return objectVerbs<T, DatastoreFlags>(y, withDatastoreFlags, (args) => datastoreConfigOf(args), 'flatnetctl: ')
}
