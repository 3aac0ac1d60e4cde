// Test-only: making the self-contained CNI package (scripts/package-cni.sh) into a temp dir and
// installing it (its install-cni.sh) into another, exactly as the image build and the
// DaemonSet's init container do.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { run, runOk, type RunResult } from '../../e2e/helpers/index.js'

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
export const packageScript = join(repoRoot, 'scripts/package-cni.sh')
export const distDir = join(repoRoot, 'dist')

/** Why the package tests cannot run: the bundle is not built (the only accepted skip). */
export function bundleMissingReason(dist = distDir): string | undefined {
  for (const f of ['bin/flatnet', 'bin/flatnet-node', 'lib/netns.node', 'lib/netlink.node']) {
    if (!existsSync(join(dist, f))) return `${join(dist, f)} does not exist: run ./build.sh first`
  }
  return undefined
}

export interface CniPackage {
  /** The package directory (what the image holds at /opt/flatnet/cni). */
  dir: string
  /** The payload id: flatnet.d/<id>. */
  id: string
}

/** The payload a launcher runs (its `p=$dir/flatnet.d/<id>` line). */
export function payloadIdOf(launcherPath: string): string {
  const m = /^p=\$dir\/flatnet\.d\/([0-9a-f]{16})$/m.exec(readFileSync(launcherPath, 'utf8'))
  if (!m) throw new Error(`${launcherPath}: no payload line; not a flatnet launcher`)
  return m[1]!
}

/** scripts/package-cni.sh --out `out` [--dist `dist`]. */
export async function packageCni(out: string, dist = distDir): Promise<CniPackage> {
  await runOk([packageScript, '--dist', dist, '--out', out], { timeoutMs: 120_000 })
  const ids = readdirSync(join(out, 'flatnet.d'))
  if (ids.length !== 1) throw new Error(`package ${out}: expected one payload in flatnet.d, found ${ids.join(', ')}`)
  const id = payloadIdOf(join(out, 'flatnet'))
  if (ids[0] !== id) throw new Error(`package ${out}: launcher runs payload ${id}, flatnet.d holds ${ids[0]}`)
  return { dir: out, id }
}

/** `<pkg>/install-cni.sh [--uninstall] dest`; the result, whatever the exit code. */
export function installCni(pkgDir: string, dest: string, uninstall = false): Promise<RunResult> {
  return run([join(pkgDir, 'install-cni.sh'), ...(uninstall ? ['--uninstall'] : []), dest], { timeoutMs: 120_000 })
}

/** Every entry under `dir`, relative, sorted (directories end in /). */
export function listTree(dir: string): string[] {
  const out: string[] = []
  const walk = (rel: string) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name
      if (e.isDirectory()) {
        out.push(`${p}/`)
        walk(p)
      } else out.push(p)
    }
  }
  walk('')
  return out.sort()
}
