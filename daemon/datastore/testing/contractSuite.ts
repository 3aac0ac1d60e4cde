// The behaviour every datastore backend must show, as one tap suite run against each backend
// (file.test.ts, etcd.test.ts). A backend passes by a factory handing out fresh, empty stores.
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build } from 'esbuild'
import type { Test } from 'tap'
import { DatastoreError, nodeFamilies, type ClaimRange, type ClaimRequest, type Datastore, type DatastoreConfig, type NodeNetworkCondition, type NodeRecord, type SeedingDatastore } from '../index.js'
import { openSeedingDatastore } from './seeding.js'

/**
 * Hands out the config of a fresh, empty store each time (own file, own etcd prefix, own fake
 * Kubernetes cluster). `nodeNames` are the nodes the test will claim for: a backend whose nodes
 * exist before any claim (Kubernetes: kubelet registers the Node object) registers them; file
 * and etcd ignore it.
 */
export type FreshStore = (nodeNames: readonly string[]) => DatastoreConfig | Promise<DatastoreConfig>

const cluster = '10.244.0.0/16'

const nodeIPs = new Map<string, string>()

/** The default node address of a node name: one per name (172.16.0.1, 172.16.0.2, …), since two live nodes never share one. */
export function nodeIPOf(name: string): string {
  let ip = nodeIPs.get(name)
  if (ip === undefined) {
    const n = nodeIPs.size + 1
    ip = `172.${16 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`
    nodeIPs.set(name, ip)
  }
  return ip
}

export function request(name: string, overrides: Partial<ClaimRequest> = {}): ClaimRequest {
  return { name, nodeIP: nodeIPOf(name), owner: `owner-of-${name}`, clusterCidr: cluster, prefixLength: 24, ...overrides }
}

const clusterV6 = 'fd00:10:244::/56'

/** The IPv6 address of a node name, beside its IPv4 one (fd00:77::<the same number>). */
export function nodeIPv6Of(name: string): string {
  const [, , a, b] = nodeIPOf(name).split('.').map(Number) as [number, number, number, number]
  return `fd00:77::${((a << 8) | b).toString(16)}`
}

/** A dual-stack claim: 10.244.0.0/16 by /24 and fd00:10:244::/56 by /64, an address of each family. */
export function dualRequest(name: string, overrides: Partial<ClaimRequest> = {}, v6: Partial<ClaimRange> = {}): ClaimRequest {
  return request(name, { nodeIPs: [nodeIPOf(name), nodeIPv6Of(name)], moreRanges: [{ clusterCidr: clusterV6, prefixLength: 64, ...v6 }], ...overrides })
}

/** The DatastoreError a promise rejects with (or undefined if it resolves or throws something else). */
export async function datastoreErrorOf(work: Promise<unknown>): Promise<DatastoreError | undefined> {
  try {
    await work
  } catch (err) {
    if (err instanceof DatastoreError) return err
    throw err
  }
  return undefined
}

/** Opens a store and closes it at teardown. */
export async function openFor(t: Test, config: DatastoreConfig): Promise<SeedingDatastore & Partial<NodeNetworkCondition>> {
  const store = await openSeedingDatastore(config)
  t.teardown(() => store.close())
  return store
}

/**
 * Watches a store and lets a test wait until the reported node list satisfies a condition. The
 * bound only turns a broken watch into a failure instead of a hang; nothing asserts on timing.
 */
export function watchNodes(t: Test, store: Datastore) {
  let latest: NodeRecord[] | undefined
  const calls: NodeRecord[][] = []
  const errors: Error[] = []
  let waiter: (() => void) | undefined
  const stop = store.watch(
    (nodes) => {
      latest = nodes
      calls.push(nodes)
      waiter?.()
    },
    (err) => errors.push(err),
  )
  t.teardown(stop)
  return {
    calls,
    errors,
    async until(condition: (nodes: NodeRecord[]) => boolean, boundMs = 10_000): Promise<NodeRecord[] | undefined> {
      const deadline = Date.now() + boundMs
      while (!(latest && condition(latest))) {
        const left = deadline - Date.now()
        if (left <= 0) return undefined
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left)
          waiter = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
      return latest
    },
  }
}

interface WorkerResult {
  record?: NodeRecord
  error?: { kind: string; message: string }
}

/** Bundles claimWorker.ts once (esbuild, ~50 ms) so each worker process starts in ~0.1 s. */
async function bundleWorker(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'flatnet-claim-worker-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const outfile = join(dir, 'claimWorker.mjs')
  const etcd3 = createRequire(import.meta.url).resolve('etcd3')
  await build({
    stdin: {
      contents: "import { runClaimWorker } from './claimWorker.ts'\nawait runClaimWorker(process.argv[2] ?? '{}')\n",
      resolveDir: new URL('.', import.meta.url).pathname,
      loader: 'ts',
      sourcefile: 'claimWorkerMain.ts',
    },
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'error',
    banner: { js: "import { createRequire as __flatnetCreateRequire } from 'node:module'; const require = __flatnetCreateRequire(import.meta.url);" },
    // etcd3 loads its .proto files from its own directory at run time: keep it out of the bundle.
    plugins: [{ name: 'etcd3-external', setup: (b) => b.onResolve({ filter: /^etcd3$/ }, () => ({ path: etcd3, external: true })) }],
  })
  return outfile
}

/** Runs one claim in each of `requests.length` separate processes, released at the same instant. */
export async function claimInProcesses(t: Test, config: DatastoreConfig, requests: ClaimRequest[]): Promise<WorkerResult[]> {
  const worker = await bundleWorker(t)
  // Not tap's NODE_OPTIONS (its TypeScript loader and coverage hooks cost ~0.5 s per process) nor
  // NODE_EXTRA_CA_CERTS (~80 ms; workers talk to loopback without TLS).
  const env = { ...process.env }
  delete env.NODE_OPTIONS
  delete env.NODE_EXTRA_CA_CERTS
  const children = requests.map((request) => {
    const child = spawn(process.execPath, [worker, JSON.stringify({ config, request })], { stdio: ['pipe', 'pipe', 'pipe'], env })
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    let out = ''
    let err = ''
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString()
    })
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.startsWith('ready\n')) resolve()
      })
      child.once('exit', (code) => reject(new Error(`claim worker for ${request.name} exited ${code} before ready: ${err}`)))
    })
    // 'close', not 'exit': the exit can be reported before the last stdout data has been read.
    const done = new Promise<WorkerResult>((resolve, reject) => {
      child.once('close', (code) => {
        const line = out.split('\n')[1]
        if (code !== 0 || !line) reject(new Error(`claim worker for ${request.name} exited ${code}: ${out} ${err}`))
        else resolve(JSON.parse(line) as WorkerResult)
      })
    })
    done.catch(() => undefined)
    return { child, ready, done }
  })
  await Promise.all(children.map((c) => c.ready))
  for (const c of children) c.child.stdin.end('go\n')
  return Promise.all(children.map((c) => c.done))
}

export interface ContractHooks {
  /** Backend-specific checks of the store the concurrent claims left behind (files, keys). */
  afterConcurrentClaims?(t: Test, config: DatastoreConfig): Promise<void>
}

export function runDatastoreContract(t: Test, fresh: FreshStore, hooks: ContractHooks = {}): void {
  t.test('claims made at the same instant by 24 separate processes get 24 distinct subnets, the lowest 24', async (t) => {
    const requests = Array.from({ length: 24 }, (_, i) => request(`node-${i}`, { nodeIP: `192.168.77.${10 + i}` }))
    const config = await fresh(requests.map((r) => r.name))
    const results = await claimInProcesses(t, config, requests)
    t.same(
      results.filter((r) => r.error).map((r) => r.error),
      [],
      'no process failed',
    )
    const subnets = results.map((r) => r.record?.subnet)
    t.equal(new Set(subnets).size, 24, 'every process got its own subnet')
    const lowest = Array.from({ length: 24 }, (_, i) => `10.244.${i}.0/24`)
    t.same([...subnets].sort(), [...lowest].sort(), 'together they hold exactly the 24 lowest subnets')
    const store = await openFor(t, config)
    const listed = await store.list()
    t.same(listed.map((n) => [n.name, n.subnet]).sort(), results.map((r) => [r.record!.name, r.record!.subnet]).sort(), 'the store lists exactly what each process was told')
    await hooks.afterConcurrentClaims?.(t, config)
  })

  t.test('a restart (new instance, same name and owner) keeps the subnet and updates the node IP', async (t) => {
    const config = await fresh(['alpha', 'beta'])
    const first = await openFor(t, config)
    await first.claim(request('alpha'))
    const before = await first.claim(request('beta'))
    t.equal(before.subnet, '10.244.1.0/24')
    await first.close()
    const second = await openFor(t, config)
    const after = await second.claim(request('beta', { nodeIP: '192.168.77.99' }))
    t.equal(after.subnet, '10.244.1.0/24', 'same subnet after the restart')
    t.equal(after.nodeIP, '192.168.77.99')
    t.same(
      (await second.list()).map((n) => [n.name, n.subnet, n.nodeIP]),
      [
        ['alpha', '10.244.0.0/24', nodeIPOf('alpha')],
        ['beta', '10.244.1.0/24', '192.168.77.99'],
      ],
    )
  })

  t.test('the backend and VTEP MAC are published beside the subnet; a restart with other values updates them for the peers', async (t) => {
    const config = await fresh(['vx-a', 'vx-b'])
    const first = await openFor(t, config)
    const plain = await first.claim(request('vx-a'))
    t.equal(plain.backend, undefined, 'a claim without backend fields (as earlier versions made) has none')
    t.equal(plain.vtepMac, undefined)
    const claimed = await first.claim(request('vx-b', { backend: 'auto', vtepMac: '02:aa:bb:cc:dd:01' }))
    t.same([claimed.backend, claimed.vtepMac], ['auto', '02:aa:bb:cc:dd:01'], 'the claim answers with them')
    const peer = await openFor(t, config)
    const seen = watchNodes(t, peer)
    t.ok(await seen.until((nodes) => nodes.find((n) => n.name === 'vx-b')?.vtepMac === '02:aa:bb:cc:dd:01'), "a peer's watch sees them")
    await first.close()
    const second = await openFor(t, config)
    const after = await second.claim(request('vx-b', { backend: 'vxlan', vtepMac: '02:aa:bb:cc:dd:02' }))
    t.equal(after.subnet, claimed.subnet, 'same subnet after the restart')
    t.ok(
      await seen.until((nodes) => {
        const b = nodes.find((n) => n.name === 'vx-b')
        return b?.backend === 'vxlan' && b.vtepMac === '02:aa:bb:cc:dd:02'
      }),
      "a peer's watch sees the new values",
    )
    t.same(
      (await peer.list()).map((n) => [n.name, n.backend, n.vtepMac]),
      [
        ['vx-a', undefined, undefined],
        ['vx-b', 'vxlan', '02:aa:bb:cc:dd:02'],
      ],
      'listed as written',
    )
    t.equal((await datastoreErrorOf(second.claim(request('vx-a', { vtepMac: '02:AA:BB:CC:DD:0' }))))?.kind, 'invalid', 'a malformed VTEP MAC is refused')
    t.equal((await datastoreErrorOf(second.claim(request('vx-a', { backend: 'ipip' as never }))))?.kind, 'invalid', 'an unknown backend is refused')
  })

  t.test('removing a node frees its subnet; the next claim reuses it', async (t) => {
    const store = await openFor(t, await fresh(['a', 'b', 'c', 'd']))
    for (const name of ['a', 'b', 'c']) await store.claim(request(name))
    t.equal(await store.remove('b'), true, 'remove reports the node existed')
    t.same(
      (await store.list()).map((n) => n.name),
      ['a', 'c'],
    )
    t.equal(await store.remove('b'), false, 'removing it again reports nothing to remove')
    t.equal((await store.claim(request('d'))).subnet, '10.244.1.0/24', "the new node gets b's subnet")
  })

  t.test('exhaustion of the cluster range is an error naming the range; a removal makes room', async (t) => {
    const store = await openFor(t, await fresh(['n0', 'n1', 'n2', 'n3', 'n4']))
    const small = { clusterCidr: '10.250.0.0/22', prefixLength: 24 }
    const got = []
    for (let i = 0; i < 4; i++) got.push((await store.claim(request(`n${i}`, small))).subnet)
    t.same(got, ['10.250.0.0/24', '10.250.1.0/24', '10.250.2.0/24', '10.250.3.0/24'])
    const err = await datastoreErrorOf(store.claim(request('n4', small)))
    t.equal(err?.kind, 'exhausted')
    t.match(err?.message, /10\.250\.0\.0\/22/, 'the message names the cluster range')
    t.equal((await store.list()).length, 4, 'the failed claim left nothing behind')
    await store.remove('n2')
    t.equal((await store.claim(request('n4', small))).subnet, '10.250.2.0/24')
  })

  t.test('a node that holds nothing gets its preferred subnet if free, else the lowest free one', async (t) => {
    const store = await openFor(t, await fresh(['first', 'returning', 'greedy', 'odd', 'bad']))
    await store.claim(request('first'))
    t.equal((await store.claim(request('returning', { preferSubnet: '10.244.7.0/24' }))).subnet, '10.244.7.0/24', 'free: granted')
    t.equal((await store.claim(request('greedy', { preferSubnet: '10.244.7.0/24' }))).subnet, '10.244.1.0/24', 'taken: the lowest free instead')
    t.equal((await store.claim(request('odd', { preferSubnet: '10.99.0.0/24' }))).subnet, '10.244.2.0/24', 'outside the range: the lowest free instead')
    t.equal((await store.claim(request('returning', { preferSubnet: '10.244.9.0/24' }))).subnet, '10.244.7.0/24', 'a node holding a subnet keeps it whatever it prefers')
    t.equal((await datastoreErrorOf(store.claim(request('bad', { preferSubnet: 'garbage' }))))?.kind, 'invalid', 'a preferred subnet that is not a CIDR is refused')
  })

  t.test('the same node name claimed by a different live owner is refused', async (t) => {
    const config = await fresh(['shared'])
    const one = await openFor(t, config)
    const two = await openFor(t, config)
    const held = await one.claim(request('shared', { owner: 'daemon-1' }))
    const err = await datastoreErrorOf(two.claim(request('shared', { owner: 'daemon-2', nodeIP: '192.168.77.20' })))
    t.equal(err?.kind, 'conflict')
    t.match(err?.message, /daemon-1/, 'the message names the holder')
    t.same(await two.list(), [held], 'the record is unchanged')
    t.equal((await datastoreErrorOf(two.renew('shared', 'daemon-2')))?.kind, 'conflict', 'renewing as the other owner is refused too')
  })

  t.test('a node claiming the address of another live node is refused, naming that node (issue 8 item 3)', async (t) => {
    const config = await fresh(['a', 'b', 'c', 'd'])
    const store = await openFor(t, config)
    const held = await store.claim(request('a', { nodeIP: '192.168.77.10' }))
    const err = await datastoreErrorOf(store.claim(request('b', { nodeIP: '192.168.77.10' })))
    t.equal(err?.kind, 'conflict', 'refused like a second daemon of one node name')
    t.match(err?.message, /node address 192\.168\.77\.10 is held by node a \(subnet 10\.244\.0\.0\/24/, 'the message names the address and the node holding it')
    t.same(await store.list(), [held], 'nothing written')
    // A node already holding a subnet cannot move onto a held address either (a restart with another --node-ip).
    const b = await store.claim(request('b'))
    t.equal((await datastoreErrorOf(store.claim(request('b', { nodeIP: '192.168.77.10' }))))?.kind, 'conflict')
    t.same(
      (await store.list()).map((n) => [n.name, n.nodeIP]),
      [
        ['a', '192.168.77.10'],
        ['b', b.nodeIP],
      ],
      'b keeps its own address',
    )
    // Two new nodes of one address in one batch: the second is refused.
    t.equal((await datastoreErrorOf(store.claimMany([request('c', { nodeIP: '192.168.77.30' }), request('d', { nodeIP: '192.168.77.30' })])))?.kind, 'conflict')
    t.notOk(
      (await store.list()).some((n) => n.name === 'd'),
      'd holds nothing',
    )
    // Once the holder is removed, the address is free.
    await store.remove('a')
    t.equal((await store.claim(request('b', { nodeIP: '192.168.77.10' }))).nodeIP, '192.168.77.10')
  })

  t.test('renew keeps a claim; a removed claim is reported lost', async (t) => {
    const store = await openFor(t, await fresh(['r1']))
    await store.claim(request('r1'))
    await store.renew('r1', 'owner-of-r1')
    t.equal((await store.list()).length, 1)
    await store.remove('r1')
    t.equal((await datastoreErrorOf(store.renew('r1', 'owner-of-r1')))?.kind, 'lost')
  })

  t.test('invalid requests are refused before touching the store', async (t) => {
    const store = await openFor(t, await fresh(['x']))
    t.equal((await datastoreErrorOf(store.claim(request('x', { prefixLength: 8 }))))?.kind, 'invalid', 'prefix length outside the range')
    t.equal((await datastoreErrorOf(store.claim(request('x', { clusterCidr: '10.244.0.1/16' }))))?.kind, 'invalid', 'cluster range with host bits')
    t.equal((await datastoreErrorOf(store.claim(request('bad/name'))))?.kind, 'invalid', 'node name with a slash')
    t.equal((await datastoreErrorOf(store.claim(request('x', { nodeIP: 'nope' }))))?.kind, 'invalid', 'node IP')
    t.equal((await datastoreErrorOf(store.claim(request('x', { owner: '' }))))?.kind, 'invalid', 'empty owner')
    t.same(await store.list(), [])
  })

  t.test('claimMany seeds hundreds of nodes with distinct lowest subnets', async (t) => {
    const seeds = Array.from({ length: 300 }, (_, i) => `seed-${i}`)
    const store = await openFor(t, await fresh(['early', ...seeds]))
    const wide = { clusterCidr: '10.240.0.0/12', prefixLength: 24 }
    await store.claim(request('early', wide))
    const records = await store.claimMany(seeds.map((name) => request(name, wide)))
    t.equal(records.length, 300)
    t.equal(new Set(records.map((r) => r.subnet)).size, 300, 'distinct')
    t.equal(records[0]!.subnet, '10.240.1.0/24', 'the first one after the existing node')
    t.equal(records[299]!.subnet, '10.241.44.0/24', 'the 300th is the 301st subnet of the range')
    t.equal((await store.list()).length, 301, 'all stored')
  })

  t.test('watch reports the current nodes, then additions and removals', async (t) => {
    const config = await fresh(['w1', 'w2'])
    const writer = await openFor(t, config)
    await writer.claim(request('w1'))
    const reader = await openFor(t, config)
    const seen = watchNodes(t, reader)
    t.ok(await seen.until((nodes) => nodes.length === 1 && nodes[0]!.name === 'w1'), 'first call: the node already there')
    await writer.claim(request('w2'))
    t.ok(await seen.until((nodes) => nodes.map((n) => n.name).join() === 'w1,w2'), 'an addition is reported')
    await writer.remove('w1')
    const last = await seen.until((nodes) => nodes.map((n) => n.name).join() === 'w2')
    t.ok(last, 'a removal is reported')
    t.equal(last?.[0]?.subnet, '10.244.1.0/24', 'with the full record')
    t.same(seen.errors, [], 'no errors')
  })

  t.test('dual-stack: claims at the same instant by 12 processes: each node gets a subnet of both families, all distinct, the lowest 12 of each', async (t) => {
    const requests = Array.from({ length: 12 }, (_, i) => dualRequest(`dual-${i}`, { nodeIP: `192.168.78.${10 + i}`, nodeIPs: [`192.168.78.${10 + i}`, `fd00:78::${10 + i}`] }))
    const config = await fresh(requests.map((r) => r.name))
    const results = await claimInProcesses(t, config, requests)
    t.same(
      results.filter((r) => r.error).map((r) => r.error),
      [],
      'no process failed',
    )
    const v4 = results.map((r) => r.record?.subnets?.[0])
    const v6 = results.map((r) => r.record?.subnets?.[1])
    t.same([...v4].sort(), Array.from({ length: 12 }, (_, i) => `10.244.${i}.0/24`).sort(), 'the 12 lowest IPv4 subnets, one each')
    t.same([...v6].sort(), Array.from({ length: 12 }, (_, i) => (i === 0 ? 'fd00:10:244::/64' : `fd00:10:244:${i.toString(16)}::/64`)).sort(), 'the 12 lowest IPv6 subnets, one each')
    for (const r of results) t.equal(r.record?.subnet, r.record?.subnets?.[0], `${r.record?.name}: subnet is the primary (IPv4) one`)
    const store = await openFor(t, config)
    t.same(
      (await store.list()).map((n) => [n.name, n.subnets, n.nodeIPs]).sort(),
      results.map((r) => [r.record!.name, r.record!.subnets, r.record!.nodeIPs]).sort(),
      'the store lists exactly what each process was told, both families',
    )
  })

  t.test('dual-stack: a record carries a subnet and an address per family in range order, kept across a restart', async (t) => {
    const config = await fresh(['d1', 'd2'])
    const store = await openFor(t, config)
    await store.claim(dualRequest('d1'))
    const d2 = await store.claim(dualRequest('d2'))
    t.same([d2.subnet, d2.nodeIP, d2.subnets, d2.nodeIPs], ['10.244.1.0/24', nodeIPOf('d2'), ['10.244.1.0/24', 'fd00:10:244:1::/64'], [nodeIPOf('d2'), nodeIPv6Of('d2')]])
    t.same(nodeFamilies(d2), [
      { family: 4, subnet: '10.244.1.0/24', nodeIP: nodeIPOf('d2') },
      { family: 6, subnet: 'fd00:10:244:1::/64', nodeIP: nodeIPv6Of('d2') },
    ])
    await store.close()
    const again = await openFor(t, config)
    const restarted = await again.claim(dualRequest('d2', { nodeIPs: [nodeIPOf('d2'), 'fd00:77::99'] }))
    t.same(restarted.subnets, d2.subnets, 'same subnets of both families after a restart')
    t.same(restarted.nodeIPs, [nodeIPOf('d2'), 'fd00:77::99'], 'the IPv6 address updated')
    t.same(
      (await again.list()).map((n) => [n.name, n.subnets]),
      [
        ['d1', ['10.244.0.0/24', 'fd00:10:244::/64']],
        ['d2', ['10.244.1.0/24', 'fd00:10:244:1::/64']],
      ],
    )
  })

  t.test('dual-stack: exhaustion of one family refuses the whole claim, naming the family; nothing of the other is taken', async (t) => {
    const store = await openFor(t, await fresh(['x0', 'x1', 'x2', 'x3']))
    const tiny = { clusterCidr: 'fd00:99::/63' } // two /64s
    t.equal((await store.claim(dualRequest('x0', {}, tiny))).subnets?.[1], 'fd00:99::/64')
    t.equal((await store.claim(dualRequest('x1', {}, tiny))).subnets?.[1], 'fd00:99:0:1::/64')
    const err = await datastoreErrorOf(store.claim(dualRequest('x2', {}, tiny)))
    t.equal(err?.kind, 'exhausted')
    t.match(err?.message, /the IPv6 cluster range fd00:99::\/63 is exhausted/, 'the message names the family and the range')
    t.same(
      (await store.list()).map((n) => n.name),
      ['x0', 'x1'],
      'x2 holds nothing',
    )
    t.equal((await store.claim(request('x3'))).subnet, '10.244.2.0/24', 'the IPv4 subnet the failed claim would have had is still free')
  })

  t.test('dual-stack: a single-family record (as the previous version wrote it) claimed again with two ranges keeps its subnet and gains the other', async (t) => {
    const store = await openFor(t, await fresh(['old', 'other']))
    await store.claim(request('other'))
    const before = await store.claim(request('old'))
    t.equal(before.subnets, undefined, 'a single-family record has no arrays')
    t.same(nodeFamilies(before), [{ family: 4, subnet: '10.244.1.0/24', nodeIP: nodeIPOf('old') }], 'and reads as one IPv4 family')
    const after = await store.claim(dualRequest('old'))
    t.same(after.subnets, ['10.244.1.0/24', 'fd00:10:244::/64'], 'the IPv4 subnet kept, an IPv6 one gained')
    t.same(after.nodeIPs, [nodeIPOf('old'), nodeIPv6Of('old')])
    t.same((await store.list()).find((n) => n.name === 'old')?.subnets, after.subnets, 'stored')
    t.equal((await store.claim(dualRequest('other'))).subnets?.[1], 'fd00:10:244:1::/64', 'the next node gains the next IPv6 subnet')
  })

  t.test('dual-stack: two ranges of one family, or two addresses of one family, are refused as invalid', async (t) => {
    const store = await openFor(t, await fresh(['bad']))
    const twoV4 = await datastoreErrorOf(store.claim(request('bad', { moreRanges: [{ clusterCidr: '10.245.0.0/16', prefixLength: 24 }] })))
    t.equal(twoV4?.kind, 'invalid')
    t.match(twoV4?.message, /10\.244\.0\.0\/16 and 10\.245\.0\.0\/16 are both IPv4/)
    t.equal((await datastoreErrorOf(store.claim(dualRequest('bad', { nodeIPs: ['192.168.79.1', '192.168.79.2'] }))))?.kind, 'invalid')
    t.same(await store.list(), [])
  })
}
