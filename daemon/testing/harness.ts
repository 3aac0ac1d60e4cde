// Running the real flatnetd binary in throw-away namespaces, for the daemon's process tests (and
// the route benchmark): start it with `ip netns exec` (which execs, so the pid is the daemon's
// own), collect its JSON log lines, ask its HTTP endpoints from inside the namespace, stop it by
// signal. Everything started here is killed when the test ends, pass or fail.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { inNetns, runOk, type Netns, type TestNamespaces } from '../../e2e/helpers/index.js'

const root = fileURLToPath(new URL('../../', import.meta.url))

/** The built daemon (`./build.sh flatnetd`). */
export const flatnetdBinary = join(root, 'dist/bin/flatnetd')

/** The part of tap's Test the harness needs. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

function newestSource(dir: string): { path: string; mtimeMs: number } {
  let best = { path: '', mtimeMs: 0 }
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name)
    if (entry.isDirectory()) {
      if (entry.name === 'node_modules' || entry.name === 'build') continue
      const b = newestSource(p)
      if (b.mtimeMs > best.mtimeMs) best = b
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
      const m = statSync(p).mtimeMs
      if (m > best.mtimeMs) best = { path: p, mtimeMs: m }
    }
  }
  return best
}

/** Why the process tests cannot run: the binary is not built (a skip). */
export function flatnetdMissingReason(): string | undefined {
  return existsSync(flatnetdBinary) ? undefined : `${flatnetdBinary} does not exist: run ./build.sh flatnetd first`
}

/** A binary older than the sources it is built from would test old code: that is a failure, not a skip. */
export function flatnetdStaleReason(): string | undefined {
  if (!existsSync(flatnetdBinary)) return undefined
  const built = statSync(flatnetdBinary).mtimeMs
  for (const dir of ['daemon', 'conf', 'net', 'ipam']) {
    const newest = newestSource(join(root, dir))
    if (newest.mtimeMs > built) return `${flatnetdBinary} is older than ${newest.path}: run ./build.sh flatnetd`
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

/** Starts dist/bin/flatnetd inside `ns` with these flags. */
export function startFlatnetd(t: Teardown, ns: Netns, args: readonly string[], port = 9473): DaemonProcess {
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns.name, flatnetdBinary, '--listen', `127.0.0.1:${port}`, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
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
      code = c ?? 128 + (signal ? signalNumbers[signal] ?? 0 : 0)
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
 * last value seen after `timeoutMs`. The deadline is a hang guard, not an assertion on speed.
 */
export async function eventually<T>(what: string, read: () => Promise<T> | T, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
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
