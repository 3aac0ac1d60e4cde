// Test-only: runs the built plugin the way a runtime on a node does, with a throw-away namespace
// playing the node ("host") so tests never touch this machine's own routes or sysctls.
import { runCni, type CniCall, type CniCommand, type CniEnv } from '../../e2e/helpers/cni.js'
import { flatnetBinary, flatnetTestBinary } from '../../e2e/helpers/plugins.js'
import { run } from '../../e2e/helpers/run.js'
import type { Netns } from '../../e2e/helpers/netns.js'

export interface NodeCall {
  env?: CniEnv
  config: object | string
  /**
   * Extra variables outside CNI_* (test hooks such as FLATNET_TEST_FAIL_AT). A call with hooks
   * runs the test build (dist/test/bin/flatnet): the production binary compiles them out.
   */
  hooks?: Record<string, string>
}

export function cniOnNode(node: Netns, command: CniCommand, call: NodeCall): Promise<CniCall> {
  const binary = call.hooks && Object.keys(call.hooks).length ? flatnetTestBinary : flatnetBinary
  return runCni(binary, command, { ...call, hostNetns: node.name, timeoutMs: 60_000 })
}

/** The node namespace gets lo up and forwarding off, as a fresh host might have it. */
export async function makeNode(ns: Netns): Promise<void> {
  await run(['ip', '-n', ns.name, 'link', 'set', 'lo', 'up'])
  await run(['ip', 'netns', 'exec', ns.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=0'])
}
