// Writing files a container runtime may read at the same instant (the conflist, the installed
// plugin): the bytes go to a temp file in the same directory whose name libcni ignores (it loads
// only *.conf, *.conflist, *.json), are fsynced, the temp file is renamed over the target (atomic
// within a filesystem), then the directory is fsynced so the rename itself survives a crash.
// A reader sees the old file or the new one, never a mix.
import { constants } from 'node:fs'
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

export function errText(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message
}

/** `.10-flatnet.conflist.<pid>.tmp`: hidden, ends in .tmp, unique per process. */
function tempPathOf(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.tmp`)
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

export async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
}

/**
 * Makes `path` hold exactly `bytes` (and `mode`), atomically; does nothing when it already does
 * (same bytes: same inode, same mtime, no event for a runtime watching the directory).
 * True when it wrote.
 */
export async function writeFileAtomicIfChanged(path: string, bytes: Buffer | string, mode = 0o644): Promise<boolean> {
  const want = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes)
  const dir = dirname(path)
  const tmp = tempPathOf(path)
  try {
    const have = await readIfExists(path)
    if (have && have.equals(want) && ((await stat(path)).mode & 0o7777) === mode) return false
    await mkdir(dir, { recursive: true })
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, mode)
    try {
      await fh.writeFile(want)
      await fh.chmod(mode) // the umask may have narrowed the create mode
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
    await fsyncDir(dir)
    return true
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {})
    throw new Error(`write ${path}: ${errText(e)}`)
  }
}
