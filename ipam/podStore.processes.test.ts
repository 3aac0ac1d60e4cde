// The store's promises across real OS processes: a hundred plugin processes racing for one /24,
// and processes killed with SIGKILL in the middle of a reservation.
//
// Children run ipam/testing/reserve-one.ts bundled once with esbuild into a plain .mjs: under
// tap's TypeScript loader each child would take ~0.5-1.3 s of CPU to start, a hundred of them far
// too long on two cores; the bundle starts in ~50 ms and is the very same source.
import t from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { PodAddressStore, StoreStep, parseCidr, parseAddress, podRange, cidrContains } from './index.js'

const runDir = mkdtempSync(join(tmpdir(), `flatnet-ipam-procs-${process.pid}-`))
const children = new Set<ChildProcess>()
t.teardown(() => {
  for (const c of children) c.kill('SIGKILL')
  rmSync(runDir, { recursive: true, force: true })
})

const range = '10.244.1.0/24'
const script = join(runDir, 'reserve-one.mjs')
await build({
  entryPoints: [fileURLToPath(new URL('./testing/reserve-one.ts', import.meta.url))],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile: script,
  logLevel: 'error',
})

interface ChildResult {
  pid: number
  stdout: string
  code: number | null
  signal: NodeJS.Signals | null
}

/** Starts one reserve-one process; `extraEnv` reaches only that child. */
function startReserver(dir: string, containerId: string, opts: { waitForGo?: boolean; extraEnv?: Record<string, string> } = {}) {
  // A runtime-like environment: without NODE_EXTRA_CA_CERTS a node start is ~80 ms cheaper here.
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...opts.extraEnv }
  const args = [script, dir, range, containerId, ...(opts.waitForGo ? ['--wait-for-go'] : [])]
  const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'inherit'] })
  children.add(child)
  let stdout = ''
  child.stdout.setEncoding('utf8')
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: string) => {
      stdout += d
      if (stdout.startsWith('ready\n')) resolve()
    })
    child.on('exit', () => reject(new Error(`reserver ${containerId} exited before it was ready: ${stdout}`)))
  })
  ready.catch(() => undefined)
  const done = new Promise<ChildResult>((resolve) => {
    child.on('close', (code, signal) => {
      children.delete(child)
      resolve({ pid: child.pid as number, stdout: stdout.replace(/^ready\n/, ''), code, signal })
    })
  })
  return { child, ready, done }
}

t.test('100 processes reserving at the same instant get 100 distinct addresses', async (t) => {
  const dir = join(runDir, 'race', 'net1')
  const n = 100
  const t0 = performance.now()
  const reservers = Array.from({ length: n }, (_, i) => startReserver(dir, `pod-${i}`, { waitForGo: true }))
  await Promise.all(reservers.map((r) => r.ready))
  // All hundred are loaded and waiting; release them together.
  const t1 = performance.now()
  for (const r of reservers) r.child.stdin?.end('go\n')
  const results = await Promise.all(reservers.map((r) => r.done))
  t.comment(`${n} processes started in ${Math.round(t1 - t0)} ms, all reserved and exited ${Math.round(performance.now() - t1)} ms after "go"`)

  const failures = results.filter((r) => r.code !== 0)
  t.same(failures, [], 'every process succeeded')
  const addresses = results.map((r) => (r.stdout.startsWith('{') ? (JSON.parse(r.stdout) as { address: string }).address : r.stdout))
  t.equal(new Set(addresses).size, n, `${n} distinct addresses`)
  const cidr = parseCidr(range)
  t.ok(
    addresses.every((a) => {
      const v = parseAddress(a)
      return cidrContains(cidr, v.family, v.value) && !a.endsWith('.0') && !a.endsWith('.1') && !a.endsWith('.255')
    }),
    'all are pod addresses of the range',
  )

  const files = readdirSync(dir)
  const records = files.filter((f) => /^[0-9.]+$/.test(f))
  t.equal(records.length, n, `${n} record files`)
  t.same(records.sort(), [...addresses].sort(), 'one file per handed-out address')
  t.same(
    files.filter((f) => f.startsWith('.tmp-')),
    [],
    'no temp file left behind',
  )
  // Every file names the process that got it: nobody's record was overwritten.
  const owners = new Map(results.map((r, i) => [addresses[i], `pod-${i}`]))
  const mismatched = records.filter((f) => (JSON.parse(readFileSync(join(dir, f), 'utf8')) as { containerId: string }).containerId !== owners.get(f))
  t.same(mismatched, [], 'each record belongs to the process that reported it')
})

t.test('SIGKILL after the temp file is written leaves no reservation, and the sweep removes the temp', async (t) => {
  const dir = join(runDir, 'crash-temp', 'net1')
  const r = await startReserver(dir, 'doomed', { extraEnv: { FLATNET_TEST_CRASH_AT: StoreStep.afterTemp } }).done
  t.equal(r.signal, 'SIGKILL', 'the child died by SIGKILL mid-reserve')
  const files = readdirSync(dir)
  t.same(
    files.filter((f) => /^[0-9.]+$/.test(f)),
    [],
    'no reservation file',
  )
  const temps = files.filter((f) => f.startsWith('.tmp-'))
  t.same(temps, [`.tmp-${r.pid}-${temps[0]?.slice(`.tmp-${r.pid}-`.length)}`], 'exactly one temp file, named by the dead pid')

  const store = new PodAddressStore(dir, [podRange(parseCidr(range))])
  t.same(await store.list(), [], 'the store sees no reservation')
  t.same(await store.sweepTemp(), temps, "the sweep removes the dead process's temp file")
  t.same(
    readdirSync(dir).filter((f) => f.startsWith('.tmp-')),
    [],
  )
  const [next] = await store.reserve({ containerId: 'survivor', ifname: 'eth0' })
  t.equal(next.address, '10.244.1.2', 'the address the dead process was trying is free')
})

t.test('SIGKILL right after the link leaves a complete reservation', async (t) => {
  const dir = join(runDir, 'crash-link', 'net1')
  const r = await startReserver(dir, 'linked', { extraEnv: { FLATNET_TEST_CRASH_AT: StoreStep.afterLink } }).done
  t.equal(r.signal, 'SIGKILL')
  const store = new PodAddressStore(dir, [podRange(parseCidr(range))])
  const listed = await store.list()
  t.same(
    listed.map((x) => [x.address, x.containerId, x.ifname, x.range]),
    [['10.244.1.2', 'linked', 'eth0', range]],
    'the record is whole',
  )
  t.equal((await store.sweepTemp()).length, 1, 'its temp file is swept')
  t.same(
    readdirSync(dir).filter((f) => f.startsWith('.tmp-')),
    [],
  )
  t.same(
    (await store.release({ containerId: 'linked', ifname: 'eth0' })).map((x) => x.address),
    ['10.244.1.2'],
    'and it can be released',
  )
})
