// Reading a services table back: nft's stateless listing (`nft -s list table`), with what the
// kernel changes by itself taken out (the clients that affinity sets learn), and its structure
// (chains with their rule counts, map elements) to check against a plan when there is no earlier
// listing to compare with (after a partial write, after a restart).
import { SERVICE_MAPS, type FamilyServices } from './compile.js'
import { HAIRPIN_SET, digestChain } from './table.js'

/** The listing with affinity sets' learned elements removed: it changes only when someone changes the table. */
export function normalizeListing(listing: string): string {
  const out: string[] = []
  let inAffinity = false
  for (const line of listing.split('\n')) {
    if (/^\tset affinity-/.test(line)) inAffinity = true
    else if (inAffinity && line === '\t}') inAffinity = false
    else if (inAffinity && !/^\t\t(type|size|flags|timeout) /.test(line)) continue
    out.push(line)
  }
  return out.join('\n')
}

export interface ListedStructure {
  /** Chain name → number of rules (base chains included). */
  chains: Map<string, number>
  /** Map name → number of elements. */
  elements: Map<string, number>
  sets: Set<string>
  /** Elements of the hairpin set (`addr . addr` pairs). */
  hairpins: number
}

/** The structure of a listing: enough to tell a table flatnetd wrote from one edited by hand in all but in-place rule edits. */
export function listedStructure(listing: string): ListedStructure {
  const s: ListedStructure = { chains: new Map(), elements: new Map(), sets: new Set(), hairpins: 0 }
  let chain: string | undefined
  let map: string | undefined
  let hairpins = false
  for (const line of listing.split('\n')) {
    let m: RegExpExecArray | null
    if ((m = /^\tchain (\S+) \{$/.exec(line))) ((chain = m[1]!), s.chains.set(chain, 0))
    else if ((m = /^\tmap (\S+) \{$/.exec(line))) ((map = m[1]!), s.elements.set(map, 0))
    else if ((m = /^\tset (\S+) \{$/.exec(line))) (s.sets.add(m[1]!), (hairpins = m[1] === HAIRPIN_SET))
    else if (line === '\t}') ((chain = map = undefined), (hairpins = false))
    else if (hairpins && !/^\t\ttype /.test(line)) s.hairpins += line.match(/[\w:.]+ \. [\w:.]+/g)?.length ?? 0
    else if (chain !== undefined && line.startsWith('\t\t') && !line.startsWith('\t\ttype ')) s.chains.set(chain, s.chains.get(chain)! + 1)
    // An element is `key [comment "…"] : value`; nothing else in a map's elements has ` : ` (not an
    // IPv6 address, not a Service port comment), the type line does, and is skipped.
    else if (map !== undefined && !/^\t\t(type|typeof|flags|size) /.test(line)) s.elements.set(map, s.elements.get(map)! + (line.match(/ : /g)?.length ?? 0))
  }
  return s
}

/** Why the listed table is not the plan, or undefined when its structure matches (and its digest chain names `digest`). */
export function structureDiffers(listed: ListedStructure, fam: FamilyServices, skeletonChains: ReadonlyMap<string, number>, digest: string): string | undefined {
  if (!listed.chains.has(digestChain(digest))) return 'its digest is not the wanted one'
  for (const [name, rules] of fam.chains) if (listed.chains.get(name) !== rules.length) return `chain ${name} has ${listed.chains.get(name) ?? 'no'} rules, wants ${rules.length}`
  for (const [name, rules] of skeletonChains) if (listed.chains.get(name) !== rules) return `chain ${name} has ${listed.chains.get(name) ?? 'no'} rules, wants ${rules}`
  const expectedChains = fam.chains.size + skeletonChains.size + 1
  if (listed.chains.size !== expectedChains) return `it has ${listed.chains.size} chains, wants ${expectedChains}`
  for (const m of SERVICE_MAPS) if ((listed.elements.get(m) ?? -1) !== fam.elements[m].size) return `map ${m} has ${listed.elements.get(m) ?? 'no'} elements, wants ${fam.elements[m].size}`
  for (const name of fam.sets.keys()) if (!listed.sets.has(name)) return `set ${name} is missing`
  if (listed.hairpins !== fam.hairpins.size) return `set ${HAIRPIN_SET} has ${listed.hairpins} elements, wants ${fam.hairpins.size}`
  return undefined
}
