// Where the plugins under test live.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** Debian's containernetworking-plugins: the reference `ptp`, `host-local`, `portmap`, … */
export const REFERENCE_CNI_DIR = '/usr/lib/cni'

/** The built flatnet plugin (`./build.sh` → dist/bin/flatnet), by absolute path. */
export const flatnetBinary = fileURLToPath(new URL('../../dist/bin/flatnet', import.meta.url))

/**
 * The plugin's test build (`./build.sh` → dist/test/bin/flatnet): the same bundle with its named
 * test points (FLATNET_TEST_CRASH_AT / FLATNET_TEST_FAIL_AT) live; dist/bin/flatnet has them
 * compiled out. For the kill-point and fault-injection suites only.
 */
export const flatnetTestBinary = fileURLToPath(new URL('../../dist/test/bin/flatnet', import.meta.url))

/**
 * Why a flatnet test cannot run, or undefined when it can. For `t.test(name, { skip: … })`:
 * the only accepted reason to skip is that the binary has not been built.
 */
export function flatnetMissingReason(): string | undefined {
  return existsSync(flatnetBinary) ? undefined : `${flatnetBinary} does not exist: run ./build.sh first`
}
