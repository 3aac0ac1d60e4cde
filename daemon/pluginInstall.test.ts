// Installing the plugin into the CNI bin dir while a runtime may be running it (issue 8 item 8):
// every version is put beside the others complete and switched to by one rename of a symlink, so
// a run never mixes two versions; old versions go; uninstall removes exactly what was installed.
import { execFile } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { flatnetBinary, flatnetMissingReason, runOk } from '../e2e/helpers/index.js'
import { installPluginBinary, uninstallPluginBinary } from './pluginInstall.js'
import { tempDir } from './testing/harness.js'

/**
 * A stand-in plugin `version` at <dir>/<version>/bin/flatnet with two natives of 1 MiB each: the
 * script answers VERSION only after reading both natives and finding its own version in each, so
 * a run whose script and natives come from two versions fails (exit 1, "mix").
 */
function standIn(dir: string, version: string): string {
  const bin = join(dir, version, 'bin')
  const lib = join(dir, version, 'lib')
  mkdirSync(bin, { recursive: true })
  mkdirSync(lib, { recursive: true })
  for (const n of ['a.node', 'b.node']) writeFileSync(join(lib, n), `${version}\n${'.'.repeat(1024 * 1024)}`)
  const script = join(bin, 'flatnet')
  writeFileSync(
    script,
    `#!/usr/bin/env node
const fs = require('fs'), path = require('path')
const lib = path.join(path.dirname(fs.realpathSync(__filename)), '..', 'lib')
for (const n of ['a.node', 'b.node']) {
  const got = fs.readFileSync(path.join(lib, n), 'utf8').split('\\n')[0]
  if (got !== ${JSON.stringify(version)}) { process.stderr.write('mix: script ${version}, ' + n + ' ' + got + '\\n'); process.exit(1) }
}
process.stdout.write(JSON.stringify({ cniVersion: '1.1.0', supportedVersions: ['1.1.0'], standIn: ${JSON.stringify(version)} }) + '\\n')
`,
    { mode: 0o755 },
  )
  return script
}

/** Runs <bin>/flatnet as a runtime does (by path, CNI environment only). */
function runPlugin(path: string): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(path, [], { env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION' } }, (err, stdout, stderr) => resolve({ ok: !err, out: err ? `${err.message} ${stderr}` : stdout }))
  })
}

t.test('the real plugin is installed into the CNI bin dir, runs from there, and is removed cleanly', { skip: flatnetMissingReason() }, async (t) => {
  const bin = tempDir(t, 'cbin')
  const first = await installPluginBinary(flatnetBinary, bin)
  t.match(first.version, /^[0-9a-f]{16}$/)
  t.same(first.written, [join(bin, 'flatnet.bundle', first.version), join(bin, 'flatnet')], 'the version directory, then the symlink')
  t.equal(readlinkSync(join(bin, 'flatnet')), `flatnet.bundle/${first.version}/bin/flatnet`)
  t.ok(lstatSync(join(bin, 'flatnet')).isSymbolicLink())
  t.equal(statSync(join(bin, 'flatnet')).mode & 0o111, 0o111, 'executable')
  t.ok(existsSync(join(bin, 'flatnet.bundle', first.version, 'lib', 'netns.node')))
  t.ok(existsSync(join(bin, 'flatnet.bundle', first.version, 'lib', 'netlink.node')))
  // Called as a runtime calls it: by path in the bin dir, with only the CNI environment.
  const out = await runOk(['env', '-i', `PATH=${process.env.PATH}`, 'CNI_COMMAND=VERSION', join(bin, 'flatnet')])
  t.ok(JSON.parse(out.stdout).supportedVersions.includes('1.1.0'), 'the installed plugin answers VERSION')
  t.same((await installPluginBinary(flatnetBinary, bin)).written, [], 'a second install writes nothing')
  t.equal(await uninstallPluginBinary(bin), true)
  t.same(readdirSync(bin), [], 'nothing left')
})

t.test('installing a binary without its natives beside it is refused with the reason', async (t) => {
  const dir = tempDir(t, 'cbin')
  writeFileSync(join(dir, 'flatnet'), '#!/bin/sh\n')
  await t.rejects(installPluginBinary(join(dir, 'flatnet'), join(dir, 'bin')), /install CNI plugin .*read its native modules in .*lib: ENOENT/)
  await t.rejects(installPluginBinary(join(dir, 'absent'), join(dir, 'bin')), /install CNI plugin .*absent.*ENOENT/)
})

t.test('a plugin that does not run is never switched to; the running one stays', async (t) => {
  const dir = tempDir(t, 'cbin')
  const bin = join(dir, 'bin')
  const good = await installPluginBinary(standIn(dir, 'good'), bin)
  const broken = standIn(dir, 'broken')
  writeFileSync(broken, '#!/usr/bin/env node\nthrow new Error("cannot start")\n')
  await t.rejects(installPluginBinary(broken, bin), /does not run on this host \(CNI_COMMAND=VERSION: .*cannot start.*\); .*flatnet left as it was/)
  t.equal(readlinkSync(join(bin, 'flatnet')), `flatnet.bundle/${good.version}/bin/flatnet`)
  t.match(await runPlugin(join(bin, 'flatnet')), { ok: true, out: /"standIn":"good"/ })
})

t.test('a runtime running the plugin during repeated installs never runs a mix of two versions', async (t) => {
  const dir = tempDir(t, 'cbin')
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  // Another plugin and the self-contained package's directory: never touched.
  writeFileSync(join(bin, 'ptp'), 'not flatnet', { mode: 0o755 })
  mkdirSync(join(bin, 'flatnet.d'))
  const versions = [standIn(dir, 'one'), standIn(dir, 'two')]
  const first = await installPluginBinary(versions[0]!, bin)

  let installing = true
  const runs: Array<{ ok: boolean; out: string }> = []
  const executor = (async () => {
    while (installing) runs.push(await runPlugin(join(bin, 'flatnet')))
  })()
  // Installs alternate until the runtime has run the plugin RUNS times (an even count of
  // installs, so "one" is current at the end), bounded by a count, not a time.
  const RUNS = 30
  const ids = new Map<string, string>([['one', first.version]])
  let installs = 0
  try {
    while ((runs.length < RUNS || installs % 2 === 1) && installs < 2000) {
      installs++
      ids.set(installs % 2 ? 'two' : 'one', (await installPluginBinary(versions[installs % 2]!, bin)).version)
    }
  } finally {
    installing = false
    await executor
  }
  const failures = runs.filter((r) => !r.ok)
  t.ok(runs.length >= RUNS, `${runs.length} runs during ${installs} installs`)
  t.same(failures.slice(0, 3), [], `no run failed (${failures.length} of ${runs.length})`)
  const seen = new Set(runs.map((r) => /"standIn":"(\w+)"/.exec(r.out)?.[1]))
  t.same([...seen].sort(), ['one', 'two'], 'every run answered as one whole version, and both versions ran')

  // A third version after "one": "two" goes, "one" (the replaced link's) stays for runs under way.
  const third = await installPluginBinary(standIn(dir, 'three'), bin)
  t.same(third.removed, [join(bin, 'flatnet.bundle', ids.get('two')!)], 'the old version is removed')
  t.same(readdirSync(join(bin, 'flatnet.bundle')).sort(), [third.version, ids.get('one')!].sort(), 'only the current and the previous version are kept')

  t.equal(await uninstallPluginBinary(bin), true)
  t.same(readdirSync(bin).sort(), ['flatnet.d', 'ptp'], 'uninstall removed exactly what was installed')
})

t.test('an install of the layout before versions had directories is switched over and its files cleaned up', async (t) => {
  const dir = tempDir(t, 'cbin')
  const bin = join(dir, 'bin')
  const legacy = join(bin, 'flatnet.bundle')
  mkdirSync(join(legacy, 'bin'), { recursive: true })
  mkdirSync(join(legacy, 'lib'))
  writeFileSync(join(legacy, 'bin', 'flatnet'), '#!/bin/sh\n', { mode: 0o755 })
  writeFileSync(join(legacy, 'package.json'), '{"type":"commonjs"}\n')
  symlinkSync('flatnet.bundle/bin/flatnet', join(bin, 'flatnet'))
  const a = await installPluginBinary(standIn(dir, 'a'), bin)
  t.same(readdirSync(legacy).sort(), [a.version, 'bin', 'lib', 'package.json'].sort(), 'the old layout stays while a run may still use it')
  const b = await installPluginBinary(standIn(dir, 'b'), bin)
  t.same(readdirSync(legacy).sort(), [a.version, b.version].sort(), 'and goes at the next install')
  t.equal(await uninstallPluginBinary(bin), true)
  t.same(readdirSync(bin), [])
})
