// The real flatnet binaries the lab runs. Built by ./build.sh into dist/bin; when the lab itself
// runs as dist/bin/flatnetctl they sit beside it, when it runs from source (tests) they are in
// the checkout's dist/bin.
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export type FlatnetBinary = 'flatnet' | 'flatnetd' | 'flatnetctl'

export function distBinDir(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  return process.env.FLATNET_BUNDLED ? here : join(here, '..', 'dist', 'bin')
}

/** Absolute path of a built binary; throws naming the fix when it has not been built. */
export function flatnetBinary(name: FlatnetBinary): string {
  const path = join(distBinDir(), name)
  if (!existsSync(path)) throw new Error(`find ${name}: ${path} does not exist; build it with ./build.sh`)
  return path
}
