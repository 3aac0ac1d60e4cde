// Calls for one container are serialized. The spec forbids concurrent ADD and DEL of one
// container, yet runtimes send a DEL while the ADD they gave up on (a timeout) still runs: DEL
// could delete the veth before ADD made it and release the address after ADD took it, leaving a
// wired pod with no reservation — an address handed out twice later. Each ADD, CHECK and DEL
// holds an exclusive flock(2) on a file chosen by the container ID; the kernel drops it when the
// holder exits, however it exits (SIGKILL included), so a crashed call never blocks the next.
// 256 files in /run/flatnet/locks (tmpfs: a lock means nothing after a reboot, and the data dir
// stays exactly the store), never removed — removing a lock file races with a waiter holding the
// old inode. Unrelated containers rarely share one, and then only wait for one call.
import { closeSync, constants, mkdirSync, openSync } from 'node:fs'
import { join } from 'node:path'
import { netnsAddon } from '../net/native.js'
import { sha256Hex } from './sha256.js'

/** Runs `fn` holding the container's lock; proceeds unlocked when the lock file cannot be opened. */
export const LOCK_DIR = '/run/flatnet/locks'

export async function withContainerLock<T>(containerId: string, onUnlocked: (why: string) => void, fn: () => Promise<T>): Promise<T> {
  const dir = LOCK_DIR
  const path = join(dir, sha256Hex(containerId).slice(0, 2))
  let fd: number | undefined
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    fd = openSync(path, constants.O_RDONLY | constants.O_CREAT, 0o600)
  } catch (e) {
    // An unwritable /run: serving the call unserialized beats refusing every pod.
    onUnlocked(`lock ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    return fn()
  }
  try {
    // Never a blocking flock: flatnetd serves calls on one thread (the fast path), where a call
    // blocked on a lock held by another call of the same process would stop the very event loop
    // that call needs to finish — the whole daemon would hang. Polled instead, 1 ms doubling to 20.
    for (let delayMs = 1; !netnsAddon().flock(fd, false); delayMs = Math.min(delayMs * 2, 20)) {
      await new Promise((resolve) => setTimeout(resolve, delayMs))
    }
    return await fn()
  } finally {
    closeSync(fd)
  }
}
