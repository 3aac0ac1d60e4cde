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
 * The flatnet range of the conflist on disk, if there is a readable one: the subnet pods on this
 * node may still hold addresses from, worth asking for again (ClaimRequest.preferSubnet).
 */
export async function readConflistSubnet(cniConfDir: string): Promise<string | undefined> {
  try {
    const doc = JSON.parse(await readFile(conflistPath(cniConfDir), 'utf8')) as { plugins?: Array<{ type?: unknown; ranges?: unknown }> }
    const ranges = doc.plugins?.find((p) => p.type === 'flatnet')?.ranges
    return Array.isArray(ranges) && typeof ranges[0] === 'string' ? ranges[0] : undefined
  } catch {
    return undefined // absent or not ours to judge: the claim simply takes the lowest free subnet
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
