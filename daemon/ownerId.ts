// The daemon's owner id: a random identity created once and kept in <state-dir>/owner-id. The
// datastore hands a node's subnet back to the same owner after a restart and refuses it to any
// other live owner, so two daemons mistakenly started with one node name cannot share a subnet.
import { randomUUID } from 'node:crypto'
import { link, mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { errText, fsyncDir, writeFileAtomicIfChanged } from './atomicFile.js'

export const OWNER_ID_FILE = 'owner-id'

function check(path: string, text: string): string {
  const id = text.trim()
  if (id === '' || id.length > 256 || !/^[\x21-\x7e]+$/.test(id)) {
    throw new Error(
      `read owner id ${path}: expected one line of up to 256 printable characters, found ${JSON.stringify(text.slice(0, 80))}; remove the file to get a new identity (the node then needs \`flatnetctl node remove\` to be claimed again)`,
    )
  }
  return id
}

/** Reads the owner id, creating it (0600) on first start. Safe against a concurrent first start. */
export async function loadOwnerId(stateDir: string): Promise<string> {
  const path = join(stateDir, OWNER_ID_FILE)
  try {
    return check(path, await readFile(path, 'utf8'))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e instanceof Error && e.message.startsWith('read owner id') ? e : new Error(`read owner id ${path}: ${errText(e)}`)
  }
  // Written whole to a temp file, then hard-linked into place: link() fails if the name exists,
  // so the file appears complete or not at all, and the first of two racing starts wins.
  const tmp = join(stateDir, `.${OWNER_ID_FILE}.${process.pid}.tmp`)
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o700 })
    await writeFileAtomicIfChanged(tmp, `${randomUUID()}\n`, 0o600)
    try {
      await link(tmp, path)
      await fsyncDir(stateDir)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
  } catch (e) {
    throw new Error(`create owner id ${path}: ${errText(e)}`)
  } finally {
    await rm(tmp, { force: true })
  }
  return check(path, await readFile(path, 'utf8'))
}
