// Calls a CNI plugin exactly as a container runtime does (CNI spec 1.1, "Protocol"): the verb and
// its parameters in CNI_* environment variables, the network configuration as JSON on stdin,
// one result or error as JSON on stdout.
//
// The environment is reduced to CNI_* and PATH. containerd and CRI-O exec plugins with little
// more than that, and this machine's shell sets NODE_EXTRA_CA_CERTS, which costs every Node
// start ~80 ms (measured here: `node -e 0` ~44 ms without it, ~125 ms with it): inheriting it would make a Node plugin look slower than it is and
// could hide a dependency on the caller's environment.
import { run } from './run.js'

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC'

/** The CNI_* parameters besides CNI_COMMAND. Missing ones are not set at all (not set empty). */
export interface CniEnv {
  CNI_CONTAINERID?: string
  CNI_NETNS?: string
  CNI_IFNAME?: string
  CNI_ARGS?: string
  CNI_PATH?: string
}

export interface CniCallOptions {
  env?: CniEnv
  /** The network configuration: an object is sent as JSON; a string is sent as it is (for malformed-input tests). */
  config: object | string
  /** Default 30 s; a plugin still running then is killed and the call reports code 137. */
  timeoutMs?: number
  /** Run the plugin inside this namespace, which then plays the runtime's host (the node). */
  hostNetns?: string
  /** Variables outside CNI_* for test hooks (FLATNET_TEST_FAIL_AT, …); a runtime sets none. */
  hooks?: Record<string, string>
}

export interface CniCall {
  code: number
  stdout: string
  stderr: string
  /** stdout parsed as JSON, or undefined when it is not JSON (or empty). */
  json: unknown
}

/** Runtimes look plugins' interpreters up on their own PATH; use ours, or the usual default. */
const RUNTIME_PATH = process.env.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** The complete environment a runtime gives a plugin: CNI_COMMAND, the given CNI_* values, PATH. */
export function runtimeEnv(command: CniCommand, env: CniEnv = {}): Record<string, string> {
  const out: Record<string, string> = { CNI_COMMAND: command, PATH: RUNTIME_PATH }
  for (const [key, value] of Object.entries(env)) {
    if (!key.startsWith('CNI_')) throw new Error(`runtimeEnv: ${key} is not a CNI_* variable`)
    if (value !== undefined) out[key] = value
  }
  return out
}

/**
 * The argv that runs `binaryPath` with exactly `env` and nothing else. Through `env -i` rather than
 * spawn's `env` option because tap's processinfo hooks child_process and adds NODE_OPTIONS (an
 * --import of its own loader) and _TAPJS_* variables to every child: a Node plugin would then load
 * tap's code on each call.
 */
export function exactEnvArgv(env: Record<string, string>, argv: readonly string[]): string[] {
  return ['/usr/bin/env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...argv]
}

export async function runCni(binaryPath: string, command: CniCommand, options: CniCallOptions): Promise<CniCall> {
  const input = typeof options.config === 'string' ? options.config : JSON.stringify(options.config)
  const call = exactEnvArgv({ ...runtimeEnv(command, options.env), ...options.hooks }, [binaryPath])
  const argv = options.hostNetns ? ['ip', 'netns', 'exec', options.hostNetns, ...call] : call
  const result = await run(argv, { input, timeoutMs: options.timeoutMs })
  return parseCniCall(result)
}

/** A finished plugin process as a CniCall: stdout parsed as JSON when it is JSON. */
export function parseCniCall(result: { code: number; stdout: string; stderr: string }): CniCall {
  let json: unknown
  try {
    json = result.stdout.trim() ? JSON.parse(result.stdout) : undefined
  } catch {
    json = undefined
  }
  return { code: result.code, stdout: result.stdout, stderr: result.stderr, json }
}

/** A conflist as it sits in /etc/cni/net.d. */
export interface Conflist {
  cniVersion: string
  name: string
  plugins: Array<Record<string, unknown>>
}

/**
 * The configuration a runtime sends to plugin `index` of a conflist (libcni's buildOneConfig):
 * the plugin's object plus the list's `name` and `cniVersion`, plus whatever `extra` adds
 * (`prevResult` for chained plugins and CHECK, `runtimeConfig`, `cni.dev/valid-attachments`).
 */
export function pluginConfig(list: Conflist, index = 0, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const plugin = list.plugins[index]
  if (!plugin) throw new Error(`pluginConfig: conflist ${list.name} has no plugin ${index}`)
  return { ...plugin, name: list.name, cniVersion: list.cniVersion, ...extra }
}

// --- the result, as far as these tests read it (CNI spec 1.x "Success" result) ---

export interface CniInterface {
  name: string
  mac?: string
  sandbox?: string
}
export interface CniIp {
  address: string
  gateway?: string
  interface?: number
  version?: string
}
export interface CniRoute {
  dst: string
  gw?: string
}
export interface CniResult {
  cniVersion: string
  interfaces?: CniInterface[]
  ips?: CniIp[]
  routes?: CniRoute[]
}

/**
 * The call's success result. Throws, quoting stdout and stderr, when the plugin failed or printed
 * something that is not a result, so a failing test says what the plugin said.
 */
export function cniResult(call: CniCall, what = 'plugin call'): CniResult {
  const json = call.json as Partial<CniResult> | undefined
  if (call.code !== 0 || !json || typeof json.cniVersion !== 'string' || !Array.isArray(json.ips)) {
    throw new Error(`${what}: exit ${call.code}, stdout ${JSON.stringify(call.stdout.trim())}, stderr ${JSON.stringify(call.stderr.trim())}`)
  }
  return json as CniResult
}
