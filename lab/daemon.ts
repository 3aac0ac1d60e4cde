// One real flatnetd per lab node, running inside the node's namespace (its "host"), with that
// node's own directories, logging to a file. Started detached: the daemons outlive the
// `flatnetctl lab up` that started them, like daemons on real nodes.
import { spawn } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises'
import { flatnetBinary } from './binaries.js'
import { readConflist, SYSTEM_CNI_BIN_DIR } from './cniRuntime.js'
import { cleanEnvArgv, inNetns, nodeBinary, sleep } from './exec.js'
import { nodeLayout, type LabLayout } from './layout.js'
import { pidInNetns, processGone, stopProcess } from './namespaces.js'
import { httpGetInNetns } from './probeAgent.js'
import type { LabDatastore, LabNode } from './state.js'

/** Where flatnetd serves /readyz: its default, on the node namespace's own loopback. */
export const DAEMON_HEALTH_URL = 'http://127.0.0.1:9473'

export interface DaemonSettings {
  /** --cluster-cidr: one range per family, primary first. */
  clusterCidrs: readonly string[]
  /** --service-cidr: one range per family, primary first. */
  serviceCidrs: readonly string[]
  /** --node-ip, one per family in the same order; absent: flatnetd detects it. */
  nodeIPs?: readonly string[]
  datastore: LabDatastore
  logLevel?: string
  /** --backend; absent: not passed (the daemon's default, auto). */
  backend?: string
}

/**
 * The flags of one node's flatnetd (see the daemon contract). Node subnet sizes are flatnetd's
 * defaults per family (/24 of an IPv4 range, /64 of an IPv6 one, as kube-controller-manager).
 */
export function daemonFlags(lab: LabLayout, node: LabNode, settings: DaemonSettings): string[] {
  const dirs = nodeLayout(lab, node.name)
  const flags = [
    '--node-name',
    node.name,
    '--cluster-cidr',
    settings.clusterCidrs.join(','),
    '--service-cidr',
    settings.serviceCidrs.join(','),
    ...(settings.nodeIPs ? ['--node-ip', settings.nodeIPs.join(',')] : []),
    '--state-dir',
    dirs.stateDir,
    '--cni-conf-dir',
    dirs.cniConfDir,
    '--cni-bin-dir',
    dirs.cniBinDir,
    // the lab's runtime looks plugins up here (pods.ts), so the daemon probes portmap here too
    '--cni-path',
    `${dirs.cniBinDir}:${SYSTEM_CNI_BIN_DIR}`,
    '--install-cni-binary',
    flatnetBinary('flatnet'),
    '--ipam-data-dir',
    dirs.ipamDir,
    // each node's own socket: the lab's nodes share one host's /run
    '--cni-socket',
    dirs.cniSocket,
    '--log-level',
    settings.logLevel ?? 'info',
    ...(settings.backend ? ['--backend', settings.backend] : []),
  ]
  if (settings.datastore.kind === 'file') flags.push('--datastore', 'file', '--datastore-file', settings.datastore.path)
  else flags.push('--datastore', 'etcd', '--etcd-endpoints', settings.datastore.endpoints.join(','))
  return flags
}

export async function startDaemon(lab: LabLayout, node: LabNode, settings: DaemonSettings): Promise<number> {
  const dirs = nodeLayout(lab, node.name)
  for (const dir of [dirs.cniConfDir, dirs.cniBinDir, dirs.ipamDir, dirs.stateDir]) await mkdir(dir, { recursive: true })
  const argv = cleanEnvArgv({}, inNetns(node.netns, [nodeBinary, flatnetBinary('flatnetd'), ...daemonFlags(lab, node, settings)]))
  const log = openSync(dirs.log, 'a')
  try {
    // env -i and ip netns exec both exec(), so the pid we get is flatnetd's own.
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log] })
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (err) => reject(new Error(`start flatnetd of ${node.name}: ${err.message}`)))
      child.once('spawn', () => resolve(child.pid!))
    })
    child.unref()
    await writeFile(dirs.pidFile, `${pid}\n`)
    return pid
  } finally {
    closeSync(log)
  }
}

/** True when the node's recorded flatnetd is alive inside the node's namespace. */
export function daemonRunning(node: LabNode): boolean {
  return node.daemonPid !== undefined && !processGone(node.daemonPid) && pidInNetns(node.daemonPid, node.netns)
}

/** Stops the node's daemon: SIGTERM (it must leave within 2 s, routes in place) or SIGKILL. */
export async function stopDaemon(lab: LabLayout, node: LabNode, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<'exited' | 'killed' | 'not running'> {
  const dirs = nodeLayout(lab, node.name)
  if (!daemonRunning(node)) {
    await unlink(dirs.pidFile).catch(() => undefined)
    return 'not running'
  }
  const pid = node.daemonPid!
  let outcome: 'exited' | 'killed'
  if (signal === 'SIGKILL') {
    process.kill(pid, 'SIGKILL')
    while (!processGone(pid)) await sleep(10)
    outcome = 'killed'
  } else {
    outcome = await stopProcess(pid, 5000)
  }
  await unlink(dirs.pidFile).catch(() => undefined)
  return outcome
}

export async function daemonLogTail(lab: LabLayout, nodeName: string, lines = 15): Promise<string> {
  const text = await readFile(nodeLayout(lab, nodeName).log, 'utf8').catch(() => '')
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}

/**
 * Waits until the node's flatnetd says it is ready (/readyz 200: subnets held, conflist written,
 * routes reconciled) and returns the node's subnets from the conflist it wrote (its `ranges`, one
 * per cluster range). A daemon that dies or stays unready is an error quoting the end of its log.
 */
export async function waitDaemonReady(lab: LabLayout, node: LabNode, timeoutMs: number): Promise<string[]> {
  const dirs = nodeLayout(lab, node.name)
  const deadline = Date.now() + timeoutMs
  let last = 'no conflist yet'
  for (;;) {
    // Only "gone" counts here: right after the spawn the pid may still be `env`/`ip netns exec`,
    // not yet inside the node's namespace.
    if (node.daemonPid === undefined || processGone(node.daemonPid)) {
      throw new Error(`flatnetd of ${node.name} exited; end of ${dirs.log}:\n${await daemonLogTail(lab, node.name)}`)
    }
    // The conflist is cheap to look at; /readyz costs a process start in the namespace.
    if (existsSync(dirs.conflist)) {
      const answer = await httpGetInNetns(node.netns, `${DAEMON_HEALTH_URL}/readyz`)
      if (answer.status === 200) {
        const list = await readConflist(dirs.conflist)
        const ranges = list.plugins.find((p) => p.type === 'flatnet')?.ranges
        if (!Array.isArray(ranges) || ranges.length === 0 || ranges.some((r) => typeof r !== 'string')) {
          throw new Error(`flatnetd of ${node.name} wrote ${dirs.conflist} without flatnet plugin ranges`)
        }
        return ranges as string[]
      }
      last = answer.error ? `GET /readyz: ${answer.error}` : `/readyz ${answer.status}: ${answer.body.trim()}`
    }
    if (Date.now() > deadline) {
      if (!existsSync(dirs.conflist)) {
        // Its own word on why, when it says anything.
        const answer = await httpGetInNetns(node.netns, `${DAEMON_HEALTH_URL}/readyz`)
        if (answer.status) last = `no conflist; /readyz ${answer.status}: ${answer.body.trim()}`
      }
      throw new Error(`flatnetd of ${node.name} not ready after ${timeoutMs} ms (${last}); end of ${dirs.log}:\n${await daemonLogTail(lab, node.name)}`)
    }
    await sleep(150)
  }
}
