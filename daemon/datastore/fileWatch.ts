// Watching one shared state file, for the file node store (file.ts) and the file object store
// (../objects/fileStore.ts): inotify on its directory (a rename replaces the file, so the file
// itself cannot be watched) plus a poll, because inotify can miss events; looks run one at a time
// and a change during a look causes exactly one more; each distinct failure is reported once.

import { watch as watchDir, type FSWatcher } from 'node:fs'
import { dirname } from 'node:path'

export interface FileWatchOptions {
  path: string
  pollIntervalMs: number
  /** Reads the file and delivers what changed; `stopped()` is true once the watch is stopped (deliver nothing then). */
  look(stopped: () => boolean): Promise<void>
  onError(err: Error): void
  /** The store's own error for a directory that cannot be watched (then only the poll runs). */
  watchError(message: string, cause: unknown): Error
}

function errnoText(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message
}

/** Starts watching; returns the function that stops it. */
export function watchStateFile(o: FileWatchOptions): () => void {
  let stopped = false
  let running = false
  let rerun = false
  let failed: string | undefined
  const isStopped = () => stopped

  const check = async (): Promise<void> => {
    if (running) {
      rerun = true
      return
    }
    running = true
    try {
      do {
        rerun = false
        try {
          await o.look(isStopped)
          failed = undefined
        } catch (err) {
          // Report each broken state once, not on every poll; keep looking.
          const text = (err as Error).message
          if (text !== failed && !stopped) {
            failed = text
            o.onError(err as Error)
          }
        }
      } while (rerun && !stopped)
    } finally {
      running = false
    }
  }

  let watcher: FSWatcher | undefined
  const base = o.path.slice(o.path.lastIndexOf('/') + 1)
  const message = (err: unknown) => `watch directory of ${o.path}: ${errnoText(err)}; polling every ${o.pollIntervalMs} ms`
  try {
    watcher = watchDir(dirname(o.path), { persistent: false }, (_event, filename) => {
      if (filename === null || filename === base) void check()
    })
    watcher.on('error', (err) => {
      if (!stopped) o.onError(o.watchError(message(err), err))
      watcher?.close()
    })
  } catch (err) {
    o.onError(o.watchError(message(err), err))
  }
  const timer = setInterval(() => void check(), o.pollIntervalMs)
  timer.unref()
  void check()
  return () => {
    stopped = true
    clearInterval(timer)
    watcher?.close()
  }
}
