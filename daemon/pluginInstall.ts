// Installing the flatnet plugin into the CNI bin dir (--install-cni-binary).
import { readFile, readdir, readlink, rename, rm, symlink, unlink } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { errText, fsyncDir, writeFileAtomicIfChanged } from './atomicFile.js'

// The bundled plugin loads its native modules from ../lib beside its own (real) path, and needs
// a package.json saying CommonJS above it (scripts/bundle.mjs). Installed as
//   <bin>/flatnet.bundle/{bin/flatnet, lib/*.node, package.json}  and  <bin>/flatnet -> flatnet.bundle/bin/flatnet
// the runtime finds `flatnet` in the CNI bin dir, Node resolves the symlink to the real path, and
// the whole install lives inside the bin dir (so it also works when the daemon runs in a
// container that mounts only that directory).
export const PLUGIN_NAME = 'flatnet'
// dist/bin/flatnet is the native CNI entry; the Node plugin it falls back to sits beside it under
// this name (plugin/entry/flatnet.c finds it next to its own real path).
const FALLBACK_NAME = 'flatnet-node'
// Not flatnet.d/: that is the self-contained package's (deploy/install-cni.sh), which carries
// its own Node; the two installs must never remove each other's files.
const INSTALL_DIR = 'flatnet.bundle'

export interface InstallResult {
  /** Files written (unchanged files are not rewritten). */
  written: string[]
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
  const root = join(cniBinDir, INSTALL_DIR)
  const written: string[] = []
  const put = async (path: string, bytes: Buffer | string, mode: number) => {
    if (await writeFileAtomicIfChanged(path, bytes, mode)) written.push(path)
  }
  try {
    for (const n of natives) await put(join(root, 'lib', n), await readFile(join(libDir, n)), 0o755)
    await put(join(root, 'package.json'), '{"type":"commonjs"}\n', 0o644)
    // Before the entry: an entry already in place must never find its fallback missing.
    const fallback = await readFile(join(dirname(src), FALLBACK_NAME)).catch(() => undefined)
    if (fallback) await put(join(root, 'bin', FALLBACK_NAME), fallback, 0o755)
    await put(join(root, 'bin', PLUGIN_NAME), binary, 0o755)
    const link = join(cniBinDir, PLUGIN_NAME)
    const target = join(INSTALL_DIR, 'bin', PLUGIN_NAME)
    let current: string | undefined
    try {
      current = await readlink(link)
    } catch {
      current = undefined // absent, or a regular file (an older install): replaced below
    }
    if (current !== target) {
      const tmp = join(cniBinDir, `.${PLUGIN_NAME}.${process.pid}.tmp`)
      await rm(tmp, { force: true })
      await symlink(target, tmp)
      await rename(tmp, link)
      await fsyncDir(cniBinDir)
      written.push(link)
    }
  } catch (e) {
    throw new Error(`${op}: ${(e as Error).message}`)
  }
  return { written }
}

/** Removes what installPluginBinary installed (only a `flatnet` that is our symlink). */
export async function uninstallPluginBinary(cniBinDir: string): Promise<boolean> {
  const link = join(cniBinDir, PLUGIN_NAME)
  let removed = false
  try {
    if ((await readlink(link)) === join(INSTALL_DIR, 'bin', PLUGIN_NAME)) {
      await unlink(link)
      removed = true
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'EINVAL') throw new Error(`remove ${link}: ${errText(e)}`)
  }
  await rm(join(cniBinDir, INSTALL_DIR), { recursive: true, force: true })
  return removed
}
