// Test-only: snapshots of everything a plugin call could leave behind — links, addresses and
// routes (every table, both families) of a namespace, the node's forwarding sysctl, and every
// file under a directory with its mode and content — and the difference of two snapshots as a
// list of leftovers. The reliability suites compare "before" and "after" with these, so a test
// can say "the node is exactly as before", not merely "the veth I thought of is gone".
import { createHash } from 'node:crypto'
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { runOk } from '../../e2e/helpers/run.js'
import type { Netns } from '../../e2e/helpers/netns.js'

/** One line per object; two snapshots are equal when their sorted lines are. */
export type Snapshot = string[]

async function ipJson(ns: Netns, args: string[]): Promise<Array<Record<string, unknown>>> {
  const { stdout } = await runOk(['ip', '-n', ns.name, '-j', ...args])
  return JSON.parse(stdout.trim() || '[]') as Array<Record<string, unknown>>
}

function line(kind: string, o: Record<string, unknown>): string {
  const sorted = Object.fromEntries(
    Object.entries(o)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => a.localeCompare(b)),
  )
  return `${kind} ${JSON.stringify(sorted)}`
}

/** Links, addresses and routes of every table and family, and forwarding, of one namespace. */
export async function netSnapshot(ns: Netns): Promise<Snapshot> {
  const out: string[] = []
  for (const l of await ipJson(ns, ['-d', 'link', 'show'])) {
    const info = l.linkinfo as { info_kind?: string } | undefined
    out.push(
      line('link', {
        ifindex: l.ifindex,
        ifname: l.ifname,
        kind: info?.info_kind,
        mtu: l.mtu,
        alias: l.ifalias,
        flags: [...(l.flags as string[])].sort().join(','),
        address: l.address,
      }),
    )
  }
  for (const l of await ipJson(ns, ['addr', 'show'])) {
    for (const a of l.addr_info as Array<Record<string, unknown>>) {
      out.push(line('address', { ifname: l.ifname, family: a.family, local: a.local, prefixlen: a.prefixlen, scope: a.scope }))
    }
  }
  for (const family of ['-4', '-6']) {
    for (const r of await ipJson(ns, [family, 'route', 'show', 'table', 'all'])) {
      out.push(
        line(`route${family}`, {
          dst: r.dst,
          gateway: r.gateway,
          dev: r.dev,
          protocol: r.protocol,
          scope: r.scope,
          type: r.type,
          table: r.table,
          prefsrc: r.prefsrc,
          metric: r.metric,
        }),
      )
    }
  }
  for (const family of ['-4', '-6']) {
    for (const r of await ipJson(ns, [family, 'rule', 'show'])) out.push(line(`rule${family}`, r))
  }
  const forward = (await runOk(['ip', 'netns', 'exec', ns.name, 'cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim()
  out.push(`sysctl net.ipv4.ip_forward=${forward}`)
  return out.sort()
}

export interface DirSnapshotOptions {
  /** Files whose content may change without anything being left behind (compared by name and mode only). */
  volatileContent?: RegExp
}

/** Every entry under `dir` (recursively): path, type, mode, and a hash of the content of files. */
export function dirSnapshot(dir: string, options: DirSnapshotOptions = {}): Snapshot {
  const out: string[] = []
  if (!existsSync(dir)) return out
  const walk = (path: string) => {
    const st = lstatSync(path)
    const rel = relative(dir, path) || '.'
    const mode = (st.mode & 0o7777).toString(8).padStart(4, '0')
    if (st.isDirectory()) {
      out.push(`dir ${rel} ${mode}`)
      for (const name of readdirSync(path)) walk(join(path, name))
    } else if (st.isFile()) {
      const content = options.volatileContent?.test(rel) ? '(volatile)' : createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16)
      out.push(`file ${rel} ${mode} ${content}`)
    } else {
      out.push(`other ${rel} ${mode}`)
    }
  }
  walk(dir)
  return out.sort()
}

/**
 * Waits until the kernel has finished settling the namespace's links by itself — carrier up on
 * both ends of new veths, IPv6 duplicate address detection done (the link-local address and its
 * local route come a second later) — so that a snapshot taken now differs from a later one only
 * by what somebody did. Gives up after `timeoutMs` and returns the last snapshot.
 */
export async function settledNetSnapshot(ns: Netns, timeoutMs = 8000): Promise<Snapshot> {
  const deadline = Date.now() + timeoutMs
  let last = await netSnapshot(ns)
  for (;;) {
    const tentative = (await runOk(['ip', '-n', ns.name, '-6', 'addr', 'show', 'tentative'])).stdout.trim()
    const noCarrier = last.some((l) => l.startsWith('link ') && l.includes('NO-CARRIER') && l.includes(',UP'))
    if (!tentative && !noCarrier) {
      await new Promise((r) => setTimeout(r, 100))
      const again = await netSnapshot(ns)
      if (again.join('\n') === last.join('\n')) return again
      last = again
    } else {
      await new Promise((r) => setTimeout(r, 100))
      last = await netSnapshot(ns)
    }
    if (Date.now() > deadline) return last
  }
}

/** What `after` has that `before` has not (leftovers), and what it lost. */
export function snapshotDiff(before: Snapshot, after: Snapshot): { added: string[]; removed: string[] } {
  const b = new Set(before)
  const a = new Set(after)
  return { added: after.filter((x) => !b.has(x)), removed: before.filter((x) => !a.has(x)) }
}

/** A small seeded PRNG (mulberry32): the same seed gives the same run, printed so a failure can be replayed. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let x = s
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** The seed of a run: FLATNET_TEST_SEED if set (to replay one), else a fresh one. */
export function runSeed(): number {
  const fromEnv = process.env.FLATNET_TEST_SEED
  if (fromEnv !== undefined && /^\d+$/.test(fromEnv)) return Number(fromEnv) >>> 0
  return Math.floor(Math.random() * 2 ** 32) >>> 0
}
