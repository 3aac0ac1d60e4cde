// The lab's network namespaces and the processes inside them. A process the lab started (a
// flatnetd, etcd, a probe) always runs inside one of the lab's namespaces, so "the processes of
// the lab" are exactly the processes in `fnlab-<lab>-*` namespaces: that is how `lab down` finds
// them after a crash, and how a pid read from a file is checked before it is signalled.
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs'
import { run, runOk, sleep } from './exec.js'

export function netnsPath(name: string): string {
  return `/run/netns/${name}`
}

export async function addNetns(name: string): Promise<void> {
  await runOk(['ip', 'netns', 'add', name], { what: `create network namespace ${name}` })
  await runOk(['ip', '-n', name, 'link', 'set', 'lo', 'up'], { what: `bring up lo in ${name}` })
}

export async function listNetns(prefix: string): Promise<string[]> {
  const result = await runOk(['ip', 'netns', 'list'], { what: 'list network namespaces' })
  // Lines look like "name" or "name (id: 3)".
  return result.stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(prefix))
}

export async function pidsInNetns(name: string): Promise<number[]> {
  const result = await run(['ip', 'netns', 'pids', name])
  if (result.code !== 0) return []
  return result.stdout
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((pid) => Number.isSafeInteger(pid) && pid > 0)
}

/** True when `pid` exists and lives in network namespace `name`: guards every signal we send. */
export function pidInNetns(pid: number, name: string): boolean {
  try {
    const want = statSync(netnsPath(name))
    // /proc/PID/ns/net reads "net:[inode]"; the bind mount under /run/netns has that inode.
    const link = readlinkSync(`/proc/${pid}/ns/net`)
    return link === `net:[${want.ino}]`
  } catch {
    return false
  }
}

export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return true
  }
  // A zombie (our own child not yet reaped) has exited all the same — once all its threads have.
  // The leader of a multi-threaded process (Node's) turns zombie as soon as its own thread dies,
  // while the others are still exiting and the process's sockets still open: a flatnetd restarted
  // then failed with EADDRINUSE on its health port.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    if (state !== 'Z' && state !== 'X') return false
    return readdirSync(`/proc/${pid}/task`).length <= 1
  } catch {
    return true
  }
}

/** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs: number): Promise<'exited' | 'killed'> {
  try {
    process.kill(pid, 'SIGTERM')
  } catch {
    return 'exited'
  }
  const deadline = Date.now() + graceMs
  while (Date.now() < deadline) {
    if (processGone(pid)) return 'exited'
    await sleep(20)
  }
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    return 'exited'
  }
  while (!processGone(pid)) await sleep(10)
  return 'killed'
}

/**
 * Deletes a namespace of the lab: its processes get SIGTERM (daemons leave cleanly), then
 * SIGKILL; then the namespace goes. Idempotent.
 */
export async function deleteNetns(name: string, graceMs = 2000): Promise<void> {
  const pids = await pidsInNetns(name)
  await Promise.all(pids.map((pid) => stopProcess(pid, graceMs)))
  const del = await run(['ip', 'netns', 'del', name])
  if (del.code !== 0 && !/No such file or directory/.test(del.stderr)) {
    throw new Error(`delete network namespace ${name}: ${del.stderr.trim()}`)
  }
}
