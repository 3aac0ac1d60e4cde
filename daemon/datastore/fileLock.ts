// Mutual exclusion between processes sharing one state file, without flock (Node has none) and
// without a lock a crashed process can leave held.
//
// The right to turn generation G of the state file into G+1 is a *slot* file
// `<state>.lock.G.K`, created atomically with its content by link(2) (EEXIST = taken). A process
// takes the lowest K whose slot does not exist, passing over a slot only when its holder is
// certainly dead (processIdentity.ts). Slots are never deleted while the state is at G, so at
// most one live process holds a slot of G, and a dead holder is simply skipped, never "broken" —
// there is no window in which two breakers race to delete the same stale lock. After taking a
// slot the holder re-reads the state and goes ahead only if it is still at G: anyone who wrote
// it meanwhile has moved it to G+1. Slots of generations below the current one are garbage and
// removed after each commit.
import { randomBytes } from 'node:crypto'
import { link, readFile, readdir, stat, unlink, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { isProcessIdentity, liveness, selfIdentity, type Liveness, type ProcessIdentity } from './processIdentity.js'

const orphanAgeMs = 60_000

export type SlotAttempt = { held: true; slot: string } | { held: false; holder: ProcessIdentity; holderLiveness: Liveness; slot: string }

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code
}

export class GenerationLock {
  readonly dir: string
  private readonly base: string

  constructor(readonly statePath: string) {
    this.dir = dirname(statePath)
    this.base = basename(statePath)
  }

  slotPath(generation: number, k: number): string {
    return join(this.dir, `${this.base}.lock.${generation}.${k}`)
  }

  /** A name for a temporary file of this process next to the state file; the pid and start time in it let cleanup tell orphans. */
  tempPath(purpose: 'state' | 'holder'): string {
    const me = selfIdentity()
    return join(this.dir, `${this.base}.tmp-${purpose}-${me.pid}-${me.startTime}-${randomBytes(6).toString('hex')}`)
  }

  /**
   * Tries to take the slot of `generation` once; does not wait. Returns the slot held, or the
   * live (or undeterminable) holder in the way.
   */
  async tryAcquire(generation: number): Promise<SlotAttempt> {
    const holderFile = this.tempPath('holder')
    await writeFile(holderFile, JSON.stringify(selfIdentity()) + '\n', { mode: 0o600, flag: 'wx' })
    try {
      for (let k = 0; ; k++) {
        const slot = this.slotPath(generation, k)
        try {
          await link(holderFile, slot)
          return { held: true, slot }
        } catch (err) {
          if (errno(err) !== 'EEXIST') throw err
        }
        let holder: unknown
        try {
          holder = JSON.parse(await readFile(slot, 'utf8'))
        } catch (err) {
          // Removed meanwhile: its generation was passed, or its holder released it. Try it again.
          if (errno(err) === 'ENOENT') {
            k--
            continue
          }
          // Slots are born complete (link), so unreadable content was not written by a holder.
          if (err instanceof SyntaxError) continue
          throw err
        }
        if (!isProcessIdentity(holder)) continue
        const state = liveness(holder)
        if (state === 'dead') continue
        return { held: false, holder, holderLiveness: state, slot }
      }
    } finally {
      await unlink(holderFile).catch(() => undefined)
    }
  }

  async release(slot: string): Promise<void> {
    try {
      await unlink(slot)
    } catch (err) {
      // Already collected by a later committer: fine.
      if (errno(err) !== 'ENOENT') throw err
    }
  }

  /**
   * Removes slots of generations below `current` and temporary files of processes that are gone.
   * Safe at any time: a late process that still tries such a slot finds the state moved on when it
   * re-reads, and gives the slot up.
   */
  async collectGarbage(current: number): Promise<void> {
    const slotPrefix = `${this.base}.lock.`
    const tempPrefix = `${this.base}.tmp-`
    const me = selfIdentity()
    for (const name of await readdir(this.dir)) {
      let obsolete = false
      if (name.startsWith(slotPrefix)) {
        const generation = Number(name.slice(slotPrefix.length).split('.')[0])
        obsolete = Number.isSafeInteger(generation) && generation < current
      } else if (name.startsWith(tempPrefix)) {
        const [, pid, startTime] = name.slice(tempPrefix.length).split('-')
        // A temporary file lives for milliseconds; the age test also spares processes of another
        // pid namespace, whose pids we would misjudge.
        obsolete =
          pid !== undefined &&
          startTime !== undefined &&
          Number.isSafeInteger(Number(pid)) &&
          liveness({ pid: Number(pid), startTime, bootId: me.bootId, pidNs: me.pidNs }) === 'dead' &&
          (await stat(join(this.dir, name)).then(
            (s) => Date.now() - s.mtimeMs > orphanAgeMs,
            () => false,
          ))
      }
      if (obsolete) await unlink(join(this.dir, name)).catch(() => undefined)
    }
  }
}
