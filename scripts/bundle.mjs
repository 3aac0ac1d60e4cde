// Bundles each binary into one CommonJS file under dist/bin, with the native modules it needs
// copied to dist/lib. One file per binary keeps process start cheap: Node resolves and reads a
// single module instead of hundreds (the plugin runs once per pod, so start time is latency).
import { build } from 'esbuild'
import { existsSync, renameSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const dist = join(root, 'dist')

// name -> entry point. Binaries whose entry does not exist yet are an error, not a skip:
// a build that silently leaves a binary out would ship a broken install.
// flatnet-node is the Node plugin; dist/bin/flatnet is the native entry (plugin/entry/flatnet.c,
// compiled by build.sh) that forwards to flatnetd and runs flatnet-node when flatnetd is not there.
export const binaries = {
  'flatnet-node': 'plugin/main.ts',
  flatnetd: 'daemon/main.ts',
  flatnetctl: 'cli/main.ts',
}

const natives = {
  'netns.node': join(root, 'net/addon/build/Release/netns.node'),
  'netlink.node': join(root, 'node_modules/netlink/prebuilds/linux-x64/node.napi.node'),
}

// netlink finds its binary with node-gyp-build relative to its own folder; inside a bundle that
// folder no longer exists, so point it at dist/lib instead.
const netlinkNative = {
  name: 'netlink-native',
  setup(b) {
    b.onLoad({ filter: /node_modules[\\/]netlink[\\/]dist[\\/]raw\.js$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8')
      const patched = src.replace("require('node-gyp-build')(__dirname + '/..')", "require(require('path').join(__dirname, '..', 'lib', 'netlink.node'))")
      if (patched === src) throw new Error(`bundle: netlink raw.js no longer loads its binary the expected way (${args.path})`)
      return { contents: patched, loader: 'js' }
    })
  },
}

// The plugin parses IPv4 by hand and needs ip-address (~90 KB, ~5 ms to load) only for IPv6: in
// its bundle the package sits behind getters and is evaluated on first use, not at start.
const lazyIpAddress = {
  name: 'lazy-ip-address',
  setup(b) {
    b.onResolve({ filter: /^ip-address$/ }, (args) => (args.namespace === 'lazy-ip-address' ? undefined : { path: 'ip-address', namespace: 'lazy-ip-address' }))
    b.onLoad({ filter: /.*/, namespace: 'lazy-ip-address' }, () => ({
      contents: `let m
const load = () => m || (m = require('ip-address'))
module.exports = { get Address4() { return load().Address4 }, get Address6() { return load().Address6 } }
`,
      resolveDir: root,
      loader: 'js',
    }))
  },
}

// Every file lands by rename, never by rewriting in place: a runtime may be executing
// dist/bin/flatnet (and dlopen-ing dist/lib/*.node) at this very moment, and a file changed
// under a running dlopen crashes it. Identical content is left alone.
function installFile(target, content, mode) {
  if (existsSync(target) && readFileSync(target).equals(content)) return
  const tmp = `${target}.tmp-${process.pid}`
  writeFileSync(tmp, content, { mode })
  renameSync(tmp, target)
}

// Datastore client libraries are big (the Kubernetes client alone is ~14 MB bundled) and only one
// backend runs per daemon: each gets a bundle of its own in dist/lib, required at run time from
// the binaries (relative to dist/bin) only when its backend is first used. Keeping them out of
// flatnetd's main bundle saves ~40 MB of RSS for file and etcd users.
const vendorBundles = { etcd3: 'vendor-etcd3.cjs', '@kubernetes/client-node': 'vendor-kubernetes-client.cjs' }
const vendorExternal = {
  name: 'vendor-external',
  setup(b) {
    b.onResolve({ filter: /^(etcd3|@kubernetes\/client-node)$/ }, (args) => ({ path: `../lib/${vendorBundles[args.path]}`, external: true }))
  },
}

const only = process.argv.slice(2)
mkdirSync(join(dist, 'bin'), { recursive: true })
mkdirSync(join(dist, 'lib'), { recursive: true })
// dist/bin files have no extension; this makes Node read them as CommonJS.
installFile(join(dist, 'package.json'), Buffer.from('{"type":"commonjs"}\n'), 0o644)

// etcd3 loads its gRPC service definitions at run time from `${__dirname}/../proto`; in a
// bundle __dirname is dist/bin, so they must sit in dist/proto.
const protoDir = join(root, 'node_modules/etcd3/proto')
mkdirSync(join(dist, 'proto'), { recursive: true })
for (const file of readdirSync(protoDir).filter((f) => f.endsWith('.proto'))) installFile(join(dist, 'proto', file), readFileSync(join(protoDir, file)), 0o644)

for (const [file, from] of Object.entries(natives)) {
  if (!existsSync(from)) throw new Error(`bundle: native module ${from} is missing (did the addon build run?)`)
  installFile(join(dist, 'lib', file), readFileSync(from), 0o755)
}

// only the plugin does without them
const needsVendor = only.length === 0 || only.some((b) => b !== 'flatnet-node')
for (const [pkg, file] of needsVendor ? Object.entries(vendorBundles) : []) {
  const out = await build({
    stdin: { contents: `module.exports = require(${JSON.stringify(pkg)})`, resolveDir: root, loader: 'js' },
    write: false,
    outfile: join(dist, 'lib', file),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    legalComments: 'none',
    logLevel: 'error',
  })
  installFile(join(dist, 'lib', file), Buffer.from(out.outputFiles[0].contents), 0o644)
}

/**
 * Bundles one binary. `testPoints`: keep the named test points (ipam/testPoints.ts) live. The
 * production bundles define FLATNET_TEST_POINTS false and minifySyntax drops the dead branch, so
 * a FLATNET_TEST_CRASH_AT left in an operator's shell is never even read; the test build of the
 * plugin (dist/test/bin/flatnet, for the kill-point suites) keeps them.
 */
async function bundleBinary(name, entryPath, outfile, testPoints) {
  const out = await build({
    entryPoints: [entryPath],
    outfile,
    write: false,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    minify: false,
    minifySyntax: true,
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
    banner: { js: '#!/usr/bin/env node\nconst __flatnetImportMetaUrl = require("url").pathToFileURL(__filename).href;' },
    define: { 'import.meta.url': '__flatnetImportMetaUrl', 'process.env.FLATNET_BUNDLED': '"1"', FLATNET_TEST_POINTS: testPoints ? 'true' : 'false' },
    plugins: name === 'flatnet-node' ? [netlinkNative, vendorExternal, lazyIpAddress] : [netlinkNative, vendorExternal],
  })
  installFile(outfile, Buffer.from(out.outputFiles[0].contents), 0o755)
}

for (const [name, entry] of Object.entries(binaries)) {
  if (only.length && !only.includes(name)) continue
  const entryPath = join(root, entry)
  if (!existsSync(entryPath)) throw new Error(`bundle: entry point ${entry} of ${name} does not exist`)
  await bundleBinary(name, entryPath, join(dist, 'bin', name), false)
  console.log(`built dist/bin/${name}`)
}

// The plugin's test build: the same bundle with its test points live, in a tree of its own
// (bin, lib, package.json) so it finds its native modules as the real one does.
if (only.length === 0 || only.includes('flatnet-node')) {
  const testDist = join(dist, 'test')
  mkdirSync(join(testDist, 'bin'), { recursive: true })
  mkdirSync(join(testDist, 'lib'), { recursive: true })
  installFile(join(testDist, 'package.json'), Buffer.from('{"type":"commonjs"}\n'), 0o644)
  for (const [file, from] of Object.entries(natives)) installFile(join(testDist, 'lib', file), readFileSync(from), 0o755)
  await bundleBinary('flatnet-node', join(root, binaries['flatnet-node']), join(testDist, 'bin', 'flatnet'), true)
  console.log('built dist/test/bin/flatnet (test points live)')
}
