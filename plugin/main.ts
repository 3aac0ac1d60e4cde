// The flatnet CNI plugin: one process per runtime call (SPEC.md "Execution Protocol").
// stdout carries exactly one JSON document: the result, or the error. Everything else goes to
// the log file or stderr. The call itself is invoke.ts; this is only the process around it.
import { readFileSync, writeSync } from 'node:fs'
import { CniError, Code } from './errors.js'
import { isSupported, LATEST } from './versions.js'

function readStdin(): Buffer {
  try {
    return readFileSync(0)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'EAGAIN' || code === 'EOF' || code === 'ENXIO') return Buffer.alloc(0)
    throw new CniError(Code.ioFailure, `read network configuration from stdin: ${code ?? (e as Error).message}`)
  }
}

/**
 * Writes the document to fd 1 directly: process.stdout on a pipe (how runtimes call us) would load
 * node:net and the stream machinery, ~3 ms of every call. Whatever a plain write cannot finish
 * (a non-blocking pipe that is full: EAGAIN; or any error) goes through process.stdout as before,
 * and `done` runs once everything is out.
 */
function writeStdout(text: string, done: () => void): void {
  const bytes = Buffer.from(text)
  let off = 0
  try {
    while (off < bytes.length) off += writeSync(1, bytes, off)
  } catch {
    process.stdout.write(bytes.subarray(off), done)
    return
  }
  done()
}

/**
 * The call itself is loaded only here, inside a catch: loading it loads the native modules
 * (netlink.node is required when its module is first evaluated), and a missing or broken one
 * throws at load time — before invokePlugin's own catch exists. A runtime must still read one
 * CNI error on stdout, not a Node stack trace (in the bundle, a dynamic import of a bundled
 * module is a lazy evaluation of that module: no extra file is read).
 */
async function invoke(): Promise<{ document?: Record<string, unknown>; exitCode: 0 | 1 }> {
  let stdin: Buffer | undefined
  const readOnce = (): Buffer => (stdin ??= readStdin())
  try {
    const { invokePlugin } = await import('./invoke.js')
    return await invokePlugin(process.env, readOnce)
  } catch (e) {
    let version: unknown = LATEST
    try {
      version = (JSON.parse(readOnce().toString()) as { cniVersion?: unknown }).cniVersion
    } catch {
      // no readable configuration: answer in the latest version
    }
    const firstLine = String((e as Error)?.message ?? e).split('\n')[0]
    const err = e instanceof CniError ? e : new CniError(Code.ioFailure, `load the flatnet plugin: ${firstLine}`)
    process.stderr.write(`flatnet: ${(e as Error)?.stack ?? String(e)}\n`)
    return { document: { cniVersion: isSupported(version) ? version : LATEST, code: err.code, msg: err.message, details: err.details }, exitCode: 1 }
  }
}

async function main(): Promise<void> {
  const outcome = await invoke()
  process.exitCode = outcome.exitCode
  // Sockets and timers must not hold the runtime waiting: once the answer is out, we are done.
  // "Out" means flushed: a write larger than the pipe's buffer (64 KiB) completes asynchronously,
  // and exiting before it does would hand the runtime half a JSON document.
  if (outcome.document) writeStdout(JSON.stringify(outcome.document) + '\n', () => process.exit())
  else process.exit()
}

void main()
