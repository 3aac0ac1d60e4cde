// The lab guards itself, through dist/bin/flatnetctl as an operator runs it:
// - two `lab up` of one name at the same time: exactly one builds the lab, the other is refused
//   before it creates anything, and the winner's lab is intact;
// - `lab check` fails, naming the node, when a node's flatnetd is dead — even though the routes it
//   left keep the traffic flowing;
// - a `lab up` SIGKILLed half-way holds no lock: `lab down` removes what it built at once and the
//   lab can be created again.
import t from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { cleanEnvArgv, nodeBinary } from '../../lab/exec.js'
import { distBinDir } from '../../lab/binaries.js'
import type { CheckReport, LabStatus } from '../../lab/index.js'
import { processGone } from '../../lab/namespaces.js'
import { flatnetctl, labForTest, labNamespaces, labProcesses, labSkipReason, pollUntil } from '../../lab/testing/testLabs.js'

function parse<T>(stdout: string, what: string): T {
  try {
    return JSON.parse(stdout) as T
  } catch {
    throw new Error(`${what}: not JSON: ${stdout.slice(0, 500)}`)
  }
}

/** dist/bin/flatnetctl as a child whose pid we know (env -i and node exec: the pid is flatnetctl's). */
function startFlatnetctl(args: readonly string[]) {
  const [file, ...rest] = cleanEnvArgv({}, [nodeBinary, join(distBinDir(), 'flatnetctl'), ...args])
  const child = spawn(file!, rest, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString()
  })
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  const done = new Promise<{ pid: number; code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code) => resolve({ pid: child.pid!, code, stdout, stderr }))
  })
  return { pid: child.pid!, done }
}

t.test('two concurrent lab up of one name: one builds it, the other is refused having created nothing', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'race')
  // --no-services: a bare lab, so its processes and namespaces are exactly the nodes' and pods'.
  const args = ['lab', 'up', '--name', name, '--nodes', '2', '--pods-per-node', '1', '--no-services']
  const results = await Promise.all([startFlatnetctl(args).done, startFlatnetctl(args).done])
  const winners = results.filter((r) => r.code === 0)
  const losers = results.filter((r) => r.code !== 0)
  t.equal(winners.length, 1, `exactly one lab up succeeds: ${results.map((r) => `exit ${r.code}: ${r.stderr.trim()}`).join(' | ')}`)
  t.equal(losers.length, 1, 'the other fails')
  if (winners.length !== 1 || losers.length !== 1) return
  const [winner, loser] = [winners[0]!, losers[0]!]
  // Refused while the winner holds the lab (the usual case: both start together), or — had the
  // loser started only once the winner was done — because the lab is up by then.
  t.match(
    loser.stderr,
    new RegExp(`^flatnetctl: (lab up ${name}: refused, lab ${name} is in use by pid ${winner.pid} \\(lab up, since \\S+\\); nothing was changed|lab up: lab ${name} is already up .*)\\n$`),
    'the refusal names the lab and its owner',
  )
  t.comment(`loser: ${loser.stderr.trim()}`)
  t.notMatch(loser.stdout, /node1|pod1a/, 'the loser reported nothing built')

  // The winner's lab is whole: its namespaces, its two daemons, and the network model holds.
  const status = parse<LabStatus>((await flatnetctl(['lab', 'status', '--name', name, '--json'])).stdout, 'lab status --json')
  t.same(
    status.nodes.map((n) => n.name),
    ['node1', 'node2'],
  )
  t.same(
    status.pods.map((p) => p.name),
    ['pod1a', 'pod2a'],
  )
  t.same(
    (await labNamespaces(name)).sort(),
    [`fnlab-${name}-net`, `fnlab-${name}-node1`, `fnlab-${name}-node2`, `fnlab-${name}-outside`, `fnlab-${name}-pod1a`, `fnlab-${name}-pod2a`].sort(),
    "exactly the winner's namespaces, none deleted, none extra",
  )
  const processes = await labProcesses(name)
  t.same(processes.filter((line) => line.includes('flatnetd')).length, 2, 'both flatnetd run')
  t.same(processes.length, 4, 'and the responder of each of the two pods, nothing else')
  for (const node of status.nodes) t.ok(node.daemon.running, `${node.name}: flatnetd runs`)
  const check = await flatnetctl(['lab', 'check', '--name', name, '--json'])
  t.equal(check.code, 0, `the winner's lab passes lab check: ${check.stderr}`)

  // A dead flatnetd: the traffic rows still pass (its routes stay in the kernel), the daemon row fails.
  const victim = status.nodes.find((n) => n.name === 'node2')!
  process.kill(victim.daemon.pid!, 'SIGKILL')
  t.ok(await pollUntil(async () => processGone(victim.daemon.pid!), 10_000), "node2's flatnetd is gone")
  const broken = await flatnetctl(['lab', 'check', '--name', name, '--json'])
  t.equal(broken.code, 1, 'lab check exits 1')
  const report = parse<CheckReport>(broken.stdout, 'lab check --json')
  t.equal(report.ok, false)
  const daemons = report.requirements.find((r) => r.id === 'daemons-ready')!
  t.same([daemons.passed, daemons.total], [1, 2])
  t.same(
    daemons.failures.map((f) => f.from),
    ['node2'],
    'the failure names node2',
  )
  t.match(daemons.failures[0]!.detail, /flatnetd not answering on http:\/\/127\.0\.0\.1:9473\/readyz: ECONNREFUSED/)
  t.same(
    report.requirements.filter((r) => !r.ok).map((r) => r.id),
    ['daemons-ready'],
    'traffic still flows: only the daemon row fails',
  )
  t.match(report.nodes.find((n) => n.name === 'node2')!.daemon, { ready: false })
  const human = await flatnetctl(['lab', 'check', '--name', name])
  t.equal(human.code, 1)
  t.match(human.stdout, /^✗\s+every node's flatnetd is ready\s+1\/2$/m)
  t.match(human.stdout, /✗ every node's flatnetd is ready: node2: flatnetd not answering/)
})

t.test('a lab up killed half-way holds no lock: lab down removes it at once, and it can be built again', { skip: labSkipReason() }, async (t) => {
  const name = labForTest(t, 'crash')
  const up = startFlatnetctl(['lab', 'up', '--name', name, '--nodes', '2', '--pods-per-node', '1'])
  // Killed once it has built something: the first node's namespace.
  const built = await pollUntil(async () => (await labNamespaces(name)).some((ns) => ns.endsWith('-node1')), 60_000, 20)
  process.kill(up.pid, 'SIGKILL')
  const killed = await up.done
  t.ok(built, 'lab up had created a node namespace when it was killed')
  t.equal(killed.code, null, `lab up died of SIGKILL (${killed.stderr.trim()})`)

  const again = await flatnetctl(['lab', 'up', '--name', name, '--nodes', '1', '--pods-per-node', '0'])
  t.not(again.code, 0, 'lab up over the wreck is refused')
  t.match(again.stderr, new RegExp(`lab ${name} is already up .*flatnetctl lab down --name ${name}`), 'and says how to remove it')
  t.notMatch(again.stderr, /in use by/, 'the dead lab up holds no lock')

  // down does not wait for the dead command: the kernel dropped its lock with it.
  const down = await flatnetctl(['lab', 'down', '--name', name], 60_000)
  t.equal(down.code, 0, `lab down removes the crashed lab: ${down.stderr}`)
  t.same(await labNamespaces(name), [], 'no namespace left')
  t.same(await labProcesses(name), [], 'no process left')

  const rebuilt = await flatnetctl(['lab', 'up', '--name', name, '--nodes', '1', '--pods-per-node', '1'])
  t.equal(rebuilt.code, 0, `the lab can be created again: ${rebuilt.stderr}`)
  const status = parse<LabStatus>((await flatnetctl(['lab', 'status', '--name', name, '--json'])).stdout, 'lab status --json')
  t.same([status.nodes.length, status.pods.length], [1, 1])
})
