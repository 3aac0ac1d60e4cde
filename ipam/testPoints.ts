// The one runner of named test points: steps where a test can make a process die (SIGKILL, so no
// rollback runs) or fail (the step throws, so rollback must clean up), to prove that a crash or a
// failure at any step leaves nothing that rollback, DEL or GC cannot reclaim.
//   FLATNET_TEST_CRASH_AT=<step>  SIGKILL there;   FLATNET_TEST_FAIL_AT=<step>  throw there;
//   FLATNET_TEST_PAUSE_AT=<step>:<ms>  stop the process there that long (widens a race window).
// The production bundles define FLATNET_TEST_POINTS as false (scripts/bundle.mjs) and the body
// is compiled out: a variable left in an operator's shell cannot kill the production plugin. The
// test build (dist/test/bin) defines it true; from source (tests importing modules) it is absent
// and the points are live. The environment is read at the step, not at load, so a V8 startup
// snapshot cannot freeze the build machine's value.
declare const FLATNET_TEST_POINTS: boolean | undefined

/**
 * The address store's steps: a reservation's temp record written; linked to its address; one
 * range's address held and the next range's not yet (dual-stack: one family taken, the other
 * not); a release's record moved aside.
 */
export const StoreStep = { afterTemp: 'after-temp', afterLink: 'after-link', betweenRanges: 'between-ranges', afterAside: 'after-aside' } as const
export type StoreStep = (typeof StoreStep)[keyof typeof StoreStep]

export function runTestPoint(step: string): void {
  if (typeof FLATNET_TEST_POINTS === 'undefined' || FLATNET_TEST_POINTS) {
    if (process.env.FLATNET_TEST_CRASH_AT === step) process.kill(process.pid, 'SIGKILL')
    if (process.env.FLATNET_TEST_FAIL_AT === step) throw new Error(`induced failure at ${step} (FLATNET_TEST_FAIL_AT)`)
    const pause = process.env.FLATNET_TEST_PAUSE_AT
    if (pause?.startsWith(`${step}:`)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(pause.slice(step.length + 1)))
  }
}
