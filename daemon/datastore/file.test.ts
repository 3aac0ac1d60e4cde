import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { datastoreErrorOf, openFor, request, runDatastoreContract, watchNodes } from './testing/contractSuite.js'
import { openFileDatastore } from './file.js'
import { selfIdentity } from './processIdentity.js'
import type { DatastoreConfig } from './types.js'

const root = await mkdtemp(join(tmpdir(), 'flatnet-filestore-'))
t.teardown(() => rm(root, { recursive: true, force: true }))
let stores = 0
const fresh = (): DatastoreConfig & { kind: 'file' } => ({ kind: 'file', path: join(root, `store-${++stores}`, 'nodes.json') })

t.test('contract', async (t) =>
  runDatastoreContract(t, fresh, {
    async afterConcurrentClaims(t, config) {
      if (config.kind !== 'file') return
      const dir = join(config.path, '..')
      t.equal((await stat(dir)).mode & 0o777, 0o700, 'state directory 0700')
      t.equal((await stat(config.path)).mode & 0o777, 0o600, 'state file 0600')
      t.same(await readdir(dir), ['nodes.json'], 'no lock or temp file is left behind')
      const doc = JSON.parse(await readFile(config.path, 'utf8')) as { generation: number }
      t.equal(doc.generation, 24, 'one committed generation per claim: no write was lost or doubled')
    },
  }),
)

const corruptions: Array<[string, string]> = [
  ['garbage bytes', 'this is not json\u0000\u0001'],
  ['an empty file', ''],
  ['JSON of something else', '{"hello": "world"}\n'],
  [
    'one subnet held twice',
    JSON.stringify({
      kind: 'flatnet/node-subnets',
      formatVersion: 1,
      generation: 3,
      nodes: [
        { name: 'a', nodeIP: '192.168.77.1', subnet: '10.244.0.0/24', owner: 'o1', updatedAt: '2024-01-01T00:00:00.000Z', expiresAt: null },
        { name: 'b', nodeIP: '192.168.77.2', subnet: '10.244.0.0/24', owner: 'o2', updatedAt: '2024-01-01T00:00:00.000Z', expiresAt: null },
      ],
    }),
  ],
]
for (const [what, content] of corruptions) {
  t.test(`a state file holding ${what} is refused as corrupt and left untouched`, async (t) => {
    const config = fresh()
    await mkdir(join(config.path, '..'), { recursive: true })
    await writeFile(config.path, content)
    const atOpen = await datastoreErrorOf(openFileDatastore(config))
    t.equal(atOpen?.kind, 'corrupt', 'open refuses it')
    t.match(atOpen?.message, config.path, 'the message names the file')
    t.equal(await readFile(config.path, 'utf8'), content, 'the file is unchanged')
  })
}

t.test('a state file corrupted while in use: claims, lists and watch report it, the file stays as it is', async (t) => {
  const config = fresh()
  const store = await openFor(t, config)
  await store.claim(request('before'))
  const seen = watchNodes(t, store)
  t.ok(await seen.until((nodes) => nodes.length === 1))
  const garbage = '{"kind": "flatnet/node-subnets", "formatVersion": 1, "generation": 9, "nodes": [{"name": 7}]}'
  await writeFile(config.path, garbage)
  t.equal((await datastoreErrorOf(store.claim(request('after'))))?.kind, 'corrupt', 'claim')
  t.equal((await datastoreErrorOf(store.list()))?.kind, 'corrupt', 'list')
  t.equal((await datastoreErrorOf(store.remove('before')))?.kind, 'corrupt', 'remove')
  const deadline = Date.now() + 10_000
  while (seen.errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  t.match(seen.errors[0]?.message, /not a valid flatnet node state file/, 'watch reports the error')
  t.equal(seen.calls.length, 1, 'and reports no node list made up from it')
  t.equal(await readFile(config.path, 'utf8'), garbage, 'the file is unchanged')
})

/** The pid of a process that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const child = spawn('true')
  await new Promise((resolve) => child.once('exit', resolve))
  return child.pid!
}

t.test('a lock left by a process that died is passed over, never waited for', async (t) => {
  const config = fresh()
  await mkdir(join(config.path, '..'), { recursive: true })
  const me = selfIdentity()
  // The state file does not exist yet: generation 0. Its first slot is held by a dead process.
  await writeFile(`${config.path}.lock.0.0`, JSON.stringify({ ...me, pid: await deadPid(), startTime: '1' }))
  const store = await openFileDatastore({ ...config, lockTimeoutMs: 2000 })
  t.teardown(() => store.close())
  t.equal((await store.claim(request('survivor'))).subnet, '10.244.0.0/24')
  t.same(await readdir(join(config.path, '..')), ['nodes.json'], 'the dead lock was collected after the commit')
})

t.test('a lock held by a live process is never broken: the claim fails unavailable naming the holder', async (t) => {
  const config = fresh()
  await mkdir(join(config.path, '..'), { recursive: true })
  // This very process is the live holder.
  await writeFile(`${config.path}.lock.0.0`, JSON.stringify(selfIdentity()))
  const store = await openFileDatastore({ ...config, lockTimeoutMs: 300 })
  t.teardown(() => store.close())
  const err = await datastoreErrorOf(store.claim(request('blocked')))
  t.equal(err?.kind, 'unavailable')
  t.match(err?.message, `live pid ${process.pid}`)
  t.same(await readdir(join(config.path, '..')), ['nodes.json.lock.0.0'], 'no state file was written')
})

t.test('with a lease TTL, a claim not renewed expires: it leaves list and watch, its name and subnet are free', async (t) => {
  const config = { ...fresh(), leaseTtlSeconds: 3 }
  const mortal = await openFor(t, config)
  const keeper = await openFor(t, config)
  await mortal.claim(request('mortal'))
  await keeper.claim(request('keeper'))
  const renewals = setInterval(() => void keeper.renew('keeper', 'owner-of-keeper').catch(() => undefined), 200)
  t.teardown(() => clearInterval(renewals))
  const seen = watchNodes(t, keeper)
  t.ok(await seen.until((nodes) => nodes.length === 2), 'both are there at first')
  const after = await seen.until((nodes) => nodes.map((n) => n.name).join() === 'keeper')
  t.ok(after, 'watch reports the expired one gone, the renewed one stays')
  t.same(
    (await keeper.list()).map((n) => n.name),
    ['keeper'],
  )
  t.equal((await datastoreErrorOf(mortal.renew('mortal', 'owner-of-mortal')))?.kind, 'lost', 'renewing too late: lost')
  const taken = await keeper.claim(request('mortal', { owner: 'a-new-daemon' }))
  t.equal(taken.owner, 'a-new-daemon', 'another owner may take the name over')
  t.equal(taken.subnet, '10.244.0.0/24', 'and gets the lowest free subnet, the one freed')
})
