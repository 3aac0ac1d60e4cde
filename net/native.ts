// Loads the netns addon. Built binaries find it in dist/lib (beside dist/bin, see
// scripts/bundle.mjs); tests and tools running from source find it in the node-gyp build folder.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface PeerCredentials {
  pid: number
  uid: number
  gid: number
}

export interface NetnsAddon {
  setns(fd: number, nstype: number): void
  /** flock(fd, LOCK_EX [| LOCK_NB unless wait]): true when held, false when busy and not waiting. */
  flock(fd: number, wait: boolean): boolean
  /** SO_PEERCRED of a connected unix socket. */
  peerCredentials(fd: number): PeerCredentials
  /**
   * One frame (u32 little-endian length, then that many bytes) and the descriptors passed with it
   * (SCM_RIGHTS), read on a pool thread. Rejects with .code ETIMEDOUT, E2BIG (announced length
   * over maxBytes), ECONNRESET (peer closed early), EPROTO (descriptors truncated); descriptors
   * received before a failure are closed.
   */
  receiveFrame(fd: number, maxBytes: number, timeoutMs: number): Promise<{ body: Buffer; fds: number[] }>
  CLONE_NEWNET: number
}

let addon: NetnsAddon | undefined

export function netnsAddon(): NetnsAddon {
  if (addon) return addon
  const here = dirname(fileURLToPath(import.meta.url))
  const candidates = process.env.FLATNET_BUNDLED ? [join(here, '..', 'lib', 'netns.node')] : [join(here, 'addon', 'build', 'Release', 'netns.node'), join(here, '..', 'lib', 'netns.node')]
  const found = candidates.find((p) => existsSync(p))
  if (!found) throw new Error(`load netns addon: not found at ${candidates.join(' or ')} (run ./build.sh)`)
  addon = createRequire(import.meta.url)(found) as NetnsAddon
  return addon
}
