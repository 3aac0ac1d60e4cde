// An OCI root filesystem built offline from Debian's busybox-static: one static binary plus the
// applet links the tests run. Used with `ctr run --rootfs`, so no image store, snapshotter or
// registry is involved. There is no image config either, hence no PATH: commands are absolute.
import { copyFileSync, existsSync, mkdirSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'

export const BUSYBOX = '/bin/busybox' // package busybox-static

const applets = ['sh', 'ip', 'ping', 'sleep', 'cat']

export function busyboxRootfs(dir: string): string {
  if (!existsSync(BUSYBOX)) throw new Error(`build rootfs in ${dir}: ${BUSYBOX} missing (install busybox-static: scripts/install-deps.sh)`)
  for (const sub of ['bin', 'proc', 'sys', 'dev', 'etc', 'tmp']) mkdirSync(join(dir, sub), { recursive: true })
  copyFileSync(BUSYBOX, join(dir, 'bin', 'busybox'))
  for (const applet of applets) symlinkSync('busybox', join(dir, 'bin', applet))
  return dir
}
