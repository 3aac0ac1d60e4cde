// Running the real flatnetd binary in throw-away namespaces, for the daemon's process tests (and
// the route benchmark): start it with `ip netns exec` (which execs, so the pid is the daemon's
// own), collect its JSON log lines, ask its HTTP endpoints from inside the namespace, stop it by
// signal. Everything started here is killed when the test ends, pass or fail.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { inNetns, runOk, type Netns, type TestNamespaces } from '../../e2e/helpers/index.js'

const root = fileURLToPath(new URL('../../', import.meta.url))

/** The built daemon (`./build.sh flatnetd`); FLATNETD_BINARY points elsewhere (a variant to compare, with its ../lib). */
export const flatnetdBinary = process.env.FLATNETD_BINARY || join(root, 'dist/bin/flatnetd')

/** The part of tap's Test the harness needs. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

/** Why the process tests cannot run: the binary is not built (a skip). */
export function flatnetdMissingReason(): string | undefined {
  return existsSync(flatnetdBinary) ? undefined : `${flatnetdBinary} does not exist: run ./build.sh flatnetd first`
}

/**
 * Why the binary may be older than its sources (the bundle's real inputs, from esbuild's metafile,
 * nothing written), or undefined. A hint only: esbuild does not rewrite an output whose bytes did
 * not change, so a source edit that does not reach the bundle leaves the binary's mtime behind.
 */
export async function flatnetdStaleReason(): Promise<string | undefined> {
  if (!existsSync(flatnetdBinary)) return undefined
  const built = statSync(flatnetdBinary).mtimeMs
  const { metafile } = await build({
    entryPoints: [join(root, 'daemon/main.ts')],
    bundle: true,
    write: false,
    metafile: true,
    platform: 'node',
    format: 'cjs',
    logLevel: 'silent',
  })
  for (const input of Object.keys(metafile.inputs)) {
    if (input.includes('node_modules')) continue
    const path = join(root, input)
    if (existsSync(path) && statSync(path).mtimeMs > built) return `${flatnetdBinary} is older than its source ${input}: run ./build.sh flatnetd`
  }
  return undefined
}

/** A temp directory `fnt-<tag>-…`, removed when the test ends. */
export function tempDir(t: Teardown, tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `fnt-${tag}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * A node namespace: `lo` up, and a veth pair `lan0`/`lan1` (both ends inside, both up) with
 * `lanAddress` on lan0, so every address of that network is on-link for the daemon.
 */
export async function nodeNamespace(nss: TestNamespaces, lanAddress: string, suffix?: string): Promise<Netns> {
  const ns = await nss.create(suffix)
  const ip = (...args: string[]) => runOk(['ip', '-n', ns.name, ...args])
  await ip('link', 'set', 'lo', 'up')
  await ip('link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan1')
  await ip('addr', 'add', lanAddress, 'dev', 'lan0')
  await ip('link', 'set', 'lan0', 'up')
  await ip('link', 'set', 'lan1', 'up')
  return ns
}

export type LogLine = Record<string, unknown> & { level?: string; msg?: string }

export interface DaemonProcess {
  readonly pid: number
  readonly ns: Netns
  /** Log lines so far (stdout, parsed). */
  readonly logs: LogLine[]
  /** Raw stdout lines that were not JSON (there should be none). */
  readonly junk: string[]
  stderr(): string
  /** Resolves with the exit code (128+signal when killed by one). */
  readonly exited: Promise<number>
  exitCode(): number | undefined
  /** Sends the signal and waits for the exit (SIGKILL after `graceMs`, the result then reporting it). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number>
  /** GET http://127.0.0.1:<port><path> from inside the namespace. */
  http(path: string): Promise<{ status: number; body: string }>
}

const signalNumbers: Record<string, number> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }

/**
 * Starts dist/bin/flatnetd inside `ns` with these flags. `wrapper` is a command line that ends by
 * exec'ing its arguments (e.g. `unshare --mount sh -c '…; exec "$@"' sh`), so the pid stays the daemon's.
 */
export function startFlatnetd(t: Teardown, ns: Netns, args: readonly string[], port = 9473, wrapper: readonly string[] = []): DaemonProcess {
  // The CNI socket off unless a test asks for one: test daemons must not bind the host's default
  // /run/flatnet/cni.sock (several at once would replace each other's).
  const child: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', ns.name, ...wrapper, flatnetdBinary, '--listen', `127.0.0.1:${port}`, ...(args.includes('--cni-socket') ? [] : ['--cni-socket', '']), ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  const logs: LogLine[] = []
  const junk: string[] = []
  let err = ''
  let partial = ''
  child.stdout!.on('data', (d: Buffer) => {
    const text = partial + d.toString()
    const lines = text.split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      if (line === '') continue
      try {
        logs.push(JSON.parse(line) as LogLine)
      } catch {
        junk.push(line)
      }
    }
  })
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  let code: number | undefined
  const exited = new Promise<number>((resolve) => {
    child.on('close', (c, signal) => {
      code = c ?? 128 + (signal ? (signalNumbers[signal] ?? 0) : 0)
      resolve(code)
    })
  })
  t.teardown(async () => {
    if (code === undefined) {
      child.kill('SIGKILL')
      await exited
    }
  })
  const stop = async (signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<number> => {
    if (code !== undefined) return code
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    try {
      return await exited
    } finally {
      clearTimeout(timer)
    }
  }
  const http = async (path: string) => {
    const r = await inNetns(ns, ['curl', '-sS', '--max-time', '5', '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`])
    if (r.code !== 0) return { status: 0, body: r.stderr.trim() }
    const i = r.stdout.lastIndexOf('\n')
    return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) }
  }
  return { pid: child.pid!, ns, logs, junk, stderr: () => err, exited, exitCode: () => code, stop, http }
}

/**
 * Polls `read` until `ok` holds for its value, and returns that value; throws `what` with the
 * last value seen after `timeoutMs`. The deadline is a hang guard, not an assertion on speed: 15 s
 * failed daemon readiness waits on a fresh-clone run with four test files at once on 2 cores.
 */
export async function eventually<T>(what: string, read: () => Promise<T> | T, ok: (v: T) => boolean, timeoutMs = 45_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T | undefined
  for (;;) {
    last = await read()
    if (ok(last)) return last
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms; last value: ${JSON.stringify(last)?.slice(0, 2000)}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** `dst via gw proto P` lines of the main table (non-kernel routes), sorted. */
export async function routeLines(ns: Netns): Promise<string[]> {
  const { stdout } = await runOk(['ip', '-n', ns.name, '-j', '-4', 'route', 'show', 'table', 'main'])
  const raw = JSON.parse(stdout.trim() || '[]') as Array<{ dst: string; gateway?: string; protocol?: string }>
  return raw
    .filter((r) => r.protocol !== 'kernel')
    .map((r) => `${r.dst}${r.gateway ? ` via ${r.gateway}` : ''} proto ${r.protocol ?? 'boot'}`)
    .sort()
}

// A reader in another process, as a runtime would be: reads and parses the conflist in a tight
// loop until `stopFile` exists, counting reads, partial (unparsable) and missing files, and the
// distinct flatnet plugin objects seen.
const readerScript = `
const fs = require('fs')
const [path, stopFile] = process.argv.slice(1)
const seen = { reads: 0, partial: 0, missing: 0, versions: new Set() }
for (let i = 0; ; i++) {
  if (i % 200 === 0 && fs.existsSync(stopFile)) break
  let text
  try { text = fs.readFileSync(path, 'utf8') } catch (e) { seen.missing++; continue }
  if (seen.reads++ === 0) process.stdout.write('reading\\n')
  try { seen.versions.add(JSON.stringify(JSON.parse(text).plugins[0])) } catch { seen.partial++ }
}
process.stdout.write(JSON.stringify({ ...seen, versions: seen.versions.size }))
`

export interface ReaderResult {
  reads: number
  partial: number
  missing: number
  versions: number
}

/**
 * The reader in its own process. `started` resolves once it has read the file once: a test writes
 * only then (a process starting on a loaded machine took longer than a whole writing loop, and a
 * reader that read nothing proves nothing).
 */
export function startConflistReader(path: string, stopFile: string): { started: Promise<void>; done: Promise<ReaderResult>; kill(): void } {
  const child = spawn(process.execPath, ['-e', readerScript, path, stopFile], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  let markStarted: () => void = () => {}
  const started = new Promise<void>((resolve) => (markStarted = resolve))
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString()
    if (out.startsWith('reading\n')) markStarted()
  })
  const done = new Promise<ReaderResult>((resolve, reject) =>
    child.on('close', (code) => {
      markStarted()
      if (code === 0) resolve(JSON.parse(out.replace(/^reading\n/, '')) as ReaderResult)
      else reject(new Error(`reader exit ${code}`))
    }),
  )
  return { started, done, kill: () => child.kill('SIGKILL') }
}
