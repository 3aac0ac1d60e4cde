// The lab lock: one command at a time changes a lab, and `lab up` is refused outright while
// another command holds it, before it creates anything.
//
// The lock is an flock(2) on `<lab dir>/lab.lock`. The kernel ties such a lock to the open file
// description and drops it when the last descriptor closes — also when the holder is SIGKILLed —
// so a crashed command never leaves a lab locked, and no pid is ever guessed alive or dead. Node
// has no flock(), so flock(1) (util-linux, essential on Debian) locks the descriptor this process
// passes it as fd 3: the lock belongs to the shared description and stays after flock(1) exits,
// held by this process's descriptor alone.
//
// The file also carries an owner record (pid, operation, since) for the refusal message; it is
// written right after the lock is taken and emptied before it is let go.
import { spawn } from 'node:child_process'
import { closeSync, constants, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs'
import type { LabLayout } from './layout.js'
import { sleep } from './exec.js'
import { LabMissingError } from './state.js'

export interface LockOwner {
  pid: number
  /** The lab command holding the lock, e.g. "lab up". */
  operation: string
  /** ISO time the lock was taken. */
  since: string
}

/** The lab is locked by a live command: `lab up` is refused, others gave up waiting. */
export class LabBusyError extends Error {
  constructor(
    readonly lab: string,
    readonly operation: string,
    readonly owner: LockOwner | undefined,
    waitedMs: number,
  ) {
    const holder = owner ? `pid ${owner.pid} (${owner.operation}, since ${owner.since})` : 'another process (it has not recorded itself yet)'
    super(
      waitedMs > 0
        ? `${operation} ${lab}: lab ${lab} is still in use by ${holder} after waiting ${Math.round(waitedMs / 1000)} s`
        : `${operation} ${lab}: refused, lab ${lab} is in use by ${holder}; nothing was changed`,
    )
  }
}

// flock(1) exits with this when the lock is taken by someone else (-n) or the wait ran out (-w).
const CONFLICT_EXIT = 75

/** flock(LOCK_EX) on `fd` through flock(1): true when taken, false when held elsewhere. */
function flockDescriptor(fd: number, file: string, waitMs: number): Promise<boolean> {
  const mode = waitMs > 0 ? ['--timeout', String(waitMs / 1000)] : ['--nonblock']
  return new Promise((resolve, reject) => {
    const child = spawn('flock', ['--exclusive', ...mode, '--conflict-exit-code', String(CONFLICT_EXIT), '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] })
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    child.on('error', (err) => reject(new Error(`lock ${file}: run flock (util-linux): ${err.message}`)))
    child.on('close', (code) => {
      if (code === 0) resolve(true)
      else if (code === CONFLICT_EXIT) resolve(false)
      else reject(new Error(`lock ${file}: flock exited with ${code}: ${stderr.trim()}`))
    })
  })
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const doc = JSON.parse(text) as Partial<LockOwner>
    if (Number.isSafeInteger(doc.pid) && typeof doc.operation === 'string' && typeof doc.since === 'string') return doc as LockOwner
  } catch {
    // empty or half-written: no record
  }
  return undefined
}

/**
 * Who holds the lab's lock, from its record. The holder writes the record a moment after it takes
 * the lock, and a SIGKILLed holder leaves its record behind: a missing record or one of a dead
 * pid is read again for a short while before giving up on naming the holder.
 */
async function readOwner(layout: LabLayout): Promise<LockOwner | undefined> {
  for (let attempt = 0; attempt < 10; attempt++) {
    let text = ''
    try {
      text = readFileSync(layout.lockFile, 'utf8')
    } catch {
      return undefined
    }
    const owner = parseOwner(text)
    if (owner && alive(owner.pid)) return owner
    await sleep(50)
  }
  return undefined
}

/** True when `fd` is still the file at `path` (lab down unlinks the lock with the lab directory). */
function stillThere(fd: number, path: string): boolean {
  try {
    const open = fstatSync(fd)
    const now = statSync(path)
    return open.ino === now.ino && open.dev === now.dev
  } catch {
    return false
  }
}

export interface LockOptions {
  /** How long to wait for another holder; 0: refuse at once. */
  waitMs: number
  /** Make the lab directory if it does not exist (lab up); otherwise a missing lab is an error. */
  create: boolean
}

/** A held lab lock; release() lets it go (idempotent). */
export class LabLock {
  private fd: number | undefined
  constructor(fd: number) {
    this.fd = fd
  }

  release(): void {
    if (this.fd === undefined) return
    // Empty the record while still holding the lock, so a record read later is a live holder's.
    try {
      ftruncateSync(this.fd, 0)
    } catch {
      // the file may be gone with the lab directory: nothing to empty
    }
    closeSync(this.fd)
    this.fd = undefined
  }
}

/** Takes the lab's lock for `operation`, or throws LabBusyError naming the holder. */
export async function acquireLabLock(layout: LabLayout, operation: string, options: LockOptions): Promise<LabLock> {
  const started = Date.now()
  for (;;) {
    if (options.create) mkdirSync(layout.dir, { recursive: true })
    let fd: number
    try {
      fd = openSync(layout.lockFile, constants.O_RDWR | constants.O_CREAT, 0o644)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new LabMissingError(layout)
      throw new Error(`${operation} ${layout.name}: open lock ${layout.lockFile}: ${(err as Error).message}`)
    }
    let taken: boolean
    try {
      taken = await flockDescriptor(fd, layout.lockFile, options.waitMs > 0 ? Math.max(1, options.waitMs - (Date.now() - started)) : 0)
    } catch (err) {
      closeSync(fd)
      throw err
    }
    if (!taken) {
      closeSync(fd)
      throw new LabBusyError(layout.name, operation, await readOwner(layout), options.waitMs > 0 ? Date.now() - started : 0)
    }
    // A lock on a file that `lab down` unlinked while we waited guards nothing: take the new one.
    if (!stillThere(fd, layout.lockFile)) {
      closeSync(fd)
      if (!options.create && !existsDir(layout.dir)) throw new LabMissingError(layout)
      continue
    }
    const owner: LockOwner = { pid: process.pid, operation, since: new Date().toISOString() }
    ftruncateSync(fd, 0)
    writeSync(fd, JSON.stringify(owner) + '\n', 0)
    return new LabLock(fd)
  }
}

function existsDir(path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

/** Runs `fn` holding the lab's lock; the lock goes when fn settles (or this process dies). */
export async function withLabLock<T>(layout: LabLayout, operation: string, fn: () => Promise<T>, options: LockOptions = { waitMs: 120_000, create: false }): Promise<T> {
  const lock = await acquireLabLock(layout, operation, options)
  try {
    return await fn()
  } finally {
    lock.release()
  }
}
