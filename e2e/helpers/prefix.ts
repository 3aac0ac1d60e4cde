// Unique names for what a test run creates, and a record of which process owns them.
//
// Every name starts `fnt-<tag>-<6 hex>`. Before anything is created under a prefix, the prefix is
// registered in /run/fnt-owners/<prefix> with the test process's pid. scripts/sweep-test-leftovers.sh
// (run by .ci/run) removes only things whose owner is dead, so it is safe while other test runs
// are in flight on the same machine.
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Every namespace, temp dir and other object a test creates starts with this. */
export const TEST_PREFIX = 'fnt-'

export const OWNERS_DIR = '/run/fnt-owners'

/** The part of tap's Test these helpers need. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

/** `fnt-<tag>-<6 hex>`, registered as owned by this process. */
export function uniquePrefix(tag: string): string {
  if (!/^[a-z0-9]{1,12}$/.test(tag)) throw new Error(`uniquePrefix: tag ${JSON.stringify(tag)} must be 1-12 of [a-z0-9]`)
  const prefix = `${TEST_PREFIX}${tag}-${randomBytes(3).toString('hex')}`
  mkdirSync(OWNERS_DIR, { recursive: true })
  writeFileSync(join(OWNERS_DIR, prefix), `${process.pid}\n`)
  return prefix
}

/** Forget the owner record once everything under the prefix is gone. */
export function releasePrefix(prefix: string): void {
  rmSync(join(OWNERS_DIR, prefix), { force: true })
}

/**
 * A fresh directory `$TMPDIR/fnt-<tag>-<hex>…`, removed (recursively) when `t` ends.
 * Its basename starts with `prefix`, which the caller may reuse for other objects of the same test.
 */
export function testDir(t: Teardown, tag: string): { prefix: string; dir: string } {
  const prefix = uniquePrefix(tag)
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`))
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true })
    releasePrefix(prefix)
  })
  return { prefix, dir }
}
