// Test-only fault injection: FLATNET_TEST_CRASH_AT=<point> makes the plugin SIGKILL itself at
// that point, so the reliability suite can prove a crash anywhere leaves nothing that DEL/GC
// cannot reclaim. One env read per point; inert unless the variable is set.
export function testCrashPoint(point: string): void {
  if (process.env.FLATNET_TEST_CRASH_AT === point) process.kill(process.pid, 'SIGKILL')
}
