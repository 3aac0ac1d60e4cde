// Test-only: runs fuzz cases in one process through invokePlugin — the exact code path of the
// binary minus the process start — so thousands of cases cost seconds, not minutes. Started by
// fuzz.test.ts inside the throw-away node namespace (bundled with esbuild), never on the host.
//
//   node fuzzDriver.cjs CASES.jsonl RESULTS.jsonl     (one JSON document per line, each way)
//
// Anything the plugin writes to stdout by itself (it must not: stdout is the result's) is caught
// and reported with the case. A successful live ADD is undone at once with a DEL, so the pod
// namespace is empty again for the next case. Progress goes to stderr, so a case that hangs the
// process is named by the last line.
import { appendFileSync, createReadStream, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import type { FuzzCase } from './fuzzCases.js'
import { invokePlugin } from '../invoke.js'

export interface FuzzOutcome {
  id: number
  exitCode: number
  /** Exactly what a process would have printed: the document's line plus anything stray. */
  stdout: string
  /** The DEL that undid a successful live ADD. */
  undo?: { exitCode: number; stdout: string }
}

async function callOnce(env: Record<string, string>, stdin: Buffer): Promise<{ exitCode: number; stdout: string }> {
  let stray = ''
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stray += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString()
    return true
  }) as typeof process.stdout.write
  try {
    const out = await invokePlugin(env, () => stdin)
    return { exitCode: out.exitCode, stdout: stray + (out.document ? JSON.stringify(out.document) + '\n' : '') }
  } finally {
    process.stdout.write = write
  }
}

async function main(): Promise<void> {
  const [casesFile, resultsFile] = process.argv.slice(2)
  if (!casesFile || !resultsFile) {
    // Also what a test runner sees when it loads every file of the folder: nothing to do.
    process.stderr.write('usage: fuzzDriver CASES.json RESULTS.json (run by plugin/fuzz.test.ts)\n')
    return
  }
  // Line by line: thousands of cases with megabyte inputs do not fit in one string.
  writeFileSync(resultsFile, '')
  for await (const line of createInterface({ input: createReadStream(casesFile), crlfDelay: Infinity })) {
    if (line === '') continue
    const c = JSON.parse(line) as FuzzCase
    process.stderr.write(`case ${c.id}\n`)
    const stdin = Buffer.from(c.stdin, 'base64')
    const r: FuzzOutcome = { id: c.id, ...(await callOnce(c.env, stdin)) }
    if (c.live && r.exitCode === 0 && c.env.CNI_COMMAND === 'ADD') r.undo = await callOnce({ ...c.env, CNI_COMMAND: 'DEL' }, stdin)
    appendFileSync(resultsFile, JSON.stringify(r) + '\n')
  }
  // Netlink sockets of the last case may still hold the loop: the results are written, done.
  process.exit(0)
}

main().catch((e: unknown) => {
  process.stderr.write(`fuzz driver: ${e instanceof Error ? e.stack : String(e)}\n`)
  process.exit(2)
})
