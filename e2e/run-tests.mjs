// Runs the whole suite with tap and ends with the line CI reads: "N passed, N failed".
// Counts leaf test points (assertions). A subtest's own summary point is not counted again,
// unless it failed without any failing child (a crash, a timeout, a plan error): then it counts
// as one failure so that no broken file can hide behind a green count.
import { spawn } from 'node:child_process'
import { Parser } from 'tap-parser'

// Three files at a time on two cores: most suites spend their time waiting on child processes and
// the kernel (veth deletes, daemons converging), not computing; the whole run took 24.5 min at two.
const args = ['tap', '--disable-coverage', '--reporter=tap', '--timeout=900', '--jobs=3', ...process.argv.slice(2)]
const child = spawn(new URL('../node_modules/.bin/tap', import.meta.url).pathname, args.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] })
let passed = 0
let failed = 0

function watch(p) {
  let childFailures = null // failures counted inside the subtest whose summary point comes next
  p.on('child', (c) => {
    const before = failed
    childFailures = { before, c }
  })
  p.on('assert', (a) => {
    if (childFailures) {
      const inner = failed - childFailures.before
      childFailures = null
      if (!a.ok && !a.todo && !a.skip && inner === 0) failed++
      return
    }
    if (a.skip || a.todo) return
    if (a.ok) passed++
    else failed++
  })
  p.on('child', watch)
}

const parser = new Parser()
watch(parser)
child.stdout.on('data', (d) => {
  process.stdout.write(d)
  parser.write(d)
})
child.on('close', (code) => {
  parser.end()
  if (code !== 0 && failed === 0) failed = 1 // the runner itself failed
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(code === 0 && failed === 0 ? 0 : 1)
})
