// Test-only: runs the built plugin the way a runtime on a node does, with a throw-away namespace
// playing the node ("host") so tests never touch this machine's own routes or sysctls.
//
// Two paths, one suite: with FLATNET_TEST_CNI_PATH=fast in the test process's environment, every
// call goes through flatnetd's CNI socket (a server process started in the node namespace on the
// node's first call, daemon/testing/cniServerProcess.ts); otherwise the entry finds no socket and
// runs the Node plugin (the fallback). plugin/fastpath/*.test.ts rerun the plugin suites that way.
// Test hooks (FLATNET_TEST_CRASH_AT, FLATNET_TEST_FAIL_AT) act where the plugin code runs: on the
// fast path that is the server, restarted with them in its environment, so a crash point kills
// the daemon in the middle of the call.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCni, type CniCall, type CniCommand, type CniEnv } from '../../e2e/helpers/cni.js'
import { flatnetBinary, flatnetTestBinary } from '../../e2e/helpers/plugins.js'
import { releasePrefix, uniquePrefix } from '../../e2e/helpers/prefix.js'
import { run } from '../../e2e/helpers/run.js'
import type { Netns } from '../../e2e/helpers/netns.js'
import { startCniTestServer, type CniTestServer } from '../../daemon/testing/cniServerProcess.js'

export interface NodeCall {
  env?: CniEnv
  config: object | string
  /**
   * Extra variables outside CNI_* (test hooks such as FLATNET_TEST_FAIL_AT). A call with hooks
   * runs the test build (dist/test/bin/flatnet): the production binary compiles them out.
   */
  hooks?: Record<string, string>
}

/** Which path the suites in this process exercise. */
export const cniPath: 'fast' | 'fallback' = process.env.FLATNET_TEST_CNI_PATH === 'fast' ? 'fast' : 'fallback'

const SERVER_HOOKS = ['FLATNET_TEST_CRASH_AT', 'FLATNET_TEST_FAIL_AT'] as const

interface NodeServer {
  server: CniTestServer
  /** The hooks it was started with, as one comparable string. */
  hooks: string
}

const servers = new Map<string, Promise<NodeServer>>()
const started = new Set<CniTestServer>()
/** The sockets of this process's servers: one fnt- directory, removed at exit (or by the sweep). */
let socketDir: { prefix: string; dir: string } | undefined
process.on('exit', () => {
  // The node namespace's removal kills its server; this covers a test that never removes it.
  for (const s of started) if (s.alive()) s.child.kill('SIGKILL')
  if (socketDir) {
    rmSync(socketDir.dir, { recursive: true, force: true })
    releasePrefix(socketDir.prefix)
  }
})

function socketPathFor(node: Netns): string {
  if (!socketDir) {
    const prefix = uniquePrefix('cnisock')
    socketDir = { prefix, dir: mkdtempSync(join(tmpdir(), `${prefix}-`)) }
  }
  return join(socketDir.dir, `${node.name}.sock`)
}

/** One decision at a time per node: concurrent calls (the scale suite's 100 ADDs) must share one server, not start one each. */
const deciding = new Map<string, Promise<unknown>>()

/** The node's server with exactly these hooks, started (or restarted) as needed. */
function serverFor(node: Netns, hooks: Record<string, string>): Promise<CniTestServer> {
  const prev = deciding.get(node.name) ?? Promise.resolve()
  const next = prev.catch(() => undefined).then(() => decideServer(node, hooks))
  deciding.set(node.name, next)
  return next
}

async function decideServer(node: Netns, hooks: Record<string, string>): Promise<CniTestServer> {
  const wanted = Object.fromEntries(SERVER_HOOKS.filter((k) => hooks[k] !== undefined).map((k) => [k, hooks[k]!]))
  const key = JSON.stringify(wanted)
  const current = await servers.get(node.name)?.catch(() => undefined)
  if (current && current.hooks === key && current.server.alive()) return current.server
  if (current) await current.server.stop()
  const next = startCniTestServer(node.name, socketPathFor(node), wanted).then((server) => {
    started.add(server)
    return { server, hooks: key }
  })
  servers.set(node.name, next)
  return (await next).server
}

export async function cniOnNode(node: Netns, command: CniCommand, call: NodeCall): Promise<CniCall> {
  const hooks = { ...call.hooks }
  if (cniPath === 'fast') hooks.FLATNET_CNI_SOCKET = (await serverFor(node, hooks)).socketPath
  // The fallback path says so explicitly: a flatnetd serving this host's default socket must not
  // turn a fallback run into a fast one (it would decline a node namespace's call anyway).
  else hooks.FLATNET_CNI_SOCKET = join(tmpdir(), 'fnt-no-cni-socket')
  // Test points are compiled out of the production plugin (dist/bin/flatnet-node, which the entry
  // runs): a fallback call with hooks runs the test build, whose points are live, directly. On the
  // fast path the hooks act in the server, whose bundle keeps them.
  const withPoints = cniPath === 'fallback' && Object.keys(call.hooks ?? {}).length > 0
  return runCni(withPoints ? flatnetTestBinary : flatnetBinary, command, { ...call, hooks, hostNetns: node.name, timeoutMs: 60_000 })
}

/**
 * Whether the call was killed in the middle, as the runtime sees it: the plugin process died by
 * SIGKILL (exit 137, nothing printed), or on the fast path the daemon died and the entry answered
 * CNI error 11 ("try again later").
 */
export function killedMidCall(call: CniCall): boolean {
  if (cniPath === 'fast') return call.code === 1 && (call.json as { code?: number } | undefined)?.code === 11
  return call.code === 137 && call.stdout === ''
}

/** The node namespace gets lo up and forwarding off, as a fresh host might have it. */
export async function makeNode(ns: Netns): Promise<void> {
  await run(['ip', '-n', ns.name, 'link', 'set', 'lo', 'up'])
  await run(['ip', 'netns', 'exec', ns.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=0'])
}
