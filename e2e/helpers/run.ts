// Runs a program the way the tests need it: an argument array (never a shell string), optional
// bytes on stdin, captured stdout/stderr, and a hard timeout so a hung child cannot hang the suite.
import { spawn } from 'node:child_process'

export interface RunOptions {
  /** Written to the child's stdin, then stdin is closed. Without it stdin is empty (closed at once). */
  input?: string
  /** The child's whole environment. Defaults to this process's environment. */
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Killed with SIGKILL after this many ms; the result then has `timedOut: true`. Default 30 s. */
  timeoutMs?: number
}

export interface RunResult {
  /** Exit code; 128 + signal number when the child was killed by a signal. */
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
    // A child that exits without reading stdin makes the write fail with EPIPE; its exit code is
    // what matters then, not the broken pipe.
    child.stdin.on('error', () => {})
    child.stdin.end(options.input ?? '')
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(new Error(`run ${argv.join(' ')}: ${err.message}`))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({
        code: code ?? 128 + (signal ? signalNumbers[signal] ?? 0 : 0),
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
        timedOut,
      })
    })
  })
}

/** Like `run`, but a non-zero exit is an error that names the command and quotes its stderr. */
export async function runOk(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const result = await run(argv, options)
  if (result.code !== 0) {
    const why = result.timedOut ? 'timed out' : `exit ${result.code}`
    throw new Error(`${argv.join(' ')}: ${why}: ${(result.stderr || result.stdout).trim()}`)
  }
  return result
}
