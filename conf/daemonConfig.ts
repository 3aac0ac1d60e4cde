// flatnetd's configuration: every option declared once (name, type, default, help, extra
// environment names), merged from the command line, the environment and a JSON file, then
// validated into one typed DaemonConfig. Plain functions over plain data: no yargs, no disk, so
// every rule is unit-tested and every error names the flag (and where its value came from).
import { isAbsolute } from 'node:path'
import { CidrError, cidrsOverlap, parseAddress, parseCidr, type Cidr, type IpFamily } from '../ipam/index.js'
import { planNodeSubnets } from '../ipam/nodeSubnet.js'
import { isSupported, SUPPORTED_VERSIONS, WIDEST_READ, type CniVersion } from './cniVersions.js'

export type OptionType = 'string' | 'number' | 'boolean' | 'list'

export interface OptionSpec {
  type: OptionType
  describe: string
  /** Shown in --help and used when no source sets the option. */
  default?: string | number | boolean
  /** Environment names read besides FLATNETD_<NAME> (which always wins over them). */
  env?: readonly string[]
}

export const DAEMON_ENV_PREFIX = 'FLATNETD_'
export const DEFAULT_LISTEN = '127.0.0.1:9473'
/** Where the native CNI entry (plugin/entry/flatnet.c) looks for flatnetd unless FLATNET_CNI_SOCKET says otherwise. */
export const DEFAULT_CNI_SOCKET = '/run/flatnet/cni.sock'

export const daemonOptions = {
  'node-name': { type: 'string', describe: "This node's name in the datastore (required)", env: ['NODE_NAME'] },
  'node-ip': {
    type: 'list',
    describe: "Address(es) peers route this node's pod subnets through, comma separated, one per IP family (default: per family, the first address of that family's default-route interface)",
    env: ['HOST_IP'],
  },
  'cluster-cidr': {
    type: 'list',
    describe: 'Cluster pod range(s), comma separated, one per IP family, primary first (e.g. 10.244.0.0/16,fd00:10:244::/56); each is carved into one subnet per node',
    default: '10.244.0.0/16',
  },
  'service-cidr': { type: 'list', describe: 'Service range(s), comma separated (one per IP family): pod ranges must not overlap them', default: '10.96.0.0/16' },
  'node-prefix-length': {
    type: 'list',
    describe: 'Prefix length of one node subnet, comma separated, one per cluster range in --cluster-cidr order (default: 24 for an IPv4 range, 64 for an IPv6 one)',
  },
  datastore: { type: 'string', describe: 'Where nodes and their subnets are kept: file, etcd or kubernetes', default: 'file' },
  'datastore-file': { type: 'string', describe: 'State file of the file datastore (shared by the daemons of one host)', default: '/var/lib/flatnet/nodes.json' },
  'etcd-endpoints': { type: 'list', describe: 'etcd endpoints, comma separated (e.g. http://127.0.0.1:2379)' },
  kubeconfig: { type: 'string', describe: "kubernetes datastore: kubeconfig file (default: the pod's service account, in-cluster)" },
  'kubernetes-subnet-source': {
    type: 'string',
    describe: 'kubernetes datastore: podCIDRs (Node.spec.podCIDRs, assigned by kube-controller-manager) or flatnet (flatnet claims subnets itself with Leases)',
    default: 'podCIDRs',
  },
  'claim-namespace': { type: 'string', describe: 'kubernetes datastore, flatnet subnet source: namespace of the claim Leases (default: POD_NAMESPACE, else kube-system)', env: ['POD_NAMESPACE'] },
  'lease-ttl': { type: 'number', describe: "Seconds a node's claim lives without renewal (file default 0 = forever, etcd default 30)" },
  'state-dir': { type: 'string', describe: "Directory of the daemon's own state (its owner id)", default: '/var/lib/flatnet' },
  'cni-conf-dir': { type: 'string', describe: 'Where 10-flatnet.conflist is written', default: '/etc/cni/net.d' },
  'cni-bin-dir': { type: 'string', describe: 'CNI plugin directory (for --install-cni-binary)', default: '/opt/cni/bin' },
  'cni-path': { type: 'list', describe: 'Directories the runtime finds chained plugins in (its CNI_PATH; default: --cni-bin-dir); flatnetd asks the portmap there which CNI versions it speaks' },
  'cni-version': {
    type: 'string',
    describe:
      "Newest cniVersion the node's runtime reads: the conflist is written in it (or older, when the chained portmap stops earlier). 1.1.0 enables STATUS and GC where the runtime speaks it; containerd 1.6 reads up to 1.0.0",
    default: WIDEST_READ,
  },
  'install-cni-binary': { type: 'string', describe: 'Install this flatnet plugin binary (with its ../lib natives) into --cni-bin-dir' },
  'ipam-data-dir': { type: 'string', describe: "The plugin's pod address store (conflist dataDir)", default: '/var/lib/cni/flatnet' },
  mtu: { type: 'number', describe: "Pod interface MTU written to the conflist (default: omitted, the plugin uses the default-route interface's)" },
  masquerade: { type: 'boolean', describe: 'Masquerade pod traffic leaving the cluster range (--no-masquerade removes the rule table)', default: true },
  'anti-spoofing': {
    type: 'boolean',
    describe: 'Drop packets a pod sends with a source address not its own, IPv4 and IPv6 (--no-anti-spoofing removes the rule table, e.g. for pods that route for others)',
    default: true,
  },
  'network-policy': { type: 'boolean', describe: "Enforce NetworkPolicy for this node's pods (--no-network-policy removes the policy table)", default: true },
  'proxy-services': {
    type: 'boolean',
    describe:
      'Proxy Services in nftables (ClusterIP, NodePort, LoadBalancer; --no-proxy-services removes the services table). Default: on for the file and etcd datastores (flatnet is their API server), off for kubernetes (kube-proxy owns Services there; turning it on replaces kube-proxy and deploy/flatnet-services.yaml grants the RBAC it needs)',
  },
  listen: { type: 'string', describe: 'host:port of /healthz, /readyz and /metrics', default: DEFAULT_LISTEN },
  'cni-socket': {
    type: 'string',
    describe: 'Unix socket (mode 0600, root callers only) where flatnetd serves the CNI calls the flatnet entry forwards; empty: serve none (the entry runs the Node plugin itself)',
    default: DEFAULT_CNI_SOCKET,
  },
  'reconcile-interval': { type: 'number', describe: 'Seconds between periodic route reconciles (changes trigger one at once)', default: 10 },
  'log-level': { type: 'string', describe: 'fatal, error, warn, info, debug or trace', default: 'info' },
  uninstall: { type: 'boolean', describe: 'Remove what the daemon installed (masquerade table, conflist, installed plugin, its routes) and exit', default: false },
} as const satisfies Record<string, OptionSpec>

export type FlagName = keyof typeof daemonOptions

/** One option's value before validation, with where it came from (for error messages). */
export interface RawValue {
  value: unknown
  /** e.g. `--mtu`, `FLATNETD_MTU`, `config file /etc/flatnetd.json`, `default`. */
  from: string
}

export type RawDaemonOptions = Partial<Record<FlagName, RawValue>>

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export interface ListenAddress {
  host: string
  port: number
}

/**
 * Which datastore and how to reach it. The same shape as the daemon's DatastoreConfig (structural
 * typing checks that where the daemon opens it), kept here so conf/ does not import daemon/.
 */
export type DatastoreSettings =
  | { kind: 'file'; path: string; leaseTtlSeconds?: number }
  | { kind: 'etcd'; endpoints: string[]; leaseTtlSeconds?: number }
  | { kind: 'kubernetes'; kubeconfig?: string; subnetSource: 'podCIDRs' | 'flatnet'; clusterCidr: string; clusterCidrs: string[]; claimNamespace?: string }

export interface DaemonConfig {
  /** Empty only with --uninstall. */
  nodeName: string
  /** The --node-ip of the primary family (clusterCidrs[0]'s); undefined: detect it at start. */
  nodeIP?: string
  /**
   * Every --node-ip given, at most one per family, in cluster-range order; undefined when none
   * was given. A family of clusterCidrs without one here is detected from that family's default route.
   */
  nodeIPs?: string[]
  /** Canonical CIDR text: the primary cluster range (= clusterCidrs[0]). */
  clusterCidr: string
  /** Every cluster range, canonical CIDR text, one per family, in --cluster-cidr order (primary first). */
  clusterCidrs: string[]
  /** Prefix length of the primary range's node subnets (= nodePrefixLengths[0]). */
  nodePrefixLength: number
  /** Prefix length of one node subnet, per cluster range (parallel to clusterCidrs). */
  nodePrefixLengths: number[]
  /** Service ranges (canonical CIDR text, at most one per family); no cluster range overlaps them. */
  serviceCidrs: string[]
  datastore: DatastoreSettings
  stateDir: string
  cniConfDir: string
  cniBinDir: string
  /** The runtime's plugin search path (CNI_PATH), where chained plugins are probed. */
  cniPath: string[]
  /** The conflist's cniVersion (lowered to what the chained portmap speaks). */
  cniVersion: CniVersion
  /** Absolute path of the plugin binary to install, if asked. */
  installCniBinary?: string
  ipamDataDir: string
  mtu?: number
  masquerade: boolean
  /** Drop pod packets whose source is not the pod's own (nftables table inet flatnet-antispoof). */
  antiSpoofing: boolean
  networkPolicy: boolean
  /** Proxy Services in nftables: --proxy-services, default on except on the kubernetes datastore. */
  proxyServices: boolean
  listen: ListenAddress
  /** The CNI socket's path; undefined: no fast path served. */
  cniSocket: string | undefined
  reconcileIntervalSeconds: number
  logLevel: LogLevel
  uninstall: boolean
}

/** A configuration error; `flag` is the option at fault (without dashes). */
export class DaemonConfigError extends Error {
  override name = 'DaemonConfigError'
  constructor(
    readonly flag: string | undefined,
    message: string,
  ) {
    super(message)
  }
}

/** `FLATNETD_NODE_PREFIX_LENGTH` for `node-prefix-length`. */
export function envNameOf(flag: FlagName): string {
  return DAEMON_ENV_PREFIX + flag.toUpperCase().replaceAll('-', '_')
}

/** `nodePrefixLength` for `node-prefix-length` (the key a JSON config file may also use). */
export function camelOf(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
}

const flagByKey = new Map<string, FlagName>((Object.keys(daemonOptions) as FlagName[]).flatMap((f) => [[f, f] as const, [camelOf(f), f] as const]))

/** The flag a config-file key or command-line key names (kebab or camel case), if any. */
export function flagOfKey(key: string): FlagName | undefined {
  return flagByKey.get(key)
}

/** A value for an error message: short, and safe for anything JSON.parse can return (a 10 000-deep array overflows JSON.stringify). */
function shown(v: unknown): string {
  let text: string | undefined
  try {
    text = JSON.stringify(v)
  } catch {
    text = Array.isArray(v) ? '[…] (nested too deep to show)' : `a ${typeof v}`
  }
  text ??= String(v)
  return text.length > 120 ? `${text.slice(0, 117)}...` : text
}

function where(flag: FlagName, raw: RawValue): string {
  return raw.from === `--${flag}` ? `--${flag}` : `--${flag} (from ${raw.from})`
}

function bad(flag: FlagName, raw: RawValue, why: string): never {
  throw new DaemonConfigError(flag, `${where(flag, raw)}: ${why}`)
}

/** Converts one source's value to the option's type; strings (command line, environment) are parsed. */
export function coerceOption(flag: FlagName, raw: RawValue): string | number | boolean | string[] {
  const spec: OptionSpec = daemonOptions[flag]
  const v = raw.value
  if (Array.isArray(v) && spec.type !== 'list') bad(flag, raw, `given more than once (${v.map((x) => shown(x)).join(', ')})`)
  switch (spec.type) {
    case 'string':
      if (typeof v !== 'string') bad(flag, raw, `expected a string, got ${shown(v)}`)
      return v
    case 'number': {
      if (typeof v === 'number' && Number.isFinite(v)) return v
      if (typeof v === 'string' && /^\s*-?(\d+(\.\d*)?|\.\d+)\s*$/.test(v)) return Number(v)
      return bad(flag, raw, `expected a number, got ${shown(v)}`)
    }
    case 'boolean': {
      if (typeof v === 'boolean') return v
      if (typeof v === 'string' && /^(true|1|yes)$/i.test(v)) return true
      if (typeof v === 'string' && /^(false|0|no)$/i.test(v)) return false
      return bad(flag, raw, `expected true or false, got ${shown(v)}`)
    }
    case 'list': {
      // A number stands for itself (a JSON file's `"nodePrefixLength": 24` or `[24, 64]`).
      const items = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : typeof v === 'number' ? [v] : bad(flag, raw, `expected a comma-separated list, got ${shown(v)}`)
      return items
        .map((x) => {
          if (typeof x === 'number' && Number.isFinite(x)) return String(x)
          if (typeof x !== 'string') bad(flag, raw, `expected strings, got ${shown(x)}`)
          return x.trim()
        })
        .filter((x) => x !== '')
    }
  }
}

/** Every option with a default filled in where no source set it. */
function withDefaults(raw: RawDaemonOptions): RawDaemonOptions {
  const out: RawDaemonOptions = { ...raw }
  for (const [flag, spec] of Object.entries(daemonOptions) as Array<[FlagName, OptionSpec]>) {
    if (out[flag] === undefined && spec.default !== undefined) out[flag] = { value: spec.default, from: 'default' }
  }
  return out
}

function absolutePath(flag: FlagName, raw: RawValue, v: string): string {
  if (v === '' || !isAbsolute(v)) bad(flag, raw, `expected an absolute path, got ${JSON.stringify(v)}`)
  // A NUL (possible from the JSON file) would only fail later, inside fs calls, as a setup error;
  // '..' segments make the real location something other than what the config appears to say.
  if (/[\x00-\x1f\x7f]/.test(v)) bad(flag, raw, `expected a path without control characters, got ${JSON.stringify(v)}`)
  if (v.split('/').includes('..')) bad(flag, raw, `expected a path without '..' segments, got ${JSON.stringify(v)}`)
  return v
}

function integerIn(flag: FlagName, raw: RawValue, v: number, lo: number, hi: number): number {
  if (!Number.isInteger(v) || v < lo || v > hi) bad(flag, raw, `expected an integer between ${lo} and ${hi}, got ${v}`)
  return v
}

/** `127.0.0.1:9473`, `[::1]:9473`, `0.0.0.0:0` (port 0: any free port). */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+|localhost)):(\d{1,5})$/.exec(text)
  if (!m) throw new Error(`expected host:port (e.g. ${DEFAULT_LISTEN} or [::1]:9473), got ${JSON.stringify(text)}`)
  const host = m[1] ?? m[2]!
  if (host !== 'localhost') parseAddress(host)
  const port = Number(m[3])
  if (port > 65535) throw new Error(`port ${port} is out of range 0-65535`)
  return { host, port }
}

function validURL(text: string): boolean {
  try {
    const u = new URL(text)
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '' && u.pathname === '/' && !u.search
  } catch {
    return false
  }
}

/** kube-controller-manager's default node mask per family: /24 of an IPv4 range, /64 of an IPv6 one. */
export const DEFAULT_NODE_PREFIX_LENGTH: Readonly<Record<IpFamily, number>> = { 4: 24, 6: 64 }

/**
 * kube-controller-manager refuses a node mask more than 16 bits longer than its cluster range
 * (2^16 node subnets at most); flatnet keeps the same bound, so a cluster configured for one
 * accepts the other, and a node-subnet plan stays small enough to scan.
 */
export const MAX_NODE_MASK_DIFFERENCE = 16

/** --cluster-cidr: one or two ranges, at most one per family, primary first. */
function clusterRanges(texts: readonly string[], raw: RawValue): Cidr[] {
  if (texts.length === 0) bad('cluster-cidr', raw, 'expected at least one cluster range (e.g. 10.244.0.0/16)')
  const out: Cidr[] = []
  for (const text of texts) {
    let c: Cidr
    try {
      c = parseCidr(text)
    } catch (e) {
      bad('cluster-cidr', raw, (e as Error).message)
    }
    const same = out.find((o) => o.family === c.family)
    if (same) bad('cluster-cidr', raw, `${c.text}: one cluster range per IP family, ${same.text} is IPv${c.family} too`)
    out.push(c)
  }
  return out
}

/** --node-prefix-length: one per cluster range (or none: the family defaults), each fitting its range within 16 bits. */
function nodePrefixLengthsOf(clusters: readonly Cidr[], texts: readonly string[] | undefined, raw: RawValue): number[] {
  if (texts !== undefined && texts.length !== clusters.length) {
    bad('node-prefix-length', raw, `expected one prefix length per cluster range (${clusters.length}: ${clusters.map((c) => c.text).join(', ')}), got ${texts.length} (${texts.join(', ')})`)
  }
  return clusters.map((c, i) => {
    const text = texts?.[i]
    if (text !== undefined && !/^\d{1,3}$/.test(text)) bad('node-prefix-length', raw, `expected an integer prefix length, got ${JSON.stringify(text)}`)
    const length = text === undefined ? DEFAULT_NODE_PREFIX_LENGTH[c.family] : Number(text)
    try {
      planNodeSubnets(c.text, length)
    } catch (e) {
      if (!(e instanceof CidrError)) throw e
      bad('node-prefix-length', raw, e.message)
    }
    if (length - c.prefixLength > MAX_NODE_MASK_DIFFERENCE) {
      bad(
        'node-prefix-length',
        raw,
        `node subnet prefix length /${length} is ${length - c.prefixLength} bits longer than the cluster range ${c.text} (--cluster-cidr): at most ${MAX_NODE_MASK_DIFFERENCE} bits (/${c.prefixLength + MAX_NODE_MASK_DIFFERENCE} or shorter), or a larger cluster range`,
      )
    }
    return length
  })
}

/** --node-ip: at most one per family, each of a family some cluster range has; returned in cluster-range order. */
function nodeAddressesOf(clusters: readonly Cidr[], texts: readonly string[], raw: RawValue): string[] {
  const byFamily = new Map<IpFamily, string>()
  for (const text of texts) {
    let family: IpFamily
    try {
      family = parseAddress(text).family
    } catch (e) {
      bad('node-ip', raw, (e as Error).message)
    }
    const same = byFamily.get(family)
    if (same !== undefined) bad('node-ip', raw, `${text}: one node address per IP family, ${same} is IPv${family} too`)
    if (!clusters.some((c) => c.family === family)) {
      bad('node-ip', raw, `${text} is IPv${family}, no cluster range is (${clusters.map((c) => `${c.text} is IPv${c.family}`).join(', ')})`)
    }
    byFamily.set(family, text)
  }
  return clusters.flatMap((c) => byFamily.get(c.family) ?? [])
}

/**
 * Validates merged options (see mergeDaemonOptions) into a DaemonConfig. Throws DaemonConfigError
 * naming the first bad flag and the source of its value.
 */
export function validateDaemonConfig(input: RawDaemonOptions): DaemonConfig {
  const raw = withDefaults(input)
  const get = <T extends string | number | boolean | string[]>(flag: FlagName): T | undefined => {
    const r = raw[flag]
    return r === undefined ? undefined : (coerceOption(flag, r) as T)
  }
  const rawOf = (flag: FlagName): RawValue => raw[flag] ?? { value: undefined, from: 'default' }

  const uninstall = get<boolean>('uninstall')!
  const nodeName = get<string>('node-name') ?? ''
  // --uninstall touches only this host (table, conflist, plugin, routes): no node name needed.
  if (nodeName === '' && !uninstall) {
    throw new DaemonConfigError('node-name', `--node-name is required (or ${envNameOf('node-name')} / NODE_NAME)`)
  }
  // The datastore's node-name syntax: a Kubernetes node name, plus upper case and '_' for lab names.
  if (nodeName !== '' && !/^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/.test(nodeName)) {
    bad('node-name', rawOf('node-name'), `invalid node name ${JSON.stringify(nodeName)}: letters, digits, '.', '-', '_', at most 253, starting and ending with a letter or digit`)
  }

  const clusters = clusterRanges(get<string[]>('cluster-cidr')!, rawOf('cluster-cidr'))
  const cluster = clusters[0]!
  const nodePrefixLengths = nodePrefixLengthsOf(clusters, get<string[]>('node-prefix-length'), rawOf('node-prefix-length'))

  // kind's default service range. Services will be allocated from it; a pod address inside it
  // would be shadowed by a service address (or shadow one), so the two must not overlap.
  const serviceCidrs: string[] = []
  for (const text of get<string[]>('service-cidr') ?? []) {
    let service
    try {
      service = parseCidr(text)
    } catch (e) {
      bad('service-cidr', rawOf('service-cidr'), (e as Error).message)
    }
    const sameFamily = serviceCidrs.find((c) => parseCidr(c).family === service.family)
    if (sameFamily !== undefined) bad('service-cidr', rawOf('service-cidr'), `${service.text}: one service range per IP family, ${sameFamily} is IPv${service.family} too`)
    for (const c of clusters) {
      if (cidrsOverlap(service, c))
        bad('service-cidr', rawOf('service-cidr'), `${service.text} overlaps the cluster range ${c.text} (--cluster-cidr): a pod address and a service address could be the same`)
    }
    serviceCidrs.push(service.text)
  }

  const nodeIPs = nodeAddressesOf(clusters, get<string[]>('node-ip') ?? [], rawOf('node-ip'))
  const nodeIP = nodeIPs.find((ip) => parseAddress(ip).family === cluster.family)

  const leaseTtl = get<number>('lease-ttl')
  if (leaseTtl !== undefined) integerIn('lease-ttl', rawOf('lease-ttl'), leaseTtl, 0, 86400)
  const kind = get<string>('datastore')!
  let datastore: DatastoreSettings
  if (kind === 'file') {
    datastore = { kind: 'file', path: absolutePath('datastore-file', rawOf('datastore-file'), get<string>('datastore-file')!) }
    if (leaseTtl !== undefined) datastore.leaseTtlSeconds = leaseTtl
  } else if (kind === 'etcd') {
    const endpoints = get<string[]>('etcd-endpoints') ?? []
    if (endpoints.length === 0) throw new DaemonConfigError('etcd-endpoints', `--etcd-endpoints is required with --datastore etcd (e.g. http://127.0.0.1:2379)`)
    for (const e of endpoints) if (!validURL(e)) bad('etcd-endpoints', rawOf('etcd-endpoints'), `${JSON.stringify(e)} is not an http(s)://host:port URL`)
    if (leaseTtl === 0) bad('lease-ttl', rawOf('lease-ttl'), 'etcd leases need a TTL of at least 1 second')
    datastore = { kind: 'etcd', endpoints }
    if (leaseTtl !== undefined) datastore.leaseTtlSeconds = leaseTtl
  } else if (kind === 'kubernetes') {
    const source = get<string>('kubernetes-subnet-source')!
    if (source !== 'podCIDRs' && source !== 'flatnet') bad('kubernetes-subnet-source', rawOf('kubernetes-subnet-source'), `expected podCIDRs or flatnet, got ${JSON.stringify(source)}`)
    const kubeconfig = get<string>('kubeconfig')
    const claimNamespace = get<string>('claim-namespace')
    if (claimNamespace !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(claimNamespace)) {
      bad('claim-namespace', rawOf('claim-namespace'), `${JSON.stringify(claimNamespace)} is not a Kubernetes namespace name`)
    }
    datastore = { kind: 'kubernetes', subnetSource: source, clusterCidr: cluster.text, clusterCidrs: clusters.map((c) => c.text) }
    if (kubeconfig !== undefined) datastore.kubeconfig = absolutePath('kubeconfig', rawOf('kubeconfig'), kubeconfig)
    if (claimNamespace !== undefined) datastore.claimNamespace = claimNamespace
  } else {
    bad('datastore', rawOf('datastore'), `expected file, etcd or kubernetes, got ${JSON.stringify(kind)}`)
  }

  const mtu = get<number>('mtu')
  if (mtu !== undefined) integerIn('mtu', rawOf('mtu'), mtu, 68, 65535)

  let listen: ListenAddress
  try {
    listen = parseListen(get<string>('listen')!)
  } catch (e) {
    bad('listen', rawOf('listen'), (e as Error).message)
  }

  const interval = get<number>('reconcile-interval')!
  if (!(interval >= 0.1 && interval <= 3600)) bad('reconcile-interval', rawOf('reconcile-interval'), `expected seconds between 0.1 and 3600, got ${interval}`)

  const logLevel = get<string>('log-level')!
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) bad('log-level', rawOf('log-level'), `expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`)

  const cniVersion = get<string>('cni-version')!
  if (!isSupported(cniVersion)) bad('cni-version', rawOf('cni-version'), `expected one of ${SUPPORTED_VERSIONS.join(', ')}, got ${JSON.stringify(cniVersion)}`)
  const cniSocket = get<string>('cni-socket')
  if (cniSocket) absolutePath('cni-socket', rawOf('cni-socket'), cniSocket)
  // sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
  if (cniSocket && Buffer.byteLength(cniSocket) > 107) bad('cni-socket', rawOf('cni-socket'), `a unix socket path is at most 107 bytes, got ${Buffer.byteLength(cniSocket)}`)

  const install = get<string>('install-cni-binary')
  if (install !== undefined) absolutePath('install-cni-binary', rawOf('install-cni-binary'), install)

  return {
    nodeName,
    nodeIP,
    nodeIPs: nodeIPs.length ? nodeIPs : undefined,
    clusterCidr: cluster.text,
    clusterCidrs: clusters.map((c) => c.text),
    nodePrefixLength: nodePrefixLengths[0]!,
    nodePrefixLengths,
    serviceCidrs,
    datastore,
    stateDir: absolutePath('state-dir', rawOf('state-dir'), get<string>('state-dir')!),
    cniConfDir: absolutePath('cni-conf-dir', rawOf('cni-conf-dir'), get<string>('cni-conf-dir')!),
    cniBinDir: absolutePath('cni-bin-dir', rawOf('cni-bin-dir'), get<string>('cni-bin-dir')!),
    // CNI_PATH style (colon separated) is accepted as well as a comma list.
    cniPath: (get<string[]>('cni-path') ?? [get<string>('cni-bin-dir')!])
      .flatMap((d) => d.split(':'))
      .filter(Boolean)
      .map((d) => absolutePath('cni-path', rawOf('cni-path'), d)),
    cniVersion,
    installCniBinary: install || undefined,
    ipamDataDir: absolutePath('ipam-data-dir', rawOf('ipam-data-dir'), get<string>('ipam-data-dir')!),
    mtu,
    masquerade: get<boolean>('masquerade')!,
    antiSpoofing: get<boolean>('anti-spoofing')!,
    networkPolicy: get<boolean>('network-policy')!,
    // On Kubernetes kube-proxy already serves every Service: a second proxy is opt-in.
    proxyServices: get<boolean>('proxy-services') ?? datastore.kind !== 'kubernetes',
    listen,
    cniSocket: cniSocket || undefined,
    reconcileIntervalSeconds: interval,
    logLevel: logLevel as LogLevel,
    uninstall,
  }
}

/**
 * Layers the sources: command line over FLATNETD_* over the extra environment names (NODE_NAME,
 * HOST_IP) over the config file. Defaults come last, in validateDaemonConfig.
 */
export function mergeDaemonOptions(sources: {
  cli: Partial<Record<FlagName, unknown>>
  env: Readonly<Record<string, string | undefined>>
  file?: { path: string; values: Record<string, unknown> }
}): RawDaemonOptions {
  const out: RawDaemonOptions = {}
  if (sources.file) {
    for (const [key, value] of Object.entries(sources.file.values)) {
      const flag = flagOfKey(key)
      if (!flag) throw new DaemonConfigError(undefined, `config file ${sources.file.path}: unknown option ${JSON.stringify(key)} (options: ${Object.keys(daemonOptions).join(', ')})`)
      if (value === null || value === undefined) continue
      out[flag] = { value, from: `config file ${sources.file.path}` }
    }
  }
  for (const [flag, spec] of Object.entries(daemonOptions) as Array<[FlagName, OptionSpec]>) {
    for (const name of [...[...(spec.env ?? [])].reverse(), envNameOf(flag)]) {
      const v = sources.env[name]
      if (v !== undefined && v !== '') out[flag] = { value: v, from: name }
    }
    const v = sources.cli[flag]
    if (v !== undefined) out[flag] = { value: v, from: `--${flag}` }
  }
  return out
}

/** Parses a JSON config file's text; the object's keys are option names (kebab or camel case). */
export function parseConfigFile(path: string, text: string): Record<string, unknown> {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (e) {
    throw new DaemonConfigError('config', `--config ${path}: not valid JSON: ${(e as Error).message}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DaemonConfigError('config', `--config ${path}: expected a JSON object of options`)
  return v as Record<string, unknown>
}

/** The daemon's concerns, one reconciler each (daemon/reconcilers/). */
// antispoof comes before conflist: the rule is in force before the runtime can start a pod here.
export const DAEMON_CONCERNS = ['forwarding', 'routes', 'antispoof', 'conflist', 'masquerade', 'policy', 'services'] as const
export type DaemonConcern = (typeof DAEMON_CONCERNS)[number]

/**
 * The switch table: each concern, enabled or not. main starts every enabled concern and removes
 * what a disabled one owns; --uninstall removes all. masquerade (--no-masquerade) and antispoof
 * (--no-anti-spoofing) have a switch; a new concern adds its row here and its flag above.
 */
export function daemonConcerns(cfg: DaemonConfig): Record<DaemonConcern, { enabled: boolean }> {
  return {
    forwarding: { enabled: true },
    routes: { enabled: true },
    antispoof: { enabled: cfg.antiSpoofing },
    conflist: { enabled: true },
    masquerade: { enabled: cfg.masquerade },
    policy: { enabled: cfg.networkPolicy },
    services: { enabled: cfg.proxyServices },
  }
}
