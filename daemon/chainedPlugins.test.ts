// Asking the chained portmap for its CNI versions: which binary, how often, and that no answer —
// early exit, garbage, failure — can crash the daemon.
import t from 'tap'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChainedPluginProbe } from './chainedPlugins.js'

type Tap = { teardown(fn: () => unknown): void }

function binDir(t: Tap): string {
  const dir = mkdtempSync(join(tmpdir(), 'fnt-chain-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function script(dir: string, name: string, body: string): void {
  writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`)
  chmodSync(join(dir, name), 0o755)
}

t.test('the first portmap on the path is asked, once per binary version', async (t) => {
  const a = binDir(t)
  const b = binDir(t)
  script(b, 'portmap', `echo x >> ${join(b, 'calls')}; echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'`)
  const probe = new ChainedPluginProbe([a, b])
  t.same(await probe.versions('portmap'), ['0.4.0', '1.0.0'])
  t.same(await probe.versions('portmap'), ['0.4.0', '1.0.0'])
  t.equal(readFileSync(join(b, 'calls'), 'utf8'), 'x\n', 'asked once while the binary is unchanged')
  script(a, 'portmap', `echo '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}'`)
  t.same(await probe.versions('portmap'), ['1.0.0', '1.1.0'], 'a portmap earlier on the path wins')
  t.equal(await new ChainedPluginProbe([binDir(t)]).versions('portmap'), 'absent')
})

t.test('a plugin that exits without reading stdin, or answers garbage, never crashes the daemon', async (t) => {
  const dir = binDir(t)
  // exits at once: the probe's stdin pipe is closed under it (EPIPE)
  script(dir, 'portmap', `exec 0<&-; echo '{"supportedVersions":["1.0.0"]}'`)
  for (let i = 0; i < 20; i++) t.same(await new ChainedPluginProbe([dir]).versions('portmap'), ['1.0.0'])
  script(dir, 'portmap', 'echo not json')
  await t.rejects(new ChainedPluginProbe([dir]).versions('portmap'), /ask .*portmap for its CNI versions: unreadable answer/)
  script(dir, 'portmap', 'exit 3')
  await t.rejects(new ChainedPluginProbe([dir]).versions('portmap'), /ask .*portmap for its CNI versions/)
})
