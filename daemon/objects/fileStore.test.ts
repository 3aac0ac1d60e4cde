// The file backend of cluster objects: the store contract on a temp objects file, shared by
// several store instances (as several processes share it), and what is on disk.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { testDir } from '../../e2e/helpers/prefix.js'
import { errorOf, openWritable, pod, runObjectStoreContract } from './testing/contractSuite.js'

let n = 0
t.test('contract', async (t) => runObjectStoreContract(t, () => ({ kind: 'file', path: join(testDir(t, 'objfile').dir, `nodes-${++n}.json`), pollIntervalMs: 200 })))

t.test('objects are stored beside the node state file, by kind and namespace/name, one per line', async (t) => {
  const { dir } = testDir(t, 'objfile')
  const store = await openWritable(t, { kind: 'file', path: join(dir, 'nodes.json') })
  await store.apply(pod('default', 'a'))
  const text = await readFile(join(dir, 'objects.json'), 'utf8')
  const doc = JSON.parse(text) as { kind: string; kinds: Record<string, { objects: Array<{ metadata: { name: string } }> }> }
  t.equal(doc.kind, 'flatnet/objects')
  t.same(
    doc.kinds.Pod!.objects.map((o) => o.metadata.name),
    ['a'],
  )
  t.match(text, /\n {8}\{"apiVersion":"v1","kind":"Pod","metadata":\{"name":"a","namespace":"default"/)
})

t.test('an unreadable objects file is reported, named, and left untouched', async (t) => {
  const { dir } = testDir(t, 'objfile')
  const { writeFile } = await import('node:fs/promises')
  await writeFile(join(dir, 'objects.json'), '{"kind": "something else"}')
  const { openObjectStore } = await import('./index.js')
  const err = await errorOf(openObjectStore({ kind: 'file', path: join(dir, 'nodes.json') }))
  t.equal(err.kind, 'corrupt')
  t.equal(
    err.message,
    `read cluster objects ${join(dir, 'objects.json')}: not a valid flatnet objects file (kind is not "flatnet/objects"); it is left untouched — repair it or move it away to start afresh`,
  )
  t.equal(await readFile(join(dir, 'objects.json'), 'utf8'), '{"kind": "something else"}')
})
