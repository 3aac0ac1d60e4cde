// Disk trouble under the address store — a read-only data dir, a disk out of blocks, a disk out
// of inodes — on a real (tiny) tmpfs: ADD fails with code 5 and the errno in its message,
// nothing half-written is left (the node and the data dir are exactly as before the failed ADD),
// STATUS says code 50 while it lasts, and everything works again once the disk is fixed.
// (scale.test.ts shows the plain read-only refusal; this adds the exact no-leftover proof, DEL
// during the trouble, and the recovery.)
import t, { type Test } from 'tap'
import { mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { releasePrefix, run, runOk, testNamespaces, testRanges, uniquePrefix } from '../e2e/helpers/index.js'
import type { Netns } from '../e2e/helpers/netns.js'
import { cniOnNode, makeNode } from './testing/testHarness.js'
import { dirSnapshot, netSnapshot, settledNetSnapshot, snapshotDiff } from './testing/reliabilityHarness.js'

const CNI_PATH = '/opt/cni/bin'

interface Disk {
  node: Netns
  dataDir: string
  storeDir: string
  conf: Record<string, unknown>
  pod(): Promise<Netns>
  env(pod: Netns, id: string): Record<string, string>
  call(verb: 'ADD' | 'DEL' | 'STATUS', pod?: Netns, id?: string): ReturnType<typeof cniOnNode>
}

/** A node whose data dir is its own tmpfs mounted with `options`. */
async function diskNode(t: Test, tag: string, options: string): Promise<Disk> {
  const spaces = testNamespaces(t, tag)
  const prefix = uniquePrefix(tag)
  const dataDir = mkdtempSync(join(tmpdir(), `${prefix}-`))
  await runOk(['mount', '-t', 'tmpfs', '-o', options, prefix, dataDir])
  t.teardown(async () => {
    await run(['umount', dataDir])
    rmSync(dataDir, { recursive: true, force: true })
    releasePrefix(prefix)
  })
  const node = await spaces.create('node')
  await makeNode(node)
  const [range] = testRanges(1)
  const conf = { cniVersion: '1.1.0', name: 'disk', type: 'flatnet', ranges: [range.cidr], dataDir, mtu: 1500 }
  let n = 0
  const env = (pod: Netns, id: string) => ({ CNI_CONTAINERID: id, CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH })
  return {
    node,
    dataDir,
    storeDir: join(dataDir, 'disk'),
    conf,
    env,
    pod: () => spaces.create(`p${++n}`),
    call: (verb, pod, id) => cniOnNode(node, verb, { env: pod && id ? env(pod, id) : { CNI_PATH }, config: conf }),
  }
}

/** A failed ADD must leave the node, the pod and the store exactly as they were. */
async function expectCleanFailure(t: Test, d: Disk, pod: Netns, id: string, errno: RegExp): Promise<void> {
  const nodeBefore = await netSnapshot(d.node)
  const podBefore = await netSnapshot(pod)
  const storeBefore = dirSnapshot(d.storeDir)
  const add = await d.call('ADD', pod, id)
  t.equal(add.code, 1, 'ADD fails')
  t.match(add.json, { code: 5, msg: errno }, `code 5, the errno named: ${(add.json as { msg?: string })?.msg}`)
  t.match((add.json as { msg?: string })?.msg, new RegExp(`reserve .* in ${d.storeDir}`), 'the message names the operation and the store')
  t.equal(add.stdout.trim().split('\n').length, 1, 'one JSON line on stdout')
  t.same(snapshotDiff(nodeBefore, await netSnapshot(d.node)), { added: [], removed: [] }, 'node exactly as before: no veth, no route')
  t.same(snapshotDiff(podBefore, await netSnapshot(pod)), { added: [], removed: [] }, 'pod exactly as before')
  t.same(snapshotDiff(storeBefore, dirSnapshot(d.storeDir)), { added: [], removed: [] }, 'store exactly as before: no temp file, no record')
  const status = await d.call('STATUS')
  t.equal(status.code, 1, 'STATUS fails while the disk is in trouble')
  t.match(status.json, { code: 50, msg: errno }, `STATUS code 50 naming the errno: ${(status.json as { msg?: string })?.msg}`)
}

async function expectRecovered(t: Test, d: Disk, pod: Netns, id: string): Promise<void> {
  const status = await d.call('STATUS')
  t.equal(status.code, 0, `STATUS ok once fixed ${status.stdout}`)
  const add = await d.call('ADD', pod, id)
  t.equal(add.code, 0, `ADD works once fixed ${add.stdout}`)
  t.equal((await d.call('DEL', pod, id)).code, 0, 'and DEL')
}

t.test('read-only data dir: ADD code 5 EROFS with nothing left, DEL still removes the veth, STATUS 50; rw again → everything works', async (t) => {
  const d = await diskNode(t, 'dro', 'size=1m')
  const [p0, p1] = [await d.pod(), await d.pod()]
  t.equal((await d.call('ADD', p0, 'c0')).code, 0, 'a pod added while the disk was fine')
  await settledNetSnapshot(d.node)
  await runOk(['mount', '-o', 'remount,ro', d.dataDir])
  await expectCleanFailure(t, d, p1, 'c1', /EROFS/)

  // DEL during the trouble: the pod's network goes (the runtime is tearing it down), the
  // release cannot be written, and the runtime is told so it retries.
  const del = await d.call('DEL', p0, 'c0')
  t.equal(del.code, 1, 'DEL reports the failed release')
  t.match(del.json, { code: 5, msg: /EROFS/ })
  t.same(
    (await netSnapshot(d.node)).filter((l) => l.includes('"kind":"veth"')),
    [],
    'the host veth is gone anyway',
  )

  await runOk(['mount', '-o', 'remount,rw', d.dataDir])
  t.equal((await d.call('DEL', p0, 'c0')).code, 0, 'the retried DEL releases the address')
  t.same(
    readdirSync(d.storeDir).filter((f) => !f.startsWith('last_reserved_ip.')),
    [],
    'no reservation left',
  )
  await expectRecovered(t, d, p1, 'c1')
})

t.test('disk out of blocks: ADD code 5 ENOSPC with nothing left, STATUS 50; DEL works on the full disk; remount bigger → works', async (t) => {
  const d = await diskNode(t, 'dblk', 'size=256k,nr_inodes=1000')
  const [p0, p1] = [await d.pod(), await d.pod()]
  t.equal((await d.call('ADD', p0, 'c0')).code, 0, 'a pod added while the disk was fine')
  await settledNetSnapshot(d.node)
  // Fill every block: an empty file would still fit, a reservation record would not.
  const fill = await run(['dd', 'if=/dev/zero', `of=${join(d.dataDir, 'filler')}`, 'bs=4k'])
  t.match(fill.stderr, /No space left/, 'the disk is full')
  await expectCleanFailure(t, d, p1, 'c1', /ENOSPC/)

  t.equal((await d.call('DEL', p0, 'c0')).code, 0, 'DEL works on a full disk (rename and unlink need no space)')
  await runOk(['mount', '-o', 'remount,size=2m', d.dataDir])
  await expectRecovered(t, d, p1, 'c1')
})

t.test('disk out of inodes: ADD fails cleanly both when the temp file cannot be made and when its link cannot; STATUS 50; remount bigger → works', async (t) => {
  const d = await diskNode(t, 'dino', 'size=1m,nr_inodes=16')
  const [p0, p1] = [await d.pod(), await d.pod()]
  t.equal((await d.call('ADD', p0, 'c0')).code, 0, 'a pod added while the disk was fine')
  await settledNetSnapshot(d.node)
  const fillers: string[] = []
  for (let i = 0; ; i++) {
    const path = join(d.dataDir, `filler-${i}`)
    try {
      writeFileSync(path, '')
    } catch (e) {
      t.equal((e as NodeJS.ErrnoException).code, 'ENOSPC', `out of inodes after ${i} filler files`)
      break
    }
    fillers.push(path)
  }
  // No inode at all: the temp file cannot be created.
  await expectCleanFailure(t, d, p1, 'c1', /ENOSPC/)
  // One inode: the temp file is written, its link(2) to the address (a second inode on tmpfs)
  // fails — the temp file must not be left behind.
  unlinkSync(fillers.pop() as string)
  await expectCleanFailure(t, d, p1, 'c1', /ENOSPC/)

  await runOk(['mount', '-o', 'remount,nr_inodes=1000', d.dataDir])
  await expectRecovered(t, d, p1, 'c1')
  t.equal((await d.call('DEL', p0, 'c0')).code, 0)
})
