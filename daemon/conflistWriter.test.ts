// Writing the conflist the way a runtime can bear: atomically, only on change, nothing left
// behind; checked on disk, with a concurrent reader in another process. (Installing the plugin:
// pluginInstall.test.ts.)
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { conflistPath, removeConflist, writeConflist } from './conflistWriter.js'
import { startConflistReader as startReader, tempDir } from './testing/harness.js'

t.test('written once, then left alone while unchanged; rewritten (new inode) on change; no temp files', async (t) => {
  const dir = join(tempDir(t, 'cwrite'), 'net.d') // does not exist yet: created on first write
  t.equal(await writeConflist(dir, { ranges: ['10.244.5.0/24'], dataDir: '/var/lib/cni/flatnet' }), true)
  const path = conflistPath(dir)
  const first = statSync(path)
  t.equal(first.mode & 0o777, 0o644)
  t.equal(await writeConflist(dir, { ranges: ['10.244.5.0/24'], dataDir: '/var/lib/cni/flatnet' }), false, 'same bytes: no write')
  t.same([statSync(path).ino, statSync(path).mtimeMs], [first.ino, first.mtimeMs])
  t.equal(await writeConflist(dir, { ranges: ['10.244.5.0/24'], dataDir: '/var/lib/cni/flatnet', mtu: 1400 }), true)
  t.not(statSync(path).ino, first.ino, 'replaced by rename, not edited in place')
  t.equal(JSON.parse(readFileSync(path, 'utf8')).plugins[0].mtu, 1400)
  t.same(readdirSync(dir), ['10-flatnet.conflist'], 'no temp file left')
  t.equal(await removeConflist(dir), true)
  t.equal(await removeConflist(dir), false)
  t.same(readdirSync(dir), [])
})

t.test('a file someone changed by hand is put back', async (t) => {
  const dir = tempDir(t, 'cwrite')
  await writeConflist(dir, { ranges: ['10.244.5.0/24'], dataDir: '/d' })
  writeFileSync(conflistPath(dir), '{"broken": ')
  t.equal(await writeConflist(dir, { ranges: ['10.244.5.0/24'], dataDir: '/d' }), true)
  t.equal(JSON.parse(readFileSync(conflistPath(dir), 'utf8')).plugins[0].ranges[0], '10.244.5.0/24')
})

// A long dataDir makes each write big enough that a non-atomic writer is caught mid-write.
const longDir = '/var/lib/cni/' + 'x'.repeat(3000)

t.test('a concurrent reader never sees a partial or missing conflist while it is rewritten', async (t) => {
  const dir = tempDir(t, 'cread')
  const path = conflistPath(dir)
  await writeConflist(dir, { ranges: ['10.244.5.0/24'], dataDir: longDir, mtu: 1400 })
  const stopFile = join(dir, 'stop')
  const reader = startReader(path, stopFile)
  t.teardown(() => reader.kill())
  await reader.started
  for (let i = 0; i < 400; i++) {
    await writeConflist(dir, { ranges: ['10.244.5.0/24'], dataDir: longDir, mtu: 1400 + (i % 2) * 50 })
  }
  writeFileSync(stopFile, '')
  const seen = await reader.done
  t.ok(seen.reads > 0, `reader read ${seen.reads} times`)
  t.ok(seen.versions >= 2, 'reader saw both versions: it really read during the rewrites')
  t.equal(seen.partial, 0, 'never a partial file')
  t.equal(seen.missing, 0, 'never a missing file')
})

t.test('control: the same reader does catch a writer that writes in place', async (t) => {
  // Proves the test above could fail: truncate-and-write is seen half-done.
  const dir = tempDir(t, 'cread')
  const path = conflistPath(dir)
  await writeConflist(dir, { ranges: ['10.244.5.0/24'], dataDir: longDir, mtu: 1400 })
  const stopFile = join(dir, 'stop')
  const reader = startReader(path, stopFile)
  t.teardown(() => reader.kill())
  await reader.started
  const a = readFileSync(path, 'utf8')
  const b = a.replace('"mtu": 1400', '"mtu": 1450')
  for (let i = 0; i < 1000; i++) await writeFile(path, i % 2 ? b : a)
  writeFileSync(stopFile, '')
  const result = await reader.done
  t.ok(result.partial > 0, `in-place writes were seen partial ${result.partial} times in ${result.reads} reads`)
})
