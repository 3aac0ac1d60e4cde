// Who holds a lock of the file datastore, and whether that process still exists. A pid alone is
// not enough: pids are reused, so the identity also carries the process start time (field 22 of
// /proc/PID/stat, clock ticks since boot), the boot id (a lock file on disk survives a reboot)
// and the pid namespace (a pid means nothing in another one).
import { readFileSync, readlinkSync } from 'node:fs'

export interface ProcessIdentity {
  pid: number
  /** /proc/PID/stat field 22. */
  startTime: string
  /** /proc/sys/kernel/random/boot_id. */
  bootId: string
  /** readlink /proc/self/ns/pid, e.g. `pid:[4026531836]`. */
  pidNs: string
}

/** alive: exists; dead: certainly gone; unknown: cannot tell from here (other pid namespace). */
export type Liveness = 'alive' | 'dead' | 'unknown'

function procStat(pid: number): { state: string; startTime: string } | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) may contain spaces and parentheses; fields after the last ')' do not.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const state = fields[0]
  const startTime = fields[19]
  if (state === undefined || startTime === undefined) return undefined
  return { state, startTime }
}

let self: ProcessIdentity | undefined

export function selfIdentity(): ProcessIdentity {
  if (self && self.pid === process.pid) return self
  const stat = procStat(process.pid)
  if (!stat) throw new Error(`read /proc/${process.pid}/stat: cannot identify this process`)
  self = {
    pid: process.pid,
    startTime: stat.startTime,
    bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
    pidNs: readlinkSync('/proc/self/ns/pid'),
  }
  return self
}

export function isProcessIdentity(value: unknown): value is ProcessIdentity {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return Number.isSafeInteger(v.pid) && typeof v.startTime === 'string' && typeof v.bootId === 'string' && typeof v.pidNs === 'string'
}

export function liveness(holder: ProcessIdentity): Liveness {
  const me = selfIdentity()
  // The file datastore is single-host by contract, so another boot id means this host rebooted
  // since the holder wrote it: the holder is gone.
  if (holder.bootId !== me.bootId) return 'dead'
  if (holder.pidNs !== me.pidNs) return 'unknown'
  const stat = procStat(holder.pid)
  if (!stat || stat.startTime !== holder.startTime) return 'dead'
  // A zombie has exited; it only waits for its parent to reap it.
  if (stat.state === 'Z' || stat.state === 'X') return 'dead'
  return 'alive'
}
