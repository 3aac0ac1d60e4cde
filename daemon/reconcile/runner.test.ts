// The runner with fake reconcilers, no kernel: coalescing, per-reconciler retry, isolation of a
// failing or hung reconciler, the burst limit, readiness aggregation, and nothing synced before
// its inputs are fully listed or while the configuration is refused.
import { pino } from 'pino'
import t from 'tap'
import type { ReadinessGate } from './contract.js'
import { Runner, type RunnerOptions } from './runner.js'
import { FakeReconciler, FakeView } from './testing/fakeReconciler.js'

const HOUR = 3_600_000
const silent = pino({ level: 'silent' })

function options(over: Partial<RunnerOptions> = {}): RunnerOptions {
  // Periodic syncs and retries far away unless a test asks: every sync below is one a test caused.
  return { intervalMs: HOUR, retryMs: HOUR, minIntervalMs: 0, burst: 1, stuckAfterMs: HOUR, log: silent, ...over }
}

/** Lets pending promise callbacks and zero-delay timers run. */
const settle = () => new Promise((r) => setTimeout(r, 0))

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return
    await new Promise((r) => setTimeout(r, 1))
  }
  throw new Error(`never happened: ${what}`)
}

t.test('triggers during a sync coalesce into exactly one more sync, with the union of what changed', async (t) => {
  const view = new FakeView()
  view.listed.add('nodes').add('subnet')
  const r = new FakeReconciler('routes', ['nodes', 'subnet'])
  r.hold = true
  const runner = new Runner(view, [r], [], options())
  t.teardown(() => runner.stop(0))
  runner.start()
  await settle()
  t.equal(r.syncs, 1, 'the start sync runs')
  t.equal(r.requests[0]!.full, true, 'and is full')
  for (let i = 0; i < 5; i++) runner.inputsChanged(['nodes'])
  runner.inputsChanged(['subnet'])
  await settle()
  t.equal(r.syncs, 1, 'nothing runs beside the sync in flight')
  r.held.shift()!.release()
  await until('second sync', () => r.syncs === 2)
  t.same(r.requests[1], { full: false, changed: new Set(['nodes', 'subnet']) }, 'one partial sync carrying both kinds')
  r.held.shift()!.release()
  await settle()
  t.equal(r.syncs, 2, 'and no third')
})

t.test('inputs that a reconciler does not read do not sync it', async (t) => {
  const view = new FakeView()
  view.listed.add('nodes')
  const routes = new FakeReconciler('routes', ['nodes'])
  const forwarding = new FakeReconciler('forwarding', [])
  const runner = new Runner(view, [routes, forwarding], [], options())
  t.teardown(() => runner.stop(0))
  runner.start()
  await settle()
  runner.inputsChanged(['nodes'])
  await settle()
  t.same([routes.syncs, forwarding.syncs], [2, 1])
})

t.test('a failure retries only its owner, with a full sync; the others are not rerun', async (t) => {
  const view = new FakeView()
  const ok = new FakeReconciler('forwarding')
  const failing = new FakeReconciler('masquerade')
  failing.failures.push(['install nftables table inet flatnet: nope'])
  const runner = new Runner(view, [ok, failing], [], options({ retryMs: 1 }))
  t.teardown(() => runner.stop(0))
  runner.start()
  await until('retry', () => failing.syncs === 2)
  t.equal(failing.requests[1]!.full, true, 'the retry is full')
  await settle()
  t.equal(ok.syncs, 1, 'the healthy reconciler ran once')
  t.equal(failing.syncs, 2, 'the failed one once more, then no more (it succeeded)')
})

t.test('after a failure the next sync is full even when only an input changed', async (t) => {
  const view = new FakeView()
  view.listed.add('nodes')
  const r = new FakeReconciler('routes', ['nodes'])
  r.failures.push(['reconcile routes: EPERM'])
  const runner = new Runner(view, [r], [], options())
  t.teardown(() => runner.stop(0))
  runner.start()
  await settle()
  runner.inputsChanged(['nodes'])
  await settle()
  t.same(r.requests[1], { full: true, changed: new Set(['nodes']) })
  runner.inputsChanged(['nodes'])
  await settle()
  t.same(r.requests[2], { full: false, changed: new Set(['nodes']) }, 'partial again once a sync succeeded')
})

t.test('a hung reconciler does not delay another', async (t) => {
  const view = new FakeView()
  view.listed.add('nodes')
  const hung = new FakeReconciler('masquerade')
  hung.hold = true // never released
  const routes = new FakeReconciler('routes', ['nodes'])
  const runner = new Runner(view, [hung, routes], [], options())
  t.teardown(() => runner.stop(0))
  runner.start()
  for (let i = 0; i < 3; i++) {
    runner.inputsChanged(['nodes'])
    await settle()
  }
  t.equal(routes.syncs, 4, 'start + three changes, each synced while the other hangs')
  t.equal(hung.syncs, 1)
})

t.test('the burst bounds back-to-back syncs; the rest waits for the minimum interval', async (t) => {
  const view = new FakeView()
  view.listed.add('nodes')
  const r = new FakeReconciler('routes', ['nodes'])
  const runner = new Runner(view, [r], [], options({ minIntervalMs: HOUR, burst: 2 }))
  t.teardown(() => runner.stop(0))
  runner.start()
  await settle()
  for (let i = 0; i < 5; i++) {
    runner.inputsChanged(['nodes'])
    await settle()
  }
  t.equal(r.syncs, 2, 'start + one more spend the burst of 2; the other changes wait, coalesced')
})

t.test('nothing is synced before its inputs are fully listed; /readyz says what it waits for', async (t) => {
  const view = new FakeView()
  const routes = new FakeReconciler('routes', ['nodes'])
  const runner = new Runner(view, [routes], [], options())
  t.teardown(() => runner.stop(0))
  runner.start()
  runner.syncAll(true)
  await settle()
  t.equal(routes.syncs, 0, 'not synced')
  t.same(runner.readiness(), {
    ready: false,
    reasons: ['routes: waiting for nodes to be fully listed'],
    reconcilers: [{ name: 'routes', ok: false, gates: true, reason: 'waiting for nodes to be fully listed' }],
  })
  view.listed.add('nodes')
  runner.inputsChanged(['nodes'])
  await settle()
  t.equal(routes.syncs, 1, 'synced once listed')
  t.equal(routes.requests[0]!.full, true, 'the first sync is full')
  t.same(runner.readiness(), { ready: true, reasons: [], reconcilers: [{ name: 'routes', ok: true, gates: true }] })
})

t.test('while the configuration is refused, dataplane reconcilers are not synced; they are once it is accepted', async (t) => {
  const view = new FakeView()
  let refused: string | undefined = 'configuration refused: subnet 10.244.1.0/24 is outside the cluster range 10.32.0.0/12'
  const gate: ReadinessGate = { name: 'cluster', problem: () => refused, refusal: () => refused }
  const masq = new FakeReconciler('masquerade', [], true, true)
  const forwarding = new FakeReconciler('forwarding', [], true, false)
  const runner = new Runner(view, [masq, forwarding], [gate], options())
  t.teardown(() => runner.stop(0))
  runner.start()
  await settle()
  t.same([masq.syncs, forwarding.syncs], [0, 1], 'only the concern that cannot harm runs')
  const r = runner.readiness()
  t.equal(r.ready, false)
  t.equal(r.reasons[0], refused, 'the refusal first')
  t.match(r.reconcilers[0]!.reason!, /^configuration refused: .*; keeping the last good state$/)
  refused = undefined
  runner.gatesChanged()
  await settle()
  t.equal(masq.syncs, 1, 'synced once accepted')
  t.equal(runner.readiness().ready, true)
})

t.test('readiness is the union of the gates and every gating reconciler; non-gating ones are listed but do not count', async (t) => {
  const view = new FakeView()
  const gate: ReadinessGate = { name: 'cluster', problem: () => 'datastore etcd unavailable (watch): timeout' }
  const forwarding = new FakeReconciler('forwarding')
  forwarding.failures.push(['set sysctl net.ipv4.ip_forward=1: EROFS'])
  const conflist = new FakeReconciler('conflist')
  conflist.statusReason = '10-flannel.conflist in /etc/cni/net.d sorts before 10-flatnet.conflist'
  const extra = new FakeReconciler('extra', [], false)
  extra.failures.push(['something optional failed'])
  const runner = new Runner(view, [forwarding, conflist, extra], [gate], options())
  t.teardown(() => runner.stop(0))
  runner.start()
  await settle()
  const r = runner.readiness()
  t.same(r.reasons, [
    'datastore etcd unavailable (watch): timeout',
    'forwarding: last sync failed: set sysctl net.ipv4.ip_forward=1: EROFS',
    'conflist: 10-flannel.conflist in /etc/cni/net.d sorts before 10-flatnet.conflist',
  ])
  t.same(
    r.reconcilers.map((x) => [x.name, x.ok, x.gates]),
    [
      ['forwarding', false, true],
      ['conflist', false, true],
      ['extra', false, false],
    ],
  )
})

t.test('liveness fails only for a sync stuck beyond the limit', async (t) => {
  const view = new FakeView()
  const hung = new FakeReconciler('masquerade')
  hung.hold = true
  const runner = new Runner(view, [hung], [], options({ stuckAfterMs: 0 }))
  t.teardown(() => runner.stop(0))
  t.same(runner.liveness(), { alive: true }, 'nothing running')
  runner.start()
  await until('a moment passes', () => hung.syncs === 1)
  await new Promise((r) => setTimeout(r, 2))
  t.match(runner.liveness(), { alive: false, reason: /reconciler masquerade: a sync has been running/ })
})

t.test('stop ends scheduling: no sync after it', async (t) => {
  const view = new FakeView()
  const r = new FakeReconciler('forwarding')
  const runner = new Runner(view, [r], [], options({ intervalMs: 1 }))
  runner.start()
  await settle()
  await runner.stop(0)
  const n = r.syncs
  runner.syncAll(true)
  await new Promise((res) => setTimeout(res, 5))
  t.equal(r.syncs, n)
})
