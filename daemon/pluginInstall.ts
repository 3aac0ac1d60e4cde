// Installing the flatnet plugin into the CNI bin dir (--install-cni-binary).
//
// A runtime may execute <bin>/flatnet at any instant, also while a new version is being installed.
// Replacing the plugin's files one by one in place let a run start with the new script and the
// old native modules (or the reverse). So every version is installed complete, beside the others,
// in a directory named after its content, and the switch is one rename of a symlink:
//   <bin>/flatnet.bundle/<id>/{bin/flatnet, lib/*.node, package.json}
//   <bin>/flatnet -> flatnet.bundle/<id>/bin/flatnet
// A run resolves the symlink once, when it starts (Node loads the script by its real path and its
// natives from ../lib beside that), so it runs one version throughout. The bundled plugin needs a
// package.json saying CommonJS above it (scripts/bundle.mjs). The whole install lives inside the
// bin dir, so it also works when the daemon runs in a container that mounts only that directory.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { closeSync, constants, openSync, readSync } from 'node:fs'
import { mkdir, open, readFile, readdir, readlink, rename, rm, stat, symlink, unlink } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { errText, fsyncDir } from './atomicFile.js'

export const PLUGIN_NAME = 'flatnet'
// dist/bin/flatnet is the native CNI entry; the Node plugin it falls back to sits beside it under
// this name (plugin/entry/flatnet.c finds it next to its own real path).
const FALLBACK_NAME = 'flatnet-node'
// Not flatnet.d/: that is the self-contained package's (deploy/install-cni.sh), which carries
// its own Node; the two installs must never remove each other's files.
const INSTALL_DIR = 'flatnet.bundle'
/** A version's directory name: 16 hex digits of the sha256 of its files. */
const VERSION_NAME = /^[0-9a-f]{16}$/
/** The layout before versions had directories (<bin>/flatnet.bundle/{bin,lib,package.json}). */
const LEGACY_ENTRIES = ['bin', 'lib', 'package.json']
/** An installer that died leaves its temp directory; one this old is no concurrent installer's. */
const STALE_TEMP_MS = 10 * 60_000

export interface InstallResult {
  /** Paths written (empty when this version was already installed and in use). */
  written: string[]
  /** The installed version's directory name (content hash). */
  version: string
  /** Old versions' directories removed. */
  removed: string[]
}

interface BundleFile {
  /** Path inside a version directory. */
  path: string
  bytes: Buffer
  mode: number
}

const linkTarget = (version: string) => join(INSTALL_DIR, version, 'bin', PLUGIN_NAME)

/** The version a `flatnet` symlink of ours points to: an id, 'legacy' (the old layout), or undefined (not ours). */
function versionOfTarget(target: string | undefined): string | undefined {
  if (target === join(INSTALL_DIR, 'bin', PLUGIN_NAME)) return 'legacy'
  const m = /^flatnet\.bundle\/([0-9a-f]{16})\/bin\/flatnet$/.exec(target ?? '')
  return m?.[1]
}

async function readLinkIfAny(path: string): Promise<string | undefined> {
  try {
    return await readlink(path)
  } catch {
    return undefined // absent, or a regular file (not ours, or an install older than the symlink)
  }
}

async function writeSynced(path: string, bytes: Buffer, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 })
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode)
  try {
    await fh.writeFile(bytes)
    await fh.chmod(mode) // the umask may have narrowed the create mode
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** True when `dir` holds exactly these files with these bytes and modes. */
async function holdsExactly(dir: string, files: readonly BundleFile[]): Promise<boolean> {
  try {
    for (const f of files) {
      const path = join(dir, f.path)
      if (((await stat(path)).mode & 0o7777) !== f.mode || !(await readFile(path)).equals(f.bytes)) return false
    }
    const natives = (await readdir(join(dir, 'lib'))).length
    return natives === files.filter((f) => f.path.startsWith('lib/')).length
  } catch {
    return false
  }
}

/** The plugin answers VERSION: an artifact that does not run here is never switched to. */
function isElf(path: string): boolean {
  const fd = openSync(path, 'r')
  try {
    const head = Buffer.alloc(4)
    return readSync(fd, head, 0, 4, 0) === 4 && head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))
  } finally {
    closeSync(fd)
  }
}

function answersVersion(binary: string): Promise<string | undefined> {
  return new Promise((resolvePromise) => {
    // A Node plugin runs with this process's own Node: the script's `#!/usr/bin/env node` depends
    // on a PATH the daemon's may not share with the runtime's; the script and its natives are what
    // is judged. The native entry (an ELF file) runs itself, pointed at a socket that does not
    // exist so it takes its Node fallback, with this Node's directory first on PATH.
    // stdin is closed at once: the plugin reads its network config from stdin to the end, VERSION too.
    const native = isElf(binary)
    const [file, args] = native ? [binary, []] : [process.execPath, [binary]]
    const env = { CNI_COMMAND: 'VERSION', PATH: `${dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`, ...(native ? { FLATNET_CNI_SOCKET: `${binary}.no-daemon` } : {}) }
    const child = execFile(file, [...args], { env, timeout: 30_000, maxBuffer: 64 * 1024 }, (err, stdout, stderr) => {
      if (err) return resolvePromise(`${errText(err)}${stderr ? `: ${stderr.trim().replace(/\s+/g, ' ').slice(0, 300)}` : ''}`)
      resolvePromise(stdout.includes('"supportedVersions"') ? undefined : `answered ${JSON.stringify(stdout.slice(0, 300))}`)
    })
    child.stdin?.end()
  })
}

/** Installs the plugin binary `source` (with `<dirname(source)>/../lib/*.node`) into cniBinDir. */
export async function installPluginBinary(source: string, cniBinDir: string): Promise<InstallResult> {
  const src = resolve(source)
  const op = `install CNI plugin ${src} into ${cniBinDir}`
  let binary: Buffer
  try {
    binary = await readFile(src)
  } catch (e) {
    throw new Error(`${op}: read ${src}: ${errText(e)}`)
  }
  const libDir = join(dirname(src), '..', 'lib')
  let natives: string[]
  try {
    natives = (await readdir(libDir)).filter((f) => f.endsWith('.node')).sort()
  } catch (e) {
    throw new Error(`${op}: read its native modules in ${libDir}: ${errText(e)}`)
  }
  if (natives.length === 0) throw new Error(`${op}: no native modules (*.node) in ${libDir}; is ${src} a bundled flatnet plugin (./build.sh)?`)

  try {
    const files: BundleFile[] = [
      { path: join('bin', PLUGIN_NAME), bytes: binary, mode: 0o755 },
      ...(await Promise.all(natives.map(async (n) => ({ path: join('lib', n), bytes: await readFile(join(libDir, n)), mode: 0o755 })))),
      { path: 'package.json', bytes: Buffer.from('{"type":"commonjs"}\n'), mode: 0o644 },
    ]
    // The Node plugin the native entry falls back to, beside it in the same version directory.
    const fallback = await readFile(join(dirname(src), FALLBACK_NAME)).catch(() => undefined)
    if (fallback) files.push({ path: join('bin', FALLBACK_NAME), bytes: fallback, mode: 0o755 })
    const hash = createHash('sha256')
    for (const f of files) hash.update(`${f.path}\0${f.mode}\0${f.bytes.length}\0`).update(f.bytes)
    const version = hash.digest('hex').slice(0, 16)
    const root = join(cniBinDir, INSTALL_DIR)
    const versionDir = join(root, version)
    const link = join(cniBinDir, PLUGIN_NAME)
    const written: string[] = []
    await mkdir(root, { recursive: true, mode: 0o755 })

    // 1. The version, complete, beside the others: written to a temp dir, fsynced, renamed in.
    if (!(await holdsExactly(versionDir, files))) {
      const tmp = join(root, `.${version}.tmp.${process.pid}`)
      await rm(tmp, { recursive: true, force: true })
      try {
        for (const f of files) await writeSynced(join(tmp, f.path), f.bytes, f.mode)
        for (const d of ['bin', 'lib', '.']) await fsyncDir(join(tmp, d))
        // Same id, other bytes: damaged on this host. Moved aside first (rename cannot replace a
        // non-empty directory); a run starting in between fails and is retried by its runtime.
        await rm(`${tmp}.damaged`, { recursive: true, force: true })
        await rename(versionDir, `${tmp}.damaged`).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') throw e
        })
        await rename(tmp, versionDir)
      } finally {
        await rm(tmp, { recursive: true, force: true })
        await rm(`${tmp}.damaged`, { recursive: true, force: true })
      }
      await fsyncDir(root)
      written.push(versionDir)
    }

    // 2. The switch: one rename of a symlink over <bin>/flatnet.
    const current = await readLinkIfAny(link)
    const previous = versionOfTarget(current)
    if (current !== linkTarget(version)) {
      const refused = await answersVersion(join(versionDir, 'bin', PLUGIN_NAME))
      if (refused !== undefined) throw new Error(`the new plugin does not run on this host (CNI_COMMAND=VERSION: ${refused}); ${link} left as it was`)
      const tmpLink = join(cniBinDir, `.${PLUGIN_NAME}.${process.pid}.tmp`)
      await rm(tmpLink, { force: true })
      await symlink(linkTarget(version), tmpLink)
      await rename(tmpLink, link)
      await fsyncDir(cniBinDir)
      written.push(link)
    }

    // 3. Old versions go, but for the one the replaced link pointed to: a run started a moment
    //    ago through it may still be loading its natives.
    const removed: string[] = []
    for (const entry of await readdir(root)) {
      const path = join(root, entry)
      if (entry === version || entry === previous) continue
      if (VERSION_NAME.test(entry) || (LEGACY_ENTRIES.includes(entry) && previous !== 'legacy')) {
        await rm(path, { recursive: true, force: true })
        removed.push(path)
      } else if (entry.startsWith('.') && entry.includes('.tmp.')) {
        const st = await stat(path).catch(() => undefined)
        if (st && Date.now() - st.mtimeMs > STALE_TEMP_MS) await rm(path, { recursive: true, force: true })
      }
    }
    return { written, version, removed }
  } catch (e) {
    throw new Error(`${op}: ${(e as Error).message}`)
  }
}

/** Removes what installPluginBinary installed: `flatnet` when it is our symlink, and flatnet.bundle/. */
export async function uninstallPluginBinary(cniBinDir: string): Promise<boolean> {
  const link = join(cniBinDir, PLUGIN_NAME)
  let removed = false
  try {
    if (versionOfTarget(await readlink(link)) !== undefined) {
      await unlink(link)
      removed = true
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'EINVAL') throw new Error(`remove ${link}: ${errText(e)}`)
  }
  await rm(join(cniBinDir, INSTALL_DIR), { recursive: true, force: true })
  return removed
}
