#!/usr/bin/env node
// Renders deploy/flatnet-fastpath.yaml from deploy/flatnet.yaml (deploy/fastPathManifest.ts says
// what differs and why). deploy/fastPathManifest.test.ts fails while the rendered file is stale.
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const bundle = join(root, 'dist', `render-manifests.${process.pid}.mjs`)
await build({ entryPoints: [join(root, 'deploy/fastPathManifest.ts')], outfile: bundle, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'error', packages: 'external' })
try {
  const { renderFastPathManifest } = await import(pathToFileURL(bundle).href)
  const out = join(root, 'deploy/flatnet-fastpath.yaml')
  writeFileSync(out, renderFastPathManifest(readFileSync(join(root, 'deploy/flatnet.yaml'), 'utf8')))
  console.log(`rendered ${out}`)
} finally {
  rmSync(bundle, { force: true })
}
