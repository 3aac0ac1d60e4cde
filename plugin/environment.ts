// The CNI_* environment of one invocation, checked per verb (SPEC.md "Parameters").
import { quote } from '../conf/netconf.js'
import type { OpenedNetns } from '../net/netns.js'
import { CniError, Code } from './errors.js'

export type Verb = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC'
const VERBS: readonly Verb[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC']

export interface Invocation {
  verb: Verb
  containerId: string
  netns: string
  ifname: string
  args: CniArgs
  path: string
  /** CNI_NETNS as the caller already opened it (flatnetd's CNI socket); absent: open the path. */
  openedNetns?: OpenedNetns
}

export interface CniArgs {
  ip?: string
  podNamespace?: string
  podName?: string
}

// SPEC.md: container ID "must consist of alphanumeric, underscore, hyphen or period".
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/
const MAX_CONTAINER_ID = 1024
const KNOWN_ARGS = new Set(['IgnoreUnknown', 'IP', 'K8S_POD_NAMESPACE', 'K8S_POD_NAME', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID'])

// Which variables each verb cannot do without. DEL tolerates an empty CNI_NETNS: containerd
// (`ctr run --cni`, containerd 1.6) sends DEL that way once the task has exited: the namespace
// died with the task.
const REQUIRED: Record<Verb, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  VERSION: [],
  STATUS: ['CNI_PATH'],
  GC: ['CNI_PATH'],
}

export function parseVerb(env: NodeJS.ProcessEnv): Verb {
  const verb = env.CNI_COMMAND
  if (!verb) throw new CniError(Code.invalidEnvironment, 'required environment variable CNI_COMMAND is missing or empty')
  if (!(VERBS as readonly string[]).includes(verb)) {
    throw new CniError(Code.invalidEnvironment, `CNI_COMMAND ${quote(verb)} is not one of ${VERBS.join(', ')}`)
  }
  return verb as Verb
}

/**
 * Interface names: 1–15 bytes, not "." or "..", no "/", ":" or whitespace (the kernel's
 * dev_valid_name), and no "%": the kernel reads a name with "%" as a template ("eth%d" becomes
 * eth0, eth1, …), so the pod would get an interface of another name than the runtime asked for.
 */
export function checkIfname(name: string, what = 'CNI_IFNAME'): void {
  const bytes = Buffer.byteLength(name)
  if (bytes < 1 || bytes > 15) throw new CniError(Code.invalidEnvironment, `${what} ${quote(name, 40)} must be 1 to 15 bytes long, is ${bytes}`)
  if (name === '.' || name === '..' || /[/:%\s\0]/.test(name)) {
    throw new CniError(Code.invalidEnvironment, `${what} ${quote(name)} is not a valid interface name (no "/", ":", "%", whitespace; not "." or "..")`)
  }
}

export function checkContainerId(id: string, what = 'CNI_CONTAINERID'): void {
  if (id.length > MAX_CONTAINER_ID || !CONTAINER_ID.test(id)) {
    throw new CniError(
      Code.invalidEnvironment,
      `${what} ${JSON.stringify(id.slice(0, 80))} must start with a letter or digit and contain only letters, digits, "_", "." and "-" (at most ${MAX_CONTAINER_ID})`,
    )
  }
}

/** CNI_ARGS: "K=V;K=V". Unknown keys are refused unless IgnoreUnknown=1/true, as libcni does. */
export function parseCniArgs(raw: string | undefined): CniArgs {
  const out: CniArgs = {}
  if (!raw) return out
  const pairs = raw
    .split(';')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=')
      if (eq <= 0) throw new CniError(Code.invalidEnvironment, `CNI_ARGS: ${quote(p)} is not KEY=VALUE`)
      return [p.slice(0, eq), p.slice(eq + 1)] as const
    })
  const ignoreUnknown = pairs.some(([k, v]) => k === 'IgnoreUnknown' && /^(1|true)$/i.test(v))
  const unknown = pairs.filter(([k]) => !KNOWN_ARGS.has(k)).map(([k]) => k)
  if (unknown.length && !ignoreUnknown) {
    throw new CniError(Code.invalidEnvironment, `CNI_ARGS: unknown key(s) ${unknown.join(', ')} (set IgnoreUnknown=1 to allow them)`)
  }
  for (const [k, v] of pairs) {
    if (k === 'IP') out.ip = v
    else if (k === 'K8S_POD_NAMESPACE') out.podNamespace = v
    else if (k === 'K8S_POD_NAME') out.podName = v
  }
  return out
}

export function parseInvocation(env: NodeJS.ProcessEnv): Invocation {
  const verb = parseVerb(env)
  const missing = REQUIRED[verb].filter((k) => !env[k])
  if (missing.length) {
    throw new CniError(Code.invalidEnvironment, `required environment variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} missing or empty`)
  }
  const inv: Invocation = {
    verb,
    containerId: env.CNI_CONTAINERID ?? '',
    netns: env.CNI_NETNS ?? '',
    ifname: env.CNI_IFNAME ?? '',
    path: env.CNI_PATH ?? '',
    args: parseCniArgs(env.CNI_ARGS),
  }
  if (REQUIRED[verb].includes('CNI_CONTAINERID')) checkContainerId(inv.containerId)
  if (REQUIRED[verb].includes('CNI_IFNAME')) checkIfname(inv.ifname)
  if (inv.netns && (inv.netns.includes('\0') || !inv.netns.startsWith('/'))) {
    throw new CniError(Code.invalidEnvironment, `CNI_NETNS ${JSON.stringify(inv.netns.slice(0, 200))} must be an absolute path`)
  }
  return inv
}
