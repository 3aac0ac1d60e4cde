// Network sysctls through /proc/sys. /proc/sys/net shows the namespace of the calling thread
// (checked on this project's kernels: a thread switched by setns sees the new namespace there), so a daemon started inside a namespace reads and writes that namespace's values.
import { readFile, writeFile } from 'node:fs/promises'

function pathOf(key: string): string {
  if (!/^net\.[A-Za-z0-9_.-]+$/.test(key) || key.includes('..')) throw new Error(`sysctl ${key}: not a net.* key`)
  return `/proc/sys/${key.replaceAll('.', '/')}`
}

export async function readSysctl(key: string): Promise<string> {
  try {
    return (await readFile(pathOf(key), 'utf8')).trim()
  } catch (e) {
    throw new Error(`read sysctl ${key}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
}

/** Writes value unless the key already holds it; true when it changed something. */
export async function ensureSysctl(key: string, value: string): Promise<boolean> {
  if ((await readSysctl(key)) === value) return false
  try {
    await writeFile(pathOf(key), value)
  } catch (e) {
    throw new Error(`set sysctl ${key}=${value}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  return true
}
