// What the plugins chained after flatnet can do on this node. A runtime gives every plugin of a
// list the list's cniVersion, and a plugin that does not speak it fails the whole ADD (Debian 12's
// portmap stops at 1.0.0). So before writing the conflist flatnetd asks the portmap the runtime
// would run — the first one on the runtime's CNI_PATH — which versions it speaks.
import { execFile } from 'node:child_process'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'

export interface ProbedPlugin {
  path: string
  supportedVersions: string[]
}

interface CacheEntry {
  path: string
  mtimeMs: number
  size: number
  result: ProbedPlugin
}

/** Remembers answers per binary, asked again only when the file changes (an upgrade). */
export class ChainedPluginProbe {
  private readonly cache = new Map<string, CacheEntry>()

  constructor(
    private readonly searchPath: readonly string[],
    private readonly timeoutMs = 5000,
  ) {}

  /** The plugin's supportedVersions, or 'absent' when no executable of that type is on the path. */
  async versions(type: string): Promise<string[] | 'absent'> {
    const found = await this.find(type)
    if (!found) return 'absent'
    const cached = this.cache.get(type)
    if (cached && cached.path === found.path && cached.mtimeMs === found.mtimeMs && cached.size === found.size) return cached.result.supportedVersions
    const result = await askVersion(found.path, this.timeoutMs)
    this.cache.set(type, { ...found, result })
    return result.supportedVersions
  }

  private async find(type: string): Promise<{ path: string; mtimeMs: number; size: number } | undefined> {
    for (const dir of this.searchPath) {
      const path = join(dir, type)
      try {
        const st = await stat(path)
        if (st.isFile() && (st.mode & 0o111) !== 0) return { path, mtimeMs: st.mtimeMs, size: st.size }
      } catch {
        // not in this directory
      }
    }
    return undefined
  }
}

/** Runs `<plugin>` with CNI_COMMAND=VERSION (argument array, no shell) and parses its answer. */
export function askVersion(path: string, timeoutMs: number): Promise<ProbedPlugin> {
  return new Promise((resolve, reject) => {
    const child = execFile(path, [], { env: { CNI_COMMAND: 'VERSION', PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' }, timeout: timeoutMs, maxBuffer: 64 * 1024 }, (err, stdout) => {
      if (err) return reject(new Error(`ask ${path} for its CNI versions: ${err.message.split('\n')[0]}`))
      try {
        const doc = JSON.parse(stdout) as { supportedVersions?: unknown }
        const versions = doc.supportedVersions
        if (!Array.isArray(versions) || versions.some((v) => typeof v !== 'string')) throw new Error('no supportedVersions list')
        resolve({ path, supportedVersions: versions as string[] })
      } catch (e) {
        reject(new Error(`ask ${path} for its CNI versions: unreadable answer ${JSON.stringify(stdout.slice(0, 200))}: ${(e as Error).message}`))
      }
    })
    // VERSION needs no config. The plugin may exit before reading its stdin: a write, or even
    // the close, can then fail with EPIPE, which must not become an unhandled error event.
    child.stdin?.on('error', () => undefined)
    child.stdin?.end()
  })
}
