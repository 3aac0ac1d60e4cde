// This node's CNI network configuration file, written atomically (atomicFile.ts) and only when its
// bytes change, so a runtime watching the directory sees one event per real change.
import { readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { CONFLIST_FILE_NAME, renderConflist, type ConflistInput } from '../conf/conflist.js'
import { errText, fsyncDir, writeFileAtomicIfChanged } from './atomicFile.js'

export function conflistPath(cniConfDir: string): string {
  return join(cniConfDir, CONFLIST_FILE_NAME)
}

/**
 * The flatnet ranges of the conflist on disk, if there is a readable one (one per family): the
 * subnets pods on this node may still hold addresses from, worth asking for again (each range's
 * ClaimRange.preferSubnet). Empty when there is none.
 */
export async function readConflistSubnets(cniConfDir: string): Promise<string[]> {
  try {
    const doc = JSON.parse(await readFile(conflistPath(cniConfDir), 'utf8')) as { plugins?: Array<{ type?: unknown; ranges?: unknown }> }
    const ranges = doc.plugins?.find((p) => p.type === 'flatnet')?.ranges
    return Array.isArray(ranges) ? ranges.filter((r): r is string => typeof r === 'string') : []
  } catch {
    return [] // absent or not ours to judge: the claim simply takes the lowest free subnets
  }
}

/** Renders and writes this node's conflist; true when the file changed. */
export function writeConflist(cniConfDir: string, input: ConflistInput): Promise<boolean> {
  return writeFileAtomicIfChanged(conflistPath(cniConfDir), renderConflist(input))
}

/** Removes the conflist (uninstall); true when there was one. */
export async function removeConflist(cniConfDir: string): Promise<boolean> {
  const path = conflistPath(cniConfDir)
  try {
    await unlink(path)
    await fsyncDir(cniConfDir)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw new Error(`remove ${path}: ${errText(e)}`)
  }
}
