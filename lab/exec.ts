// Running programs for the lab: argument arrays (never a shell string), captured output, a hard
// timeout, and a clean environment for every Node process the lab starts.
//
// Shipped code (dist/bin/flatnetctl); the test helpers (e2e/helpers/run.ts) use this same runner.
import { spawn } from 'node:child_process'
import { dirname } from 'node:path'

export interface RunOptions {
  /** Written to stdin, then stdin is closed. Without it stdin is empty (closed at once). */
  input?: string
  /** The child's whole environment. Defaults to this process's environment. */
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Killed with SIGKILL after this many ms (default 30 s); the result then has timedOut. */
  timeoutMs?: number
}

export interface RunResult {
  /** Exit code; 128 + signal number when killed by a signal. */
  code: number
  stdout: string
  stderr: string
  timedOut: boolean
}

const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 }

export function run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv
  if (file === undefined) return Promise.reject(new Error('run: empty argument list'))
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, options.timeoutMs ?? 30_000)
    child.stdout.on('data', (d: Buffer) => stdout.push(d))
    child.stderr.on('data', (d: Buffer) => stderr.push(d))
    child.stdin.on('error', () => {}) // a child that never reads stdin: its exit code is what counts
    child.stdin.end(options.input ?? '')
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(new Error(`run ${argv.join(' ')}: ${err.message}`))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({
        code: code ?? 128 + (signal ? (signalNumbers[signal] ?? 0) : 0),
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
        timedOut,
      })
    })
  })
}

/** Like run, but a non-zero exit throws, naming `what` (or the command) and quoting stderr. */
export async function runOk(argv: readonly string[], options: RunOptions & { what?: string } = {}): Promise<RunResult> {
  const result = await run(argv, options)
  if (result.code !== 0) {
    const why = result.timedOut ? 'timed out' : `exit ${result.code}`
    throw new Error(`${options.what ?? argv.join(' ')}: ${why}: ${(result.stderr || result.stdout).trim()}`)
  }
  return result
}

/** `ip netns exec NAME argv…` */
export function inNetns(netns: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', netns, ...argv]
}

/** The Node that runs the lab also runs everything the lab starts, first on every PATH we give. */
export const nodeBinary = process.execPath

export const childPath = [...new Set([dirname(process.execPath), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'])].join(':')

/**
 * argv that runs `argv` with exactly PATH plus `vars` as its environment. Through `env -i` and
 * not spawn's `env` option: a test runner may hook child_process and add NODE_OPTIONS to every
 * child, and a shell may set NODE_EXTRA_CA_CERTS, which cost each Node start ~80 ms on the
 * project's 2-core test machines (reading the extra certificates at start). Nothing of the
 * caller's environment reaches a daemon, a plugin or a probe.
 */
export function cleanEnvArgv(vars: Record<string, string>, argv: readonly string[]): string[] {
  const env = { PATH: childPath, ...vars }
  return ['/usr/bin/env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...argv]
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
