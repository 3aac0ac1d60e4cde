import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IpamError, PodAddressStore, parseCidr, podRange } from './index.js'
import type { Reservation } from './index.js'

const range24 = podRange(parseCidr('10.244.1.0/24'))
const runDir = mkdtempSync(join(tmpdir(), `flatnet-ipam-store-${process.pid}-`))
t.teardown(() => rmSync(runDir, { recursive: true, force: true }))

let storeCount = 0
/** A fresh store whose directory does not exist yet (the store must create it). */
function freshStore(ranges = [range24]): { store: PodAddressStore; dir: string; problems: IpamError[] } {
  const dir = join(runDir, `data${++storeCount}`, 'net1')
  const problems: IpamError[] = []
  return { store: new PodAddressStore(dir, ranges, { onProblem: (p) => problems.push(p) }), dir, problems }
}

/** Record files (named by an address) in the store directory. */
function recordFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => /^[0-9a-f.:]+$/.test(n))
    .sort()
}

function tempFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.startsWith('.tmp-'))
    .sort()
}

/** The IpamError a promise rejects with, or undefined if it resolves or rejects otherwise. */
async function ipamErrorOf(p: Promise<unknown>): Promise<IpamError | undefined> {
  try {
    await p
  } catch (err) {
    return err instanceof IpamError ? err : undefined
  }
  return undefined
}

/** A pid that certainly belonged to a process that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { env: { PATH: process.env.PATH }, encoding: 'utf8' })
  return Number(child.stdout)
}

t.test('reserve, find and release round trip, with the record on disk', async (t) => {
  const { store, dir } = freshStore()
  const before = Date.now()
  const [r] = await store.reserve({ containerId: 'c1', ifname: 'eth0', podNamespace: 'default', podName: 'web-1', hostVeth: 'veth1234' })
  t.equal(r.address, '10.244.1.2', 'the first pod address of the range')
  t.same(recordFiles(dir), ['10.244.1.2'])
  const onDisk: unknown = JSON.parse(readFileSync(join(dir, '10.244.1.2'), 'utf8'))
  t.same(
    onDisk,
    {
      address: '10.244.1.2',
      range: '10.244.1.0/24',
      containerId: 'c1',
      ifname: 'eth0',
      podNamespace: 'default',
      podName: 'web-1',
      hostVeth: 'veth1234',
      createdAt: r.createdAt,
    },
    'the file holds the full record as JSON',
  )
  t.ok(Date.parse(r.createdAt) >= before - 1000 && Date.parse(r.createdAt) <= Date.now() + 1000, 'createdAt is the reservation time')
  t.equal(statSync(join(dir, '10.244.1.2')).mode & 0o777, 0o600, 'record file mode 0600')
  t.equal(statSync(dir).mode & 0o777, 0o700, 'store directory mode 0700')
  t.equal(statSync(join(dir, '..')).mode & 0o777, 0o700, 'created data directory mode 0700')
  t.same(tempFiles(dir), [], 'no temp file left behind')

  t.same(await store.find({ containerId: 'c1', ifname: 'eth0' }), [r])
  t.same(await store.find({ containerId: 'c1', ifname: 'eth1' }), [], 'another interface of the same container holds nothing')
  t.same(await store.list(), [r])

  t.same(await store.release({ containerId: 'c1', ifname: 'eth0' }), [r])
  t.same(recordFiles(dir), [], 'the record file is gone')
  t.same(await store.release({ containerId: 'c1', ifname: 'eth0' }), [], 'a second release is a no-op')
  t.same(await store.find({ containerId: 'c1', ifname: 'eth0' }), [])
})

t.test('a store whose directory does not exist yet is empty', async (t) => {
  const { store, dir } = freshStore()
  t.same(await store.list(), [])
  t.same(await store.release({ containerId: 'c1', ifname: 'eth0' }), [])
  t.same(await store.releaseAllExcept([]), { released: [], errors: [] })
  t.notOk(existsSync(dir), 'reading does not create the directory')
})

t.test('release does not reuse a just-released address (next-free rotation)', async (t) => {
  const { store } = freshStore()
  const [a] = await store.reserve({ containerId: 'a', ifname: 'eth0' })
  const [b] = await store.reserve({ containerId: 'b', ifname: 'eth0' })
  await store.release({ containerId: 'a', ifname: 'eth0' })
  const [c] = await store.reserve({ containerId: 'c', ifname: 'eth0' })
  t.same([a.address, b.address, c.address], ['10.244.1.2', '10.244.1.3', '10.244.1.4'])
  // Survives a new store object (a new plugin process): the hint is on disk.
  const again = new PodAddressStore(store.dir, [range24])
  await again.release({ containerId: 'c', ifname: 'eth0' })
  const [d] = await again.reserve({ containerId: 'd', ifname: 'eth0' })
  t.equal(d.address, '10.244.1.5', 'neither .2 nor .4, both released')
})

t.test('reserve is idempotent for the same attachment', async (t) => {
  const { store, dir } = freshStore()
  const first = await store.reserve({ containerId: 'c1', ifname: 'eth0' })
  const second = await store.reserve({ containerId: 'c1', ifname: 'eth0' })
  t.same(second, first, 'the same reservation comes back')
  t.same(recordFiles(dir), ['10.244.1.2'], 'only one address taken')
  const [other] = await store.reserve({ containerId: 'c1', ifname: 'net1' })
  t.equal(other.address, '10.244.1.3', 'another interface is another attachment')
})

t.test('a requested address is taken exactly, or the reserve fails saying why', async (t) => {
  const { store, dir } = freshStore()
  const [r] = await store.reserve({ containerId: 'c1', ifname: 'eth0', requested: ['10.244.1.50'] })
  t.equal(r.address, '10.244.1.50')
  t.same(await store.reserve({ containerId: 'c1', ifname: 'eth0', requested: ['10.244.1.50'] }), [r], 'repeating the same request is idempotent')

  const taken = await ipamErrorOf(store.reserve({ containerId: 'c2', ifname: 'eth0', requested: ['10.244.1.50'] }))
  t.equal(taken?.kind, 'unavailable')
  t.equal(taken?.message, 'reserve requested address 10.244.1.50 in 10.244.1.0/24: already held by container c1 (eth0)')

  const outside = await ipamErrorOf(store.reserve({ containerId: 'c2', ifname: 'eth0', requested: ['10.244.2.9'] }))
  t.equal(outside?.kind, 'invalid')
  t.equal(outside?.message, 'reserve requested address 10.244.2.9: outside the pod range 10.244.1.0/24')

  const gateway = await ipamErrorOf(store.reserve({ containerId: 'c2', ifname: 'eth0', requested: ['10.244.1.1'] }))
  t.equal(gateway?.kind, 'invalid')
  t.equal(gateway?.message, 'reserve requested address 10.244.1.1: it is the gateway of 10.244.1.0/24')

  const broadcast = await ipamErrorOf(store.reserve({ containerId: 'c2', ifname: 'eth0', requested: ['10.244.1.255'] }))
  t.equal(broadcast?.kind, 'invalid')
  t.match(broadcast?.message, /10\.244\.1\.255: not a pod address of 10\.244\.1\.0\/24 \(pods get 10\.244\.1\.2-10\.244\.1\.254\)/)

  const garbage = await ipamErrorOf(store.reserve({ containerId: 'c2', ifname: 'eth0', requested: ['10.244.1.x'] }))
  t.equal(garbage?.kind, 'invalid')
  t.match(garbage?.message, '"10.244.1.x"')

  const other = await ipamErrorOf(store.reserve({ containerId: 'c1', ifname: 'eth0', requested: ['10.244.1.60'] }))
  t.equal(other?.kind, 'unavailable', 'an attachment cannot take a second address in the same range')
  t.same(recordFiles(dir), ['10.244.1.50'], 'failed requests took nothing')
})

t.test('the range is exhausted at exactly 253 reservations; rotation wraps around', async (t) => {
  const { store, dir } = freshStore()
  const addresses = new Set<string>()
  for (let i = 0; i < 253; i++) {
    const [r] = await store.reserve({ containerId: `c${i}`, ifname: 'eth0' })
    addresses.add(r.address)
  }
  t.equal(addresses.size, 253, '253 distinct addresses')
  t.equal(recordFiles(dir).length, 253, '253 record files')
  t.notOk(addresses.has('10.244.1.0') || addresses.has('10.244.1.1') || addresses.has('10.244.1.255'), 'network, gateway and broadcast never handed out')

  const full = await ipamErrorOf(store.reserve({ containerId: 'one-too-many', ifname: 'eth0' }))
  t.equal(full?.kind, 'exhausted')
  t.equal(full?.message, 'no free address in 10.244.1.0/24: 253 of 253 in use')
  const status = await store.status()
  t.same(status, { writable: true, problem: 'no free address in 10.244.1.0/24: 253 of 253 in use', inUse: 253, capacity: 253 })

  // The last one handed out was .254; freeing .100 and .5 makes the next reserve wrap to .5.
  const holderOf = async (address: string): Promise<string> => ((await store.list()).find((r) => r.address === address) as Reservation).containerId
  await store.release({ containerId: await holderOf('10.244.1.100'), ifname: 'eth0' })
  await store.release({ containerId: await holderOf('10.244.1.5'), ifname: 'eth0' })
  const [next] = await store.reserve({ containerId: 'after-wrap', ifname: 'eth0' })
  t.equal(next.address, '10.244.1.5')
})

t.test('a corrupt record file is reported, not a crash, and its address stays taken', async (t) => {
  const { store, dir, problems } = freshStore()
  await store.reserve({ containerId: 'c1', ifname: 'eth0' })
  writeFileSync(join(dir, '10.244.1.3'), '{"address": "10.244.1.3", "range"')
  writeFileSync(join(dir, '10.244.1.4'), JSON.stringify({ address: '10.244.1.99', range: '10.244.1.0/24', containerId: 'x', ifname: 'eth0', createdAt: 'now' }))
  writeFileSync(join(dir, 'README'), 'not ours')
  const listed = await store.list()
  t.same(
    listed.map((r) => r.address),
    ['10.244.1.2'],
  )
  t.same(
    problems.map((p) => p.kind),
    ['invalid', 'invalid'],
  )
  t.match(problems.map((p) => p.message).sort(), [
    `corrupt reservation record ${join(dir, '10.244.1.3')}: not JSON`,
    `corrupt reservation record ${join(dir, '10.244.1.4')}: it names address "10.244.1.99", not 10.244.1.4`,
  ])
  const [r] = await store.reserve({ containerId: 'c2', ifname: 'eth0' })
  t.equal(r.address, '10.244.1.5', 'addresses with corrupt records are skipped')
  const gc = await store.releaseAllExcept([])
  t.same(
    gc.released.map((x) => x.address),
    ['10.244.1.2', '10.244.1.5'],
  )
  t.equal(gc.errors.length, 2, 'GC reports both corrupt records')
  t.same(recordFiles(dir), ['10.244.1.3', '10.244.1.4'], 'GC keeps corrupt records: it cannot know who uses them')
})

t.test('temp files of dead processes or older than a minute are swept; live ones stay', async (t) => {
  const { store, dir } = freshStore()
  await store.reserve({ containerId: 'c1', ifname: 'eth0' })
  const dead = `.tmp-${deadPid()}-abc`
  const liveFresh = `.tmp-${process.pid}-fresh`
  const liveOld = `.tmp-${process.pid}-old`
  const parentFresh = `.tmp-${process.ppid}-parent`
  for (const n of [dead, liveFresh, liveOld, parentFresh]) writeFileSync(join(dir, n), '{"address":')
  const twoMinutesAgo = new Date(Date.now() - 120_000)
  utimesSync(join(dir, liveOld), twoMinutesAgo, twoMinutesAgo)
  t.same(await store.sweepTemp(), [dead, liveOld].sort())
  t.same(tempFiles(dir), [liveFresh, parentFresh].sort())
  t.same(recordFiles(dir), ['10.244.1.2'], 'records are untouched')
})

t.test('releaseAllExcept keeps exactly the valid attachments', async (t) => {
  const { store, dir } = freshStore()
  for (const id of ['a', 'b', 'c', 'd', 'e']) await store.reserve({ containerId: id, ifname: 'eth0' })
  await store.reserve({ containerId: 'b', ifname: 'net1' })
  const dead = `.tmp-${deadPid()}-gc`
  writeFileSync(join(dir, dead), '')
  const { released, errors } = await store.releaseAllExcept([
    { containerId: 'b', ifname: 'eth0' },
    { containerId: 'd', ifname: 'eth0' },
    { containerId: 'gone', ifname: 'eth0' },
  ])
  t.same(errors, [])
  t.same(released.map((r) => `${r.containerId}/${r.ifname}`).sort(), ['a/eth0', 'b/net1', 'c/eth0', 'e/eth0'])
  t.same((await store.list()).map((r) => `${r.containerId}/${r.ifname}`).sort(), ['b/eth0', 'd/eth0'])
  t.equal(recordFiles(dir).length, 2)
  t.same(tempFiles(dir), [], 'leftover temp file swept by GC')
})

t.test('one address per range, all or nothing', async (t) => {
  const v6 = podRange(parseCidr('fd00:10:244:1::/120'))
  const { store, dir } = freshStore([range24, v6])
  const both = await store.reserve({ containerId: 'c1', ifname: 'eth0' })
  t.same(
    both.map((r) => [r.address, r.range]),
    [
      ['10.244.1.2', '10.244.1.0/24'],
      ['fd00:10:244:1::2', 'fd00:10:244:1::/120'],
    ],
  )
  t.same(recordFiles(dir), ['10.244.1.2', 'fd00:10:244:1::2'])
  await store.reserve({ containerId: 'c2', ifname: 'eth0', requested: ['fd00:10:244:1::50'] })

  const failed = await ipamErrorOf(store.reserve({ containerId: 'c3', ifname: 'eth0', requested: ['fd00:10:244:1::50'] }))
  t.equal(failed?.kind, 'unavailable', 'the second range fails')
  t.same(recordFiles(dir), ['10.244.1.2', '10.244.1.3', 'fd00:10:244:1::2', 'fd00:10:244:1::50'], 'the IPv4 address taken for c3 was given back')
  t.same(await store.find({ containerId: 'c3', ifname: 'eth0' }), [])
  t.same(
    (await store.release({ containerId: 'c1', ifname: 'eth0' })).map((r) => r.address),
    ['10.244.1.2', 'fd00:10:244:1::2'],
  )
})

t.test('release only touches the attachment it names', async (t) => {
  const { store, dir } = freshStore()
  await store.reserve({ containerId: 'a', ifname: 'eth0' })
  await store.reserve({ containerId: 'b', ifname: 'eth0' })
  t.same(await store.release({ containerId: 'a', ifname: 'eth1' }), [])
  t.same(await store.release({ containerId: 'b', ifname: 'eth0' }).then((rs) => rs.map((r) => r.address)), ['10.244.1.3'])
  t.same(recordFiles(dir), ['10.244.1.2'])
  t.same(
    readdirSync(dir).filter((n) => n.startsWith('.tmp-')),
    [],
    'no aside file left',
  )
})

t.test('bad input is rejected with kind invalid', async (t) => {
  const { store } = freshStore()
  t.equal((await ipamErrorOf(store.reserve({ containerId: '', ifname: 'eth0' })))?.kind, 'invalid')
  t.equal((await ipamErrorOf(store.release({ containerId: 'c', ifname: '' })))?.kind, 'invalid')
  t.throws(() => new PodAddressStore(join(runDir, 'x'), []), { kind: 'invalid', message: /no pod range configured/ })
  t.throws(() => new PodAddressStore(join(runDir, 'x'), [range24, podRange(parseCidr('10.244.0.0/16'))]), { kind: 'invalid', message: /overlap/ })
})

t.test('status of a healthy store', async (t) => {
  const { store } = freshStore()
  await store.reserve({ containerId: 'a', ifname: 'eth0' })
  t.same(await store.status(), { writable: true, inUse: 1, capacity: 253 })
})
