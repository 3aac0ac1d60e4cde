// Filesystem trouble must surface as kind 'io' with the errno, and STATUS must see it first.
// Uses real mounts (we are root): a tmpfs remounted read-only, and a tmpfs out of inodes.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IpamError, PodAddressStore, parseCidr, podRange } from './index.js'

const runDir = mkdtempSync(join(tmpdir(), `flatnet-ipam-ro-${process.pid}-`))
const mounts: string[] = []
t.teardown(() => {
  for (const m of mounts.reverse()) {
    try {
      execFileSync('umount', [m], { stdio: 'ignore' })
    } catch {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' })
    }
  }
  rmSync(runDir, { recursive: true, force: true })
})

function mountTmpfs(name: string, options: string): string {
  const target = join(runDir, name)
  mkdirSync(target)
  execFileSync('mount', ['-t', 'tmpfs', '-o', options, `flatnet-ipam-test-${process.pid}`, target])
  mounts.push(target)
  return target
}

async function ipamErrorOf(p: Promise<unknown>): Promise<IpamError | undefined> {
  try {
    await p
  } catch (err) {
    return err instanceof IpamError ? err : undefined
  }
  return undefined
}

const ranges = [podRange(parseCidr('10.244.1.0/24'))]

t.test('read-only store directory: status says not writable, reserve fails with kind io', async (t) => {
  const mnt = mountTmpfs('ro', 'size=1m,mode=0700')
  const dir = join(mnt, 'net1')
  const store = new PodAddressStore(dir, ranges)
  const [held] = await store.reserve({ containerId: 'before', ifname: 'eth0' })
  execFileSync('mount', ['-o', 'remount,ro', mnt])

  const status = await store.status()
  t.equal(status.writable, false)
  t.match(status.problem, `write to store directory ${dir}: EROFS`)
  t.equal(status.inUse, 1, 'still counts what is held')

  const err = await ipamErrorOf(store.reserve({ containerId: 'after', ifname: 'eth0' }))
  t.equal(err?.kind, 'io')
  t.equal(err?.code, 'EROFS')
  t.match(err?.message, `reserve 10.244.1.3 in ${dir}: EROFS: read-only file system`)

  t.same(await store.find({ containerId: 'before', ifname: 'eth0' }), [held], 'reading still works')
  const rel = await ipamErrorOf(store.release({ containerId: 'before', ifname: 'eth0' }))
  t.equal(rel?.kind, 'io', 'release cannot remove the record either')
  t.equal(rel?.code, 'EROFS')
  const gc = await store.releaseAllExcept([])
  t.equal(gc.errors.length, 1, 'GC reports the failure and goes on')
  t.equal((gc.errors[0] as IpamError).code, 'EROFS')

  const missing = new PodAddressStore(join(mnt, 'never-created'), ranges)
  const ms = await missing.status()
  t.equal(ms.writable, false, 'a store directory that cannot be created is not writable')
  t.match(ms.problem, 'create store directory')
  t.match(ms.problem, 'EROFS')
})

t.test('a filesystem out of inodes fails reserve with kind io ENOSPC', async (t) => {
  // nr_inodes counts the root and our directory; two are left for records/temp files.
  const mnt = mountTmpfs('full', 'size=1m,nr_inodes=4,mode=0700')
  const dir = join(mnt, 'net1')
  const store = new PodAddressStore(dir, ranges)
  const reserved: string[] = []
  let err: IpamError | undefined
  for (let i = 0; i < 5 && err === undefined; i++) {
    err = await ipamErrorOf(
      store.reserve({ containerId: `c${i}`, ifname: 'eth0' }).then((rs) => {
        reserved.push(rs[0].address)
      }),
    )
  }
  t.ok(reserved.length >= 1, `some reservations fit (${reserved.length})`)
  t.equal(err?.kind, 'io')
  t.equal(err?.code, 'ENOSPC')
  t.match(err?.message, `in ${dir}: ENOSPC`)
  t.same(
    (await store.list()).map((r) => r.address),
    reserved,
    'the failed reserve left nothing behind',
  )
})
