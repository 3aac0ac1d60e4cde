// Runs the whole suite with tap and ends with the line CI reads: "N passed, N failed".
// Counts leaf test points (assertions). A subtest's own summary point is not counted again,
// unless it failed without any failing child (a crash, a timeout, a plan error): then it counts
// as one failure so that no broken file can hide behind a green count.
//
// Two lanes, each a tap process running two files at a time: the plugin's suites (plugin/) and
// everything else. tap starts files in alphabetical order, which put the longest suites (the
// plugin's kill points, churn and races: a third of the suite's time) last, behind the rest, so
// the run ended with one long file still going on an otherwise idle machine. The two halves take
// about the same time (30 min of file time each, measured); in parallel the longest files start at
// once. Four files at a time on two cores: most suites wait on child processes and the kernel
// (veth deletes, daemons converging) rather than compute. With arguments (one file, a folder),
// one tap runs exactly those.
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
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

const given = process.argv.slice(2)
const lanes = given.length
  ? [[...common, '--jobs=3', ...given]]
  : (() => {
      const files = testFiles()
      const plugin = files.filter((f) => f.startsWith('plugin/'))
      const rest = files.filter((f) => !f.startsWith('plugin/'))
      return [
        [...common, '--jobs=2', ...plugin],
        [...common, '--jobs=2', ...rest],
      ]
    })()

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

/** Runs one lane; its output is printed a whole file's block at a time, so lanes never interleave inside one. */
function runLane(args) {
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
        if (/^(not )?ok \d+ /.test(line)) {
          process.stdout.write(block)
          block = ''
        }
      }
    })
    child.on('close', (code) => {
      process.stdout.write(block + pending)
      parser.end()
      resolve(code)
    })
  })
}

const codes = await Promise.all(lanes.map(runLane))
const code = codes.find((c) => c !== 0) ?? 0
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
