// The lab plays the container runtime: it attaches a pod by running the plugins of the node's
// conflist exactly as libcni does (SPEC.md "Execution Protocol", "Network configuration lists"):
// - the conflist is read from the node's CNI config dir, where flatnetd wrote it;
// - each plugin gets its own object with `name` and `cniVersion` of the list injected, plus the
//   previous plugin's result as `prevResult` (ADD in order, DEL in reverse order with the cached
//   result of the ADD);
// - the executable is looked up by `type` in CNI_PATH; it runs inside the node's namespace (the
//   runtime's "host") with nothing in its environment but CNI_* and PATH.
// Every plugin of the list runs, portmap included (flatnetd writes the list in a version the
// node's portmap speaks, see daemon/chainedPlugins.ts).
import { constants } from 'node:fs'
import { access, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { cleanEnvArgv, inNetns, run } from './exec.js'

/** Where Debian's containernetworking-plugins puts portmap & co: the runtime's second bin dir. */
export const SYSTEM_CNI_BIN_DIR = '/usr/lib/cni'

export interface Conflist {
  cniVersion: string
  name: string
  plugins: Array<Record<string, unknown> & { type: string }>
}

export async function readConflist(path: string): Promise<Conflist> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new Error(`read CNI network configuration ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  let doc: Partial<Conflist>
  try {
    doc = JSON.parse(text) as Partial<Conflist>
  } catch (err) {
    throw new Error(`read CNI network configuration ${path}: invalid JSON: ${(err as Error).message}`)
  }
  if (typeof doc.cniVersion !== 'string' || typeof doc.name !== 'string' || !Array.isArray(doc.plugins) || doc.plugins.some((p) => typeof p?.type !== 'string')) {
    throw new Error(`read CNI network configuration ${path}: not a conflist (needs cniVersion, name and plugins with a type each)`)
  }
  return doc as Conflist
}

/** One pod's attachment to the network, as the runtime names it. */
export interface Attachment {
  containerId: string
  /** Path of the pod's network namespace (CNI_NETNS). */
  netnsPath: string
  ifname: string
  /** CNI_ARGS as key/value pairs. */
  args: Record<string, string>
}

export interface RuntimeHost {
  /** The node namespace the plugins run in. */
  netns: string
  /** CNI_PATH, in lookup order. */
  binDirs: string[]
  /**
   * The node's flatnetd CNI socket (its --cni-socket): the flatnet entry forwards calls there
   * (the fast path) and runs the Node plugin itself while that daemon is down. A real runtime
   * passes nothing: the entry's default /run/flatnet/cni.sock is the host's one daemon; the lab
   * runs a daemon per node on one host, so each node names its own.
   */
  cniSocket?: string
}

export class CniPluginError extends Error {
  constructor(
    message: string,
    readonly code?: number,
  ) {
    super(message)
  }
}

async function findPlugin(type: string, binDirs: readonly string[]): Promise<string> {
  for (const dir of binDirs) {
    const path = join(dir, type)
    try {
      await access(path, constants.X_OK)
      return path
    } catch {
      // not in this dir
    }
  }
  throw new CniPluginError(
    `find CNI plugin ${JSON.stringify(type)}: not in CNI_PATH ${binDirs.join(':')}${type === 'portmap' ? ' (install containernetworking-plugins: scripts/install-deps.sh)' : ''}`,
  )
}

function cniArgs(args: Record<string, string>): string {
  return Object.entries(args)
    .map(([k, v]) => `${k}=${v}`)
    .join(';')
}

type Verb = 'ADD' | 'DEL' | 'CHECK'

async function execPlugin(host: RuntimeHost, verb: Verb, att: Attachment, netns: string, config: Record<string, unknown>): Promise<Record<string, unknown> | undefined> {
  const type = String(config.type)
  const path = await findPlugin(type, host.binDirs)
  const env = {
    CNI_COMMAND: verb,
    CNI_CONTAINERID: att.containerId,
    CNI_NETNS: netns,
    CNI_IFNAME: att.ifname,
    CNI_ARGS: cniArgs(att.args),
    CNI_PATH: host.binDirs.join(':'),
    ...(host.cniSocket ? { FLATNET_CNI_SOCKET: host.cniSocket } : {}),
  }
  const result = await run(cleanEnvArgv(env, inNetns(host.netns, [path])), { input: JSON.stringify(config), timeoutMs: 60_000 })
  const what = `${verb} ${att.containerId.slice(0, 12)} (${att.args.K8S_POD_NAME ?? att.ifname}) through ${type}`
  let doc: Record<string, unknown> | undefined
  try {
    doc = result.stdout.trim() ? (JSON.parse(result.stdout) as Record<string, unknown>) : undefined
  } catch {
    doc = undefined
  }
  if (result.code !== 0) {
    if (doc && typeof doc.code === 'number') {
      const details = typeof doc.details === 'string' && doc.details ? ` (${doc.details})` : ''
      throw new CniPluginError(`${what}: error code ${doc.code}: ${String(doc.msg)}${details}`, doc.code)
    }
    throw new CniPluginError(`${what}: exit ${result.code}${result.timedOut ? ' (timed out)' : ''}: ${(result.stderr || result.stdout).trim()}`)
  }
  if (verb === 'ADD' && (!doc || typeof doc.cniVersion !== 'string')) {
    throw new CniPluginError(`${what}: printed no result: ${JSON.stringify(result.stdout.trim())}`)
  }
  return doc
}

function pluginConfig(list: Conflist, index: number, prevResult: Record<string, unknown> | undefined): Record<string, unknown> {
  const config: Record<string, unknown> = { ...list.plugins[index], name: list.name, cniVersion: list.cniVersion }
  if (prevResult) config.prevResult = prevResult
  return config
}

/** ADD through the whole chain; returns the last plugin's result (what a runtime caches). */
export async function addNetwork(host: RuntimeHost, list: Conflist, att: Attachment): Promise<Record<string, unknown>> {
  let prev: Record<string, unknown> | undefined
  for (let i = 0; i < list.plugins.length; i++) {
    prev = await execPlugin(host, 'ADD', att, att.netnsPath, pluginConfig(list, i, prev))
  }
  if (!prev) throw new CniPluginError(`ADD ${att.containerId}: conflist ${list.name} has no plugins`)
  return prev
}

/**
 * DEL through the chain in reverse, each plugin with the cached result. Like a runtime it goes
 * on after a failing plugin and reports all failures at the end.
 */
export async function delNetwork(host: RuntimeHost, list: Conflist, att: Attachment, cachedResult: Record<string, unknown> | undefined): Promise<void> {
  const errors: string[] = []
  for (let i = list.plugins.length - 1; i >= 0; i--) {
    try {
      await execPlugin(host, 'DEL', att, att.netnsPath, pluginConfig(list, i, cachedResult))
    } catch (err) {
      errors.push((err as Error).message)
    }
  }
  if (errors.length) throw new CniPluginError(errors.join('; '))
}

/**
 * The pod's addresses from a CNI result, without prefix lengths, in the result's order (`ips`:
 * `IP/32` or `IP/128`, one per range of the conflist, the primary family first).
 */
export function resultAddresses(result: Record<string, unknown>): string[] {
  const ips = result.ips as Array<{ address?: unknown }> | undefined
  const addresses = (ips ?? []).filter((ip) => typeof ip.address === 'string').map((ip) => String(ip.address).split('/')[0]!)
  if (addresses.length === 0) throw new CniPluginError(`CNI result has no address: ${JSON.stringify(result)}`)
  return addresses
}
