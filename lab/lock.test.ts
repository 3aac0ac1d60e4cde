// The lab lock on a real file with real flock(2), without a lab: a second taker is refused (or
// waits) naming the holder, the record is emptied on release, and a lock file that `lab down`
// removed while someone waited is not trusted. (That the kernel drops the lock with a SIGKILLed
// holder is proved end to end in e2e/lab/lab-guards.test.ts, on a killed `flatnetctl lab up`.)
import t from 'tap'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { testDir } from '../e2e/helpers/index.js'
import { labLayout } from './layout.js'
import { LabBusyError, acquireLabLock, withLabLock } from './lock.js'
import { LabMissingError } from './state.js'

t.test('a second lab up is refused at once, naming the holder; after release it gets the lock', async (t) => {
  const lab = labLayout('locka', testDir(t, 'lablock').dir)
  const first = await acquireLabLock(lab, 'lab up', { waitMs: 0, create: true })
  t.match(JSON.parse(readFileSync(lab.lockFile, 'utf8')), { pid: process.pid, operation: 'lab up' }, 'the holder recorded itself')
  const refused = await acquireLabLock(lab, 'lab up', { waitMs: 0, create: true }).then(
    () => undefined,
    (err: unknown) => err,
  )
  t.ok(refused instanceof LabBusyError, 'refused with LabBusyError')
  t.match((refused as Error).message, new RegExp(`^lab up locka: refused, lab locka is in use by pid ${process.pid} \\(lab up, since \\S+\\); nothing was changed$`))
  first.release()
  t.equal(readFileSync(lab.lockFile, 'utf8'), '', 'release empties the record')
  const second = await acquireLabLock(lab, 'lab up', { waitMs: 0, create: true })
  second.release()
})

t.test('other commands wait for the holder, and give up naming it', async (t) => {
  const lab = labLayout('lockb', testDir(t, 'lablock').dir)
  const order: string[] = []
  const holder = await acquireLabLock(lab, 'lab pod add', { waitMs: 0, create: true })
  const waiter = withLabLock(
    lab,
    'lab pod del',
    async () => {
      order.push('waiter ran')
    },
    { waitMs: 60_000, create: false },
  )
  // The waiter is blocked in flock(2) until the holder lets go, however long that takes.
  await new Promise((resolve) => setTimeout(resolve, 300))
  order.push('holder releases')
  holder.release()
  await waiter
  t.same(order, ['holder releases', 'waiter ran'])

  const again = await acquireLabLock(lab, 'lab node stop', { waitMs: 0, create: false })
  const gaveUp = await withLabLock(lab, 'lab node start', async () => undefined, { waitMs: 200, create: false }).then(
    () => undefined,
    (err: unknown) => err,
  )
  t.match((gaveUp as Error).message, new RegExp(`^lab node start lockb: lab lockb is still in use by pid ${process.pid} \\(lab node stop, since \\S+\\) after waiting \\d+ s$`))
  again.release()
})

t.test('a lab without its directory is missing, and only lab up makes the directory', async (t) => {
  const lab = labLayout('lockc', testDir(t, 'lablock').dir)
  const missing = await acquireLabLock(lab, 'lab pod add', { waitMs: 0, create: false }).then(
    () => undefined,
    (err: unknown) => err,
  )
  t.ok(missing instanceof LabMissingError, `LabMissingError: ${String(missing)}`)
  t.notOk(existsSync(lab.dir), 'nothing made')
  const lock = await acquireLabLock(lab, 'lab up', { waitMs: 0, create: true })
  t.ok(existsSync(lab.lockFile))
  lock.release()
})

t.test('a waiter whose lock file was removed with the lab (lab down) does not trust it', async (t) => {
  const lab = labLayout('lockd', testDir(t, 'lablock').dir)
  const down = await acquireLabLock(lab, 'lab down', { waitMs: 0, create: true })
  const waiting = acquireLabLock(lab, 'lab pod add', { waitMs: 60_000, create: false }).then(
    () => 'got a lock',
    (err: unknown) => err,
  )
  await new Promise((resolve) => setTimeout(resolve, 300))
  rmSync(lab.dir, { recursive: true, force: true })
  down.release()
  const outcome = await waiting
  t.ok(outcome instanceof LabMissingError, `the waiter finds the lab gone: ${String(outcome)}`)
  t.notOk(existsSync(lab.dir), 'and does not bring its directory back')
})
