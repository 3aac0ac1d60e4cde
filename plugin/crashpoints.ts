// Test-only fault injection, so the suites can prove that a failure or a crash at any step of
// ADD leaves nothing that rollback, DEL or GC cannot reclaim:
//   FLATNET_TEST_CRASH_AT=<point>  the plugin SIGKILLs itself there (no rollback can run);
//   FLATNET_TEST_FAIL_AT=<point>   the step throws there (rollback must clean up).
// One env read per point; inert unless a test sets the variable.
export function testCrashPoint(point: string): void {
  if (process.env.FLATNET_TEST_CRASH_AT === point) process.kill(process.pid, 'SIGKILL')
  if (process.env.FLATNET_TEST_FAIL_AT === point) throw new Error(`induced failure at ${point} (FLATNET_TEST_FAIL_AT)`)
}
