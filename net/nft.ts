// The one nftables layer of flatnet: a transaction builder (tables, chains, sets, maps, elements,
// rules) rendered as one `nft -f -` script, applied in one process run (the kernel commits the
// whole script or none of it: nft sends it as one netlink batch), and read back as structured
// state with `nft -j`. Every table flatnet owns goes through here, so each concern builds its own
// transaction and nothing else spawns nft.
//
// nft is spawned with an argument array, never a shell, and scripts are built from parsed values
// (CIDRs, addresses, names of our own constants) only.
import { spawn } from 'node:child_process'

export type NftFamily = 'ip' | 'ip6' | 'inet'

export interface NftResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs `nft <args>` with `script` on stdin. The real one is nftProcess; tests use net/testing/nftRecorder.ts. */
export interface NftExecutor {
  run(args: readonly string[], script?: string): Promise<NftResult>
}

/** An nft command that failed: the operation, the object, and nft's own words. */
export class NftError extends Error {
  override name = 'NftError'
  constructor(
    readonly operation: string,
    readonly result: NftResult,
  ) {
    super(`${operation}: ${result.stderr.trim() || `nft exit ${result.code}`}`)
  }
}

/** Runs the nft binary with these arguments and script on stdin. */
export function runNft(args: readonly string[], script = ''): Promise<NftResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('nft', [...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => err.push(d))
    child.stdin.on('error', () => {}) // nft failing early closes stdin; its exit code tells
    child.on('error', (e) => reject(new Error(`run nft ${args.join(' ')}: ${e.message}`)))
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }))
    child.stdin.end(script)
  })
}

export const nftProcess: NftExecutor = { run: runNft }

/** A base chain's hook: `type nat hook postrouting priority srcnat; policy accept;`. */
export interface NftBaseChain {
  type: 'filter' | 'nat' | 'route'
  hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting'
  /** A number or a standard name (`srcnat` is 100 for nat postrouting, `filter` is 0). */
  priority: number | string
  policy?: 'accept' | 'drop'
}

export interface NftChain {
  name: string
  base?: NftBaseChain
  /** Rules in nft syntax, in order. */
  rules: readonly string[]
}

export interface NftSet {
  name: string
  /** e.g. `ipv4_addr`, `ipv4_addr . inet_service`; with `typeOf`, expressions (`ip daddr . th dport`). */
  type: string
  /**
   * `type` (and a map's `valueType`) are expressions, declared `typeof`: the only way to key a map
   * with something that has no named type, such as `numgen random mod N`.
   */
  typeOf?: boolean
  flags?: readonly string[]
  /** Overlapping and adjacent intervals are merged on insertion (interval sets only). */
  autoMerge?: boolean
  /** Seconds an element lives (sets with flags `timeout`, e.g. `dynamic,timeout` ones rules fill). */
  timeout?: number
  elements?: readonly string[]
}

export interface NftMap extends NftSet {
  /** The value type, e.g. `verdict`. Elements are `key : value`. */
  valueType: string
}

/** A whole table as one concern wants it. */
export interface NftTable {
  family: NftFamily
  name: string
  /** The table's comment (nft ≥ 0.9.7): e.g. a digest of the desired state it was built from. */
  comment?: string
  /** Named counters (`counter NAME { }`), which rules use with `counter name "NAME"`. */
  counters?: readonly string[]
  sets?: readonly NftSet[]
  maps?: readonly NftMap[]
  chains: readonly NftChain[]
}

function setLines(kind: 'set' | 'map', s: NftSet | NftMap): string[] {
  const type = kind === 'map' ? `${s.type} : ${(s as NftMap).valueType}` : s.type
  const lines = [`\t${kind} ${s.name} {`, `\t\t${s.typeOf ? 'typeof' : 'type'} ${type}`]
  if (s.flags?.length) lines.push(`\t\tflags ${s.flags.join(',')}`)
  if (s.timeout !== undefined) lines.push(`\t\ttimeout ${s.timeout}s`)
  if (s.autoMerge) lines.push('\t\tauto-merge')
  if (s.elements?.length) lines.push(`\t\telements = { ${s.elements.join(', ')} }`)
  lines.push('\t}')
  return lines
}

/**
 * The table as an nft script. For a table of one chain with a named priority this is byte for byte
 * what `nft list table` prints back (nft 1.0.6); with more blocks nft adds a blank line between
 * them and prints numeric priorities by name, so compare structure (readNftTable), not text.
 */
export function renderNftTable(t: NftTable): string {
  const lines = [`table ${t.family} ${t.name} {`]
  if (t.comment !== undefined) lines.push(`\tcomment ${JSON.stringify(t.comment)}`)
  for (const c of t.counters ?? []) lines.push(`\tcounter ${c} {`, '\t}')
  for (const s of t.sets ?? []) lines.push(...setLines('set', s))
  for (const m of t.maps ?? []) lines.push(...setLines('map', m))
  for (const c of t.chains) {
    lines.push(`\tchain ${c.name} {`)
    if (c.base) lines.push(`\t\ttype ${c.base.type} hook ${c.base.hook} priority ${c.base.priority}; policy ${c.base.policy ?? 'accept'};`)
    for (const r of c.rules) lines.push(`\t\t${r}`)
    lines.push('\t}')
  }
  lines.push('}', '')
  return lines.join('\n')
}

/**
 * One nft transaction. Statements accumulate in order; text() is the script for `nft -f -`,
 * which the kernel applies atomically: readers see the state before or after, never between.
 */
export class NftTransaction {
  private readonly parts: string[] = []

  addTable(family: NftFamily, name: string): this {
    return this.push(`add table ${family} ${name}`)
  }

  /** Fails unless the table exists; pair with addTable for "delete if present". */
  deleteTable(family: NftFamily, name: string): this {
    return this.push(`delete table ${family} ${name}`)
  }

  /**
   * Leaves exactly `t` in place whatever was there (missing, older, hand-edited): create if
   * missing, delete, create whole — in one transaction, so there is never a moment without it
   * and never a flush visible to packets.
   */
  replaceTable(t: NftTable): this {
    this.addTable(t.family, t.name).deleteTable(t.family, t.name)
    this.parts.push(renderNftTable(t))
    return this
  }

  /**
   * The table's objects as declared (`table … { … }`): created where missing, left as they are where
   * they exist (base chains keep their hooks, named counters their counts). Pair with flushTable
   * and deleteSet to replace the content in one transaction without ever unhooking a base chain.
   */
  declareTable(t: NftTable): this {
    this.parts.push(renderNftTable(t))
    return this
  }

  /** Removes every rule of every chain of the table (sets, chains and counters stay). */
  flushTable(family: NftFamily, name: string): this {
    return this.push(`flush table ${family} ${name}`)
  }

  /** Fails unless the set exists and no rule left in the transaction uses it. */
  deleteSet(family: NftFamily, table: string, set: string): this {
    return this.push(`delete set ${family} ${table} ${set}`)
  }

  /** Fails unless the chain exists, is empty and no rule left jumps to it. */
  deleteChain(family: NftFamily, table: string, chain: string): this {
    return this.push(`delete chain ${family} ${table} ${chain}`)
  }

  /** Removes the table if it exists; succeeds when it does not. */
  removeTable(family: NftFamily, name: string): this {
    return this.addTable(family, name).deleteTable(family, name)
  }

  addChain(family: NftFamily, table: string, chain: string, base?: NftBaseChain): this {
    const hook = base ? ` { type ${base.type} hook ${base.hook} priority ${base.priority}; policy ${base.policy ?? 'accept'}; }` : ''
    return this.push(`add chain ${family} ${table} ${chain}${hook}`)
  }

  flushChain(family: NftFamily, table: string, chain: string): this {
    return this.push(`flush chain ${family} ${table} ${chain}`)
  }

  addRule(family: NftFamily, table: string, chain: string, rule: string): this {
    return this.push(`add rule ${family} ${table} ${chain} ${rule}`)
  }

  addSet(family: NftFamily, table: string, set: NftSet): this {
    const flags = set.flags?.length ? ` flags ${set.flags.join(',')};` : ''
    const timeout = set.timeout !== undefined ? ` timeout ${set.timeout}s;` : ''
    return this.push(`add set ${family} ${table} ${set.name} { ${set.typeOf ? 'typeof' : 'type'} ${set.type};${flags}${timeout} }`)
  }

  addMap(family: NftFamily, table: string, map: NftMap): this {
    const flags = map.flags?.length ? ` flags ${map.flags.join(',')};` : ''
    return this.push(`add map ${family} ${table} ${map.name} { ${map.typeOf ? 'typeof' : 'type'} ${map.type} : ${map.valueType};${flags} }`)
  }

  addElements(family: NftFamily, table: string, setOrMap: string, elements: readonly string[]): this {
    if (elements.length === 0) return this
    return this.push(`add element ${family} ${table} ${setOrMap} { ${elements.join(', ')} }`)
  }

  deleteElements(family: NftFamily, table: string, setOrMap: string, elements: readonly string[]): this {
    if (elements.length === 0) return this
    return this.push(`delete element ${family} ${table} ${setOrMap} { ${elements.join(', ')} }`)
  }

  get empty(): boolean {
    return this.parts.length === 0
  }

  text(): string {
    return this.parts.map((p) => (p.endsWith('\n') ? p : p + '\n')).join('')
  }

  private push(statement: string): this {
    this.parts.push(statement)
    return this
  }
}

/** Applies the transaction as one `nft -f -`; throws NftError naming `operation`. */
export async function applyNft(tx: NftTransaction, operation: string, nft: NftExecutor = nftProcess): Promise<void> {
  if (tx.empty) return
  const r = await nft.run(['-f', '-'], tx.text())
  if (r.code !== 0) throw new NftError(operation, r)
}

/** A table as the kernel holds it, from `nft -j list table`: handles dropped, so it compares with what a concern wants. */
export interface NftTableState {
  chains: Array<{ name: string; type?: string; hook?: string; prio?: number; policy?: string }>
  sets: Array<{ name: string; type: unknown; flags?: unknown; elem?: unknown }>
  maps: Array<{ name: string; type: unknown; map: unknown; flags?: unknown; elem?: unknown }>
  /** Rules with their chain and nft's JSON expression list. */
  rules: Array<{ chain: string; expr: unknown[] }>
}

/** The table's state, or undefined when there is no such table. */
export async function readNftTable(family: NftFamily, name: string, nft: NftExecutor = nftProcess): Promise<NftTableState | undefined> {
  const r = await nft.run(['-j', 'list', 'table', family, name])
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return undefined
    throw new NftError(`list nftables table ${family} ${name}`, r)
  }
  let doc: { nftables?: Array<Record<string, Record<string, unknown>>> }
  try {
    doc = JSON.parse(r.stdout) as typeof doc
  } catch (e) {
    throw new Error(`list nftables table ${family} ${name}: nft -j printed no JSON: ${(e as Error).message}`)
  }
  const state: NftTableState = { chains: [], sets: [], maps: [], rules: [] }
  for (const item of doc.nftables ?? []) {
    if (item.chain) {
      const { name: cname, type, hook, prio, policy } = item.chain as NftTableState['chains'][number]
      state.chains.push(dropUndefined({ name: cname, type, hook, prio, policy }))
    } else if (item.set) {
      const { name: sname, type, flags, elem } = item.set as NftTableState['sets'][number]
      state.sets.push(dropUndefined({ name: sname, type, flags, elem }))
    } else if (item.map) {
      const { name: mname, type, map, flags, elem } = item.map as NftTableState['maps'][number]
      state.maps.push(dropUndefined({ name: mname, type, map, flags, elem }))
    } else if (item.rule) {
      state.rules.push({ chain: String(item.rule.chain), expr: (item.rule.expr as unknown[]) ?? [] })
    }
  }
  return state
}

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

/** Deep equality of two plain JSON values, key order ignored. */
export function sameNftState(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b)
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`
  }
  return JSON.stringify(v) ?? 'null'
}
