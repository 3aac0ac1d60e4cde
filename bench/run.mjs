// Runs a TypeScript benchmark: `node bench/run.mjs <name> [args…]` bundles bench/<name>.ts with
// esbuild (Node 20 cannot run .ts, and tap's loader exists only inside tap) into
// bench/results/.build/<name>.mjs and runs it with the given arguments.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build } from 'esbuild'

const here = dirname(fileURLToPath(import.meta.url))
const [name, ...args] = process.argv.slice(2)
if (!name || !/^[a-z0-9-]+$/.test(name) || !existsSync(join(here, `${name}.ts`))) {
  console.error('usage: node bench/run.mjs <benchmark> [args…]   (bench/<benchmark>.ts, e.g. plugin)')
  process.exit(2)
}
// The bundle lives elsewhere than its sources; each module's import.meta.url must stay its own
// source file's URL so that paths like new URL('../../dist/bin/flatnet', import.meta.url) hold.
const sourceUrls = {
  name: 'source-urls',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, (a) => ({
      contents: readFileSync(a.path, 'utf8').replaceAll('import.meta.url', JSON.stringify(pathToFileURL(a.path).href)),
      loader: 'ts',
    }))
  },
}
const outfile = join(here, 'results', '.build', `${name}.mjs`)
await build({
  entryPoints: [join(here, `${name}.ts`)],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  logLevel: 'warning',
  plugins: [sourceUrls],
})
const child = spawnSync(process.execPath, [outfile, ...args], { stdio: 'inherit' })
process.exit(child.status ?? 1)
