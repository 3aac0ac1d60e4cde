// The flatnet CNI plugin: one process per runtime call (SPEC.md "Execution Protocol").
// stdout carries exactly one JSON document: the result, or the error. Everything else goes to
// the log file or stderr. The call itself is invoke.ts; this is only the process around it.
import { readFileSync, writeSync } from 'node:fs'
import { CniError, Code } from './errors.js'
import { invokePlugin } from './invoke.js'

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

async function main(): Promise<void> {
  const outcome = await invokePlugin(process.env, readStdin)
  process.exitCode = outcome.exitCode
  // Sockets and timers must not hold the runtime waiting: once the answer is out, we are done.
  // "Out" means flushed: a write larger than the pipe's buffer (64 KiB) completes asynchronously,
  // and exiting before it does would hand the runtime half a JSON document.
  if (outcome.document) writeStdout(JSON.stringify(outcome.document) + '\n', () => process.exit())
  else process.exit()
}

void main()
