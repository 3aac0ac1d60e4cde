// Measuring one process at a time: wall-clock latency from spawn to exit (what a runtime waits
// for), peak RSS through GNU time, and the usual order statistics.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'

export interface Timed {
  ms: number
  code: number
  stdout: string
  stderr: string
}

/**
 * Runs `argv` with exactly `env` (spawn's env replaces the whole environment; this process is not
 * under tap, so nothing is injected) and `input` on stdin; measures spawn → exit.
 */
export function timed(argv: readonly string[], env: Record<string, string>, input = ''): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdin.on('error', () => {})
    child.stdin.end(input)
    child.on('error', (err) => reject(new Error(`spawn ${argv.join(' ')}: ${err.message}`)))
    child.on('close', (code, signal) => resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, code: code ?? 128, stdout, stderr: signal ? `${stderr}(killed by ${signal})` : stderr }))
  })
}

/** Peak resident set size of one run, in MiB (GNU time %M, which reports KiB). `scratch`: a directory of ours. */
export async function peakRssMiB(argv: readonly string[], env: Record<string, string>, scratch: string, input = ''): Promise<{ mib: number; run: Timed }> {
  const dir = mkdtempSync(join(scratch, 'rss-'))
  try {
    const out = join(dir, 'rss')
    const run = await timed(['/usr/bin/time', '-f', '%M', '-o', out, ...argv], env, input)
    const kib = Number(readFileSync(out, 'utf8').trim().split('\n').pop())
    if (!Number.isFinite(kib)) throw new Error(`peak RSS of ${argv.join(' ')}: unreadable GNU time output`)
    return { mib: kib / 1024, run }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * CPU time (user + system, ms) this process's reaped children have used so far: fields 16-17 of
 * /proc/self/stat (cutime, cstime), in clock ticks. Child processes' times are added when they are
 * waited for, including their own waited-for children (ptp's host-local). Take the difference
 * around a batch of calls: per call it is far steadier than wall time on a busy machine.
 */
export function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  // The command name (field 2) may contain spaces; fields after its closing parenthesis are plain.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[16 - 3]) + Number(fields[17 - 3])
  return (ticks * 1000) / CLOCK_TICKS
}

/** USER_HZ: 100 on every Linux architecture Node runs on (sysconf(_SC_CLK_TCK)). */
const CLOCK_TICKS = 100

/** Nearest-rank percentile (p in 0..100) of a non-empty sample. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) throw new Error('percentile of an empty sample')
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[rank - 1]!
}

export function median(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export interface Summary {
  n: number
  median: number
  p95: number
  min: number
  max: number
}

export function summarize(samples: readonly number[]): Summary {
  return { n: samples.length, median: median(samples), p95: percentile(samples, 95), min: Math.min(...samples), max: Math.max(...samples) }
}

/** Runs `jobs` with at most `width` in flight; resolves with their results in order and the wall time. */
export async function pool<T>(jobs: ReadonlyArray<() => Promise<T>>, width: number): Promise<{ results: T[]; wallMs: number }> {
  const results: T[] = new Array(jobs.length)
  let next = 0
  const t0 = process.hrtime.bigint()
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++
      results[i] = await jobs[i]!()
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, jobs.length) }, worker))
  return { results, wallMs: Number(process.hrtime.bigint() - t0) / 1e6 }
}

/**
 * What a bench made, undone in reverse order when it ends, fails or is interrupted (SIGINT):
 * `teardown` has the shape the test helpers take, so benches reuse them.
 */
export function benchCleanup(): { teardown: { teardown(fn: () => unknown): void }; cleanUp(): Promise<void>; forget(fn: () => unknown): void } {
  const cleanups: Array<() => unknown> = []
  const cleanUp = async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn()
      } catch (err) {
        console.error(`cleanup: ${(err as Error).message}`)
      }
    }
  }
  process.on('SIGINT', () => void cleanUp().then(() => process.exit(130)))
  const forget = (fn: () => unknown) => {
    const at = cleanups.indexOf(fn)
    if (at >= 0) cleanups.splice(at, 1)
  }
  return { teardown: { teardown: (fn) => void cleanups.push(fn) }, cleanUp, forget }
}

export function progress(msg: string): void {
  process.stderr.write(`${msg}\n`)
}
