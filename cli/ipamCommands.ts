// `flatnetctl ipam …`: the node's pod address store, for an operator.
//   list  — the reservations of one network, and whether each one's host veth still exists;
//   gc    — takes back what the runtime will never DEL: reservations whose host veth is gone
//           (the pod's namespace died with a reboot or a crashed runtime) and host veths of the
//           network that no reservation claims. The same code the plugin's GC uses
//           (plugin/reclaim.ts), deciding by the host's state instead of a runtime's list.
// Acts on the network namespace it runs in: run it on the node (as root).
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Argv } from 'yargs'
import { CONFLIST_FILE_NAME } from '../conf/conflist.js'
import { DEFAULT_DATA_DIR } from '../conf/netconf.js'
import { PodAddressStore, parseCidr, podRange, type IpamError, type Reservation } from '../ipam/index.js'
import { closeRtnl, listLinks, openRtnl } from '../net/rtnl.js'
import { findDetached, reclaimDetached, type DetachedPlan } from '../plugin/reclaim.js'
import { hostVethName } from '../plugin/wiring.js'

export const DEFAULT_CONFLIST = join('/etc/cni/net.d', CONFLIST_FILE_NAME)
/** A reservation younger than this may belong to an ADD between its reservation and its veth. */
export const DEFAULT_MIN_AGE_SECONDS = 60

export interface StoreTarget {
  dataDir: string
  network: string
}

interface TargetFlags {
  conf?: string
  'data-dir'?: string
  network?: string
}

/**
 * Which store: --data-dir and --network, or what the conflist's flatnet plugin says (its
 * `dataDir`, the list's `name`). An explicit --conf must exist; the default one may be absent.
 */
export function resolveTarget(flags: TargetFlags): StoreTarget {
  const confPath = flags.conf ?? DEFAULT_CONFLIST
  let fromConf: Partial<StoreTarget> = {}
  if (flags.conf !== undefined || existsSync(confPath)) {
    let doc: unknown
    try {
      doc = JSON.parse(readFileSync(confPath, 'utf8'))
    } catch (e) {
      throw new Error(`read network configuration ${confPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
    fromConf = flatnetTargetOf(doc, confPath)
  }
  const dataDir = flags['data-dir'] ?? fromConf.dataDir ?? DEFAULT_DATA_DIR
  const network = flags.network ?? fromConf.network
  if (!network) throw new Error(`name the network: --network NAME, or --conf with a flatnet network configuration (${confPath} does not exist)`)
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(network)) throw new Error(`--network ${JSON.stringify(network)} is not a network name (letters, digits, "_", ".", "-")`)
  if (!dataDir.startsWith('/')) throw new Error(`--data-dir ${JSON.stringify(dataDir)} must be an absolute path`)
  return { dataDir, network }
}

/** The flatnet plugin of a conflist (or a single plugin config): its network name and data dir. */
function flatnetTargetOf(doc: unknown, path: string): Partial<StoreTarget> {
  const o = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>
  const plugins = Array.isArray(o.plugins) ? (o.plugins as unknown[]) : [o]
  const flatnet = plugins.find((p) => typeof p === 'object' && p !== null && (p as Record<string, unknown>).type === 'flatnet') as Record<string, unknown> | undefined
  if (!flatnet) throw new Error(`${path} has no plugin of type "flatnet"`)
  return {
    network: typeof o.name === 'string' ? o.name : undefined,
    dataDir: typeof flatnet.dataDir === 'string' ? flatnet.dataDir : undefined,
  }
}

/**
 * The store for maintenance. It never reserves, so it does not need this node's ranges: "every
 * IPv4 and every IPv6 address" lists and releases every record, whatever range it came from.
 */
export function openMaintenanceStore(t: StoreTarget, problems: IpamError[]): PodAddressStore {
  const everything = [podRange(parseCidr('0.0.0.0/0')), podRange(parseCidr('::/0'))]
  return new PodAddressStore(join(t.dataDir, t.network), everything, { onProblem: (p) => problems.push(p) })
}

export interface ListedReservation extends Reservation {
  hostVethPresent: boolean
}

export async function listReservations(t: StoreTarget): Promise<{ reservations: ListedReservation[]; problems: string[] }> {
  const problems: IpamError[] = []
  const reservations = await openMaintenanceStore(t, problems).list()
  const host = openRtnl()
  let present: Set<string>
  try {
    present = new Set((await listLinks(host)).map((l) => l.name))
  } finally {
    closeRtnl(host)
  }
  return {
    reservations: reservations.map((r) => ({ ...r, hostVethPresent: present.has(hostVethName(r.containerId, r.ifname)) })),
    problems: problems.map((p) => p.message),
  }
}

export interface GcOutcome {
  plan: DetachedPlan
  released: Reservation[]
  removedHostVeths: string[]
  sweptTempFiles: string[]
  errors: string[]
}

export async function ipamGc(t: StoreTarget, options: { dryRun: boolean; minAgeSeconds: number }): Promise<GcOutcome> {
  const problems: IpamError[] = []
  const store = openMaintenanceStore(t, problems)
  const host = openRtnl()
  try {
    const plan = await findDetached(store, host, t.network, Date.now(), options.minAgeSeconds * 1000)
    // A corrupt record is kept: nobody can tell whether a live pod still uses its address.
    const errors = problems.map((p) => `${p.message}; kept, remove it by hand once no pod uses that address`)
    if (options.dryRun) return { plan, released: [], removedHostVeths: [], sweptTempFiles: [], errors }
    // Temp files first: a release would sweep them silently, and the operator should see them.
    let sweptTempFiles: string[] = []
    try {
      sweptTempFiles = await store.sweepTemp()
    } catch (e) {
      errors.push((e as Error).message)
    }
    const report = await reclaimDetached(store, host, plan)
    return { plan, released: report.released, removedHostVeths: report.removedHostVeths, sweptTempFiles, errors: [...errors, ...report.errors] }
  } finally {
    closeRtnl(host)
  }
}

const say = (line: string) => process.stdout.write(line + '\n')

function podOf(r: Reservation): string {
  return r.podNamespace || r.podName ? `${r.podNamespace ?? ''}/${r.podName ?? ''}` : '-'
}

function describeReservation(r: Reservation): string {
  return `${r.address} (container ${r.containerId}, ${r.ifname}${r.podName ? `, pod ${podOf(r)}` : ''}, since ${r.createdAt})`
}

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  '))
}

function withTarget<T>(y: Argv<T>): Argv<T & TargetFlags> {
  return y
    .option('conf', { type: 'string', describe: `network configuration to read the network name and data dir from [default: ${DEFAULT_CONFLIST}, if it exists]` })
    .option('data-dir', { type: 'string', describe: `the plugin's dataDir [default: from --conf, else ${DEFAULT_DATA_DIR}]` })
    .option('network', { type: 'string', describe: 'network name [default: from --conf]' }) as Argv<T & TargetFlags>
}

export function ipamCommands(y: Argv): Argv {
  return y
    .command(
      'list',
      'List the reservations of a network: address, container, interface, pod, host veth',
      (c) => withTarget(c).option('json', { type: 'boolean', default: false, describe: 'print JSON for scripts' }),
      async (args) => {
        const target = resolveTarget(args)
        const { reservations, problems } = await listReservations(target)
        if (args.json) {
          say(JSON.stringify({ dataDir: target.dataDir, network: target.network, reservations, problems }, null, 2))
        } else {
          const rows = [['ADDRESS', 'CONTAINER', 'IFNAME', 'POD', 'HOST VETH', 'CREATED']]
          for (const r of reservations) {
            const veth = hostVethName(r.containerId, r.ifname)
            rows.push([r.address, r.containerId.slice(0, 24), r.ifname, podOf(r), r.hostVethPresent ? veth : `${veth} (gone)`, r.createdAt])
          }
          for (const line of table(rows)) say(line)
          say(`${reservations.length} reservation(s) in ${join(target.dataDir, target.network)}`)
          for (const p of problems) process.stderr.write(`flatnetctl: ${p}\n`)
        }
        if (problems.length) process.exitCode = 1
      },
    )
    .command(
      'gc',
      'Reclaim what dead pods left: reservations whose host veth is gone, host veths no reservation claims',
      (c) =>
        withTarget(c).option('dry-run', { type: 'boolean', default: false, describe: 'only print what would be reclaimed' }).option('min-age', {
          type: 'number',
          default: DEFAULT_MIN_AGE_SECONDS,
          describe: 'keep reservations younger than this many seconds (an ADD may be between its reservation and its veth)',
        }),
      async (args) => {
        const target = resolveTarget(args)
        const minAge = args['min-age']
        if (!Number.isFinite(minAge) || minAge < 0) throw new Error(`--min-age ${args['min-age']} must be a number of seconds >= 0`)
        const out = await ipamGc(target, { dryRun: args['dry-run'], minAgeSeconds: minAge })
        const verb = args['dry-run'] ? 'would release' : 'released'
        const released = args['dry-run'] ? out.plan.reservations : out.released
        for (const r of released) say(`${verb} ${describeReservation(r)}`)
        const veths = args['dry-run'] ? out.plan.hostVeths : out.removedHostVeths
        for (const v of veths) say(`${args['dry-run'] ? 'would remove' : 'removed'} host veth ${v} (no reservation claims it)`)
        for (const f of out.sweptTempFiles) say(`removed leftover temp file ${f}`)
        for (const r of out.plan.tooYoung) say(`kept ${describeReservation(r)}: younger than ${minAge} s, its ADD may still be running`)
        say(`${args['dry-run'] ? 'would reclaim' : 'reclaimed'} ${released.length} reservation(s) and ${veths.length} host veth(s) of network ${target.network} in ${target.dataDir}`)
        for (const e of out.errors) process.stderr.write(`flatnetctl: ${e}\n`)
        if (out.errors.length) {
          process.stderr.write(`flatnetctl: ipam gc: ${out.errors.length} problem(s)\n`)
          process.exitCode = 1
        }
      },
    )
    .demandCommand(1, 'name an ipam command: list, gc')
}
