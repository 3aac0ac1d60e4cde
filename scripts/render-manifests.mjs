#!/usr/bin/env node
// Renders deploy/flatnet-fastpath.yaml and deploy/flatnet-services.yaml from deploy/flatnet.yaml
// (deploy/fastPathManifest.ts and deploy/servicesManifest.ts say what differs and why).
// deploy/fastPathManifest.test.ts and deploy/servicesManifest.test.ts fail while one is stale.
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const bundle = join(root, 'dist', `render-manifests.${process.pid}.mjs`)
const services = join(root, 'dist', `render-services-manifest.${process.pid}.mjs`)
await build({ entryPoints: [join(root, 'deploy/servicesManifest.ts')], outfile: services, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'error', packages: 'external' })
await build({ entryPoints: [join(root, 'deploy/fastPathManifest.ts')], outfile: bundle, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'error', packages: 'external' })
try {
  const { renderFastPathManifest } = await import(pathToFileURL(bundle).href)
  const out = join(root, 'deploy/flatnet-fastpath.yaml')
  writeFileSync(out, renderFastPathManifest(readFileSync(join(root, 'deploy/flatnet.yaml'), 'utf8')))
  console.log(`rendered ${out}`)
  const { renderServicesManifest } = await import(pathToFileURL(services).href)
  const servicesOut = join(root, 'deploy/flatnet-services.yaml')
  writeFileSync(servicesOut, renderServicesManifest(readFileSync(join(root, 'deploy/flatnet.yaml'), 'utf8')))
  console.log(`rendered ${servicesOut}`)
} finally {
  rmSync(bundle, { force: true })
  rmSync(services, { force: true })
}
