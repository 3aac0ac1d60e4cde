// Support for the lab's own e2e tests (test-only; flatnetctl does not import it).
// Each test run gets a lab of its own name, so test files run in parallel with each other and a
// developer's own lab (`default`) is never touched; the lab is removed by the lab's own `down`
// logic when the test ends, pass or fail.
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { distBinDir } from '../binaries.js'
import { cleanEnvArgv, run, sleep, type RunResult } from '../exec.js'
import { labDown } from '../lab.js'
import { listNetns } from '../namespaces.js'

/** The only accepted reason to skip a lab test: the binaries have not been built. */
export function labSkipReason(): string | false {
  const missing = ['flatnet', 'flatnetd', 'flatnetctl'].filter((b) => !existsSync(join(distBinDir(), b)))
  return missing.length ? `${missing.map((b) => `dist/bin/${b}`).join(', ')} not built: run ./build.sh first` : false
}

/** `t<tag><6 hex>`: a lab name no other run and no developer uses. */
export function uniqueLabName(tag: string): string {
  if (!/^[a-z]{1,10}$/.test(tag)) throw new Error(`uniqueLabName: tag ${JSON.stringify(tag)} must be 1-10 lower-case letters`)
  return `t${tag}${randomBytes(3).toString('hex')}`
}

interface Teardown {
  teardown(fn: () => unknown): void
}

/**
 * Test labs whose test process died (a killed CI run) are found through these files: one per lab,
 * named after the lab, holding the test's pid. A sweep removes the labs whose owner is gone with
 * `flatnetctl lab down --name <file name>`.
 */
export const TEST_LAB_OWNERS_DIR = '/run/flatnet-lab-owners'

/** A fresh lab name whose lab (whatever of it exists by then) is removed when `t` ends. */
export function labForTest(t: Teardown, tag: string): string {
  const name = uniqueLabName(tag)
  const owner = join(TEST_LAB_OWNERS_DIR, name)
  mkdirSync(TEST_LAB_OWNERS_DIR, { recursive: true })
  writeFileSync(owner, `${process.pid}\n`)
  t.teardown(async () => {
    await labDown({ name })
    rmSync(owner, { force: true })
  })
  return name
}

/** Runs dist/bin/flatnetctl with a clean environment, as an operator's shell would (`input` on its stdin). */
export function flatnetctl(args: readonly string[], timeoutMs = 80_000, input?: string): Promise<RunResult> {
  return run(cleanEnvArgv({}, [join(distBinDir(), 'flatnetctl'), ...args]), { timeoutMs, input })
}

/** Polls `probe` every `intervalMs` until it returns true or `deadlineMs` passes; returns the last verdict. */
export async function pollUntil(probe: () => Promise<boolean>, deadlineMs: number, intervalMs = 50): Promise<boolean> {
  const end = Date.now() + deadlineMs
  for (;;) {
    if (await probe()) return true
    if (Date.now() > end) return false
    await sleep(intervalMs)
  }
}

export async function labNamespaces(name: string): Promise<string[]> {
  return listNetns(`fnlab-${name}-`)
}

/** Pids of processes whose command line mentions the lab's directory (daemons, etcd). */
export async function labProcesses(name: string): Promise<string[]> {
  const result = await run(['pgrep', '-af', `/run/flatnet-lab/${name}/`])
  return result.stdout.split('\n').filter((line) => line.trim() && !line.includes('pgrep'))
}
