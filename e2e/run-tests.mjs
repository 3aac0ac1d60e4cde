// Runs the whole suite with tap and ends with the line CI reads: "N passed, N failed".
// Counts leaf test points (assertions). A subtest's own summary point is not counted again,
// unless it failed without any failing child (a crash, a timeout, a plan error): then it counts
// as one failure so that no broken file can hide behind a green count.
//
// Four files at a time on two cores (most suites wait on child processes and the kernel — veth
// deletes, daemons converging — rather than compute): four tap processes of one file at a time,
// their files dealt longest first by the durations of an earlier run (e2e/test-durations.json; a
// file not listed there counts as a minute), so all four end at about the same time. tap alone
// starts files alphabetically, which put the longest suites (the plugin's kill points, churn and
// races) last, and two fixed lanes (plugin/ and the rest) still left one lane idle for the last
// minutes. `--record-durations` rewrites the durations file from this run.
// With file or folder arguments, one tap runs exactly those, three at a time.
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Parser } from 'tap-parser'

const root = fileURLToPath(new URL('..', import.meta.url))
const tapBin = join(root, 'node_modules/.bin/tap')
const common = ['--disable-coverage', '--reporter=tap', '--timeout=900']

/** Every *.test.ts of the tree (what tap's default include finds here), relative to the root. */
function testFiles(dir = root) {
  const out = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      if (['node_modules', 'dist', '.git', '.tap'].includes(e.name)) continue
      out.push(...testFiles(join(dir, e.name)))
    } else if (/\.test\.ts$/.test(e.name)) out.push(relative(root, join(dir, e.name)))
  }
  return out.sort()
}

const args = process.argv.slice(2)
const record = args.includes('--record-durations')
const given = args.filter((a) => a !== '--record-durations')
const durationsFile = join(root, 'e2e/test-durations.json')
const WORKERS = 4 // tap processes
const UNKNOWN_MS = 60_000

let passed = 0
let failed = 0
/** Every failure, named by its path of subtests, repeated after the lanes: CI keeps only the tail of the log. */
const failures = []

function describe(path, a) {
  const where = a.diag?.at
  const at = where ? ` (${where.fileName ?? where.file ?? ''}:${where.lineNumber ?? where.line ?? ''})` : ''
  const wanted = a.diag && 'found' in a.diag ? ` found ${JSON.stringify(a.diag.found)?.slice(0, 200)}` : ''
  return `${[...path, a.name].join(' > ')}${at}${wanted}`
}

function watch(p, path = []) {
  let childFailures = null // failures counted inside the subtest whose summary point comes next
  p.on('child', (c) => {
    const before = failed
    childFailures = { before, c }
  })
  p.on('assert', (a) => {
    if (childFailures) {
      const inner = failed - childFailures.before
      childFailures = null
      if (!a.ok && !a.todo && !a.skip && inner === 0) {
        failed++
        failures.push(`${describe(path, a)} (the subtest itself failed: crash, timeout or plan)`)
      }
      return
    }
    if (a.skip || a.todo) return
    if (a.ok) passed++
    else {
      failed++
      failures.push(describe(path, a))
    }
  })
  p.on('child', (c) => watch(c, [...path, c.name]))
}

/** Runs one tap process; its output is printed a whole file's block at a time, so files never interleave. */
function runTap(args, durations) {
  return new Promise((resolve) => {
    const parser = new Parser()
    watch(parser)
    const child = spawn(tapBin, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
    let pending = ''
    let block = ''
    child.stdout.on('data', (d) => {
      parser.write(d)
      pending += d.toString()
      let nl
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl + 1)
        pending = pending.slice(nl + 1)
        block += line
        // A top-level point ends a file's block (tap prints each file whole when it ends).
        const top = /^((?:not )?ok) \d+ - (\S+)(?: # time=([0-9.]+)ms)?/.exec(line)
        if (top) {
          if (durations && top[3]) durations[top[2]] = Math.round(Number(top[3]))
          process.stdout.write(block.slice(0, -line.length) + `${top[1]} ${++fileNumber} - ${line.slice(top[0].indexOf(' - ') + 3)}`)
          block = ''
        }
      }
    })
    child.on('close', (code) => {
      // One file per tap process: its closing plan and totals would only repeat what is counted here.
      const rest = block + pending
      process.stdout.write(
        durations
          ? rest
              .split('\n')
              .filter((l) => !/^(1\.\.\d+|# \{ total|# time=|# No coverage)/.test(l))
              .join('\n')
          : rest,
      )
      parser.end()
      resolve(code)
    })
  })
}

let fileNumber = 0
let code = 0
if (given.length) {
  code = await runTap([...common, '--jobs=3', ...given])
} else {
  let known = {}
  try {
    known = JSON.parse(readFileSync(durationsFile, 'utf8'))
  } catch {}
  // Four bins balanced longest first (each file to the bin with the least time so far), one tap
  // process per bin: a tap process per file would add seconds of start-up to every file.
  const bins = Array.from({ length: WORKERS }, () => ({ ms: 0, files: [] }))
  for (const file of testFiles().sort((a, b) => (known[b] ?? UNKNOWN_MS) - (known[a] ?? UNKNOWN_MS))) {
    const bin = bins.reduce((least, b) => (b.ms < least.ms ? b : least))
    bin.files.push(file)
    bin.ms += known[file] ?? UNKNOWN_MS
  }
  const measured = {}
  const codes = await Promise.all(bins.filter((b) => b.files.length).map((b) => runTap([...common, '--jobs=1', ...b.files], measured)))
  code = codes.find((c) => c !== 0) ?? 0
  if (record) writeFileSync(durationsFile, JSON.stringify(Object.fromEntries(Object.entries(measured).sort()), null, 2) + '\n')
}
if (code !== 0 && failed === 0) {
  failed = 1 // a runner itself failed
  failures.push(`tap exited with ${code} and no failing point`)
}
if (failures.length) {
  console.log('# failures:')
  for (const f of failures.slice(0, 50)) console.log(`#   ${f}`)
}
console.log(`${passed} passed, ${failed} failed`)
process.exit(code === 0 && failed === 0 ? 0 : 1)
