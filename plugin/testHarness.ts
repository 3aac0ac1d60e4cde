// Test-only: runs the built plugin the way a runtime on a node does, with a throw-away namespace
// playing the node ("host") so tests never touch this machine's own routes or sysctls.
import { exactEnvArgv, runtimeEnv, type CniCall, type CniCommand, type CniEnv } from '../e2e/helpers/cni.js'
import { flatnetBinary } from '../e2e/helpers/plugins.js'
import { run } from '../e2e/helpers/run.js'
import type { Netns } from '../e2e/helpers/netns.js'

export interface NodeCall {
  env?: CniEnv
  config: object | string
  /** Extra variables outside CNI_* (test hooks such as FLATNET_TEST_FAIL_AT). */
  hooks?: Record<string, string>
}

export async function cniOnNode(node: Netns, command: CniCommand, call: NodeCall): Promise<CniCall> {
  const env = { ...runtimeEnv(command, call.env), ...call.hooks }
  const input = typeof call.config === 'string' ? call.config : JSON.stringify(call.config)
  const r = await run(['ip', 'netns', 'exec', node.name, ...exactEnvArgv(env, [flatnetBinary])], { input, timeoutMs: 60_000 })
  let json: unknown
  try {
    json = r.stdout.trim() ? JSON.parse(r.stdout) : undefined
  } catch {
    json = undefined
  }
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, json }
}

/** The node namespace gets lo up and forwarding off, as a fresh host might have it. */
export async function makeNode(ns: Netns): Promise<void> {
  await run(['ip', '-n', ns.name, 'link', 'set', 'lo', 'up'])
  await run(['ip', 'netns', 'exec', ns.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=0'])
}
