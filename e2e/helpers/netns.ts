// Throw-away network namespaces for tests: named `fnt-<tag>-<random>-<n>` so that concurrent test
// files never collide and a crashed run's leftovers can be found (prefix.ts). Created with
// `ip netns add`, so each has a path under /run/netns that a CNI plugin can open.
import { releasePrefix, uniquePrefix, type Teardown } from './prefix.js'
import { run, runOk, type RunOptions, type RunResult } from './run.js'

export interface Netns {
  /** Name for `ip netns exec`. */
  readonly name: string
  /** What a runtime passes as CNI_NETNS. */
  readonly path: string
}

export function netnsPath(name: string): string {
  return `/run/netns/${name}`
}

/** The namespaces of one test run. Remove them with `removeAll` (or let `testNamespaces` do it). */
export class TestNamespaces {
  readonly prefix: string
  private readonly made = new Set<string>()
  private count = 0

  constructor(tag: string) {
    this.prefix = uniquePrefix(tag)
  }

  /** Creates `<prefix>-<suffix>` (suffix defaults to a counter). Its `lo` is down, as in a fresh pod. */
  async create(suffix?: string): Promise<Netns> {
    const name = `${this.prefix}-${suffix ?? String(++this.count)}`
    this.made.add(name) // before creating: a half-made namespace must still be swept
    await runOk(['ip', 'netns', 'add', name])
    return { name, path: netnsPath(name) }
  }

  /** Deletes one namespace, killing processes still inside it first. Idempotent. */
  async remove(ns: Netns | string): Promise<void> {
    const name = typeof ns === 'string' ? ns : ns.name
    await removeNetns(name)
    this.made.delete(name)
  }

  /** Deletes every namespace this set created; tries all of them, then reports every failure. */
  async removeAll(): Promise<void> {
    const errors: string[] = []
    for (const name of [...this.made]) {
      try {
        await this.remove(name)
      } catch (err) {
        errors.push((err as Error).message)
      }
    }
    if (errors.length) throw new Error(`remove test namespaces ${this.prefix}-*: ${errors.join('; ')}`)
    releasePrefix(this.prefix)
  }
}

/** A namespace set whose namespaces are removed when `t` ends, pass or fail. */
export function testNamespaces(t: Teardown, tag: string): TestNamespaces {
  const set = new TestNamespaces(tag)
  t.teardown(() => set.removeAll())
  return set
}

async function removeNetns(name: string): Promise<void> {
  // Processes a test started inside the namespace keep it (and its veths) alive after
  // `ip netns del`; they are the test's own, so end them by pid.
  const pids = await run(['ip', 'netns', 'pids', name])
  if (pids.code === 0) {
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  const del = await run(['ip', 'netns', 'del', name])
  if (del.code !== 0 && !/No such file or directory/.test(del.stderr)) {
    throw new Error(`ip netns del ${name}: ${del.stderr.trim()}`)
  }
}

/** Runs `argv` inside the namespace (`ip netns exec`), arguments passed as they are. */
export function inNetns(ns: Netns | string, argv: readonly string[], options?: RunOptions): Promise<RunResult> {
  const name = typeof ns === 'string' ? ns : ns.name
  return run(['ip', 'netns', 'exec', name, ...argv], options)
}

/** Like `inNetns`, but a non-zero exit throws (naming the namespace and command). */
export function inNetnsOk(ns: Netns | string, argv: readonly string[], options?: RunOptions): Promise<RunResult> {
  const name = typeof ns === 'string' ? ns : ns.name
  return runOk(['ip', 'netns', 'exec', name, ...argv], options)
}
