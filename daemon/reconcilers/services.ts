// services: owns the nftables tables `ip flatnet-services` and `ip6 flatnet-services` — the
// service proxy (cluster IPs, node ports, external and load-balancer IPs → endpoints; the
// compiler and the tables' shape: ../services/). Every sync compiles the Service models into both
// tables' contents and changes the kernel in one `nft -f -` transaction covering both families:
// - with the last written plan in memory and the kernel known to hold it, only the difference
//   (new and changed chains, map elements, dropped chains and sets): adding one Service to
//   thousands writes its own chains and elements and nothing else;
// - otherwise (first sync, hand edits, other cluster ranges) each table whole, replaced in the
//   same transaction (create, delete, create: never a moment without it, never a flush).
//
// Level-triggered: a full sync reads the tables back (`nft -s list table`, affinity entries left
// out) and compares them with the listing taken after its last whole write, or — after a partial
// write or a restart, when there is no such listing — checks their structure against the plan
// (chain names and rule counts, map element counts, and the `synced-<digest>` chain the last
// write left). A restarted flatnetd whose table carries the digest of what it wants rewrites
// nothing. Nothing is written before its inputs are fully listed, nothing flushed at start.
//
// The read-back is bounded: listing the tables of 10 000 Services × 10 endpoints took nft 1.0.6
// 97–283 s on a loaded machine with a chain per endpoint (~110 000 chains), and still takes
// seconds with the Services as map elements (bench/services.ts: nft prints each of the ~190 000
// elements), as much as the runner's 10 s between full syncs on a loaded machine. Each read-back's
// duration D is measured; a full sync within READ_BACK_SPACING × D of the end of the last one
// trusts what it last wrote, as a partial sync does, so verifying takes at most ~1/11 of the wall
// time. Without a verified last write (the first sync, a restart, after a failure — a retry is a
// sync after a failure) it always reads back; at small scale (D of a few ms) every full sync does.
import { isDeepStrictEqual } from 'node:util'
import type { Logger } from 'pino'
import { NftTransaction, applyNft, nftProcess, type NftExecutor, type NftFamily } from '../../net/nft.js'
import type { NodeRecord } from '../datastore/index.js'
import type { DaemonMetrics } from '../metrics.js'
import type { ObjectInputs } from '../objects/view.js'
import type { InputSource, Reconciler, ReconcilerStatus, SyncRequest, SyncResult } from '../reconcile/contract.js'
import { FAMILIES, SHARED_CHAIN, compactPlan, compileServices, emptyPlan, familyOf, mergePlans, type FamilyServices, type ServicesNode, type ServicesPlan } from '../services/compile.js'
import { listedStructure, normalizeListing, structureDiffers } from '../services/listing.js'
import { serviceKey, type ServiceModel } from '../services/model.js'
import { staleUdpFlows } from '../services/staleFlows.js'
import type { ConntrackFilter } from '../../net/conntrack.js'
import { SERVICES_TABLE, inputDigest, modelDigest, skeleton, tableFamily, writeDifference, writeWhole } from '../services/table.js'

/** What the services reconciler reads: Services, their endpoints' sources (Pods, EndpointSlices), this node. */
export type ServicesView = InputSource & Pick<ObjectInputs, 'services' | 'pods' | 'endpointSlices'> & { self(): NodeRecord | undefined }

/** Turns the view into the Services this node proxies (daemon/services/endpoints.ts); undefined while an input is missing. */
export type ServiceModelSource = (view: ServicesView) => readonly ServiceModel[] | undefined

export type ServicesMetrics = Pick<DaemonMetrics, 'servicesProgrammed' | 'servicesPorts' | 'servicesEndpoints' | 'servicesNoEndpoints' | 'servicesReadBackSeconds'>

/** A read-back of D ms is followed by at least this many D ms without one (full syncs then trust the last write). */
export const READ_BACK_SPACING = 10

/** Milliseconds on a monotonic clock (injectable so tests can play long read-backs). */
export type Clock = () => number

/** A family gets a table when the cluster has a range of it or a Service has an address of it. */
const hasContent = (f: FamilyServices) => f.chains.size > 0 || Object.values(f.elements).some((m) => m.size > 0)

/** The shared `pick-` chains the Services of `fragments` use in family `i`. */
function sharedChains(fragments: Iterable<Fragment>, i: number): Set<string> {
  const names = new Set<string>()
  for (const f of fragments) for (const name of f.plan.families[i]!.chains.keys()) if (SHARED_CHAIN.test(name)) names.add(name)
  return names
}

/** One Service compiled on its own, with the model it was compiled from and that model's digest. */
interface Fragment {
  model: ServiceModel
  digest: readonly number[]
  plan: ServicesPlan
}

interface Written {
  /** Per Service (`namespace/name`), what the tables hold for it. */
  fragments: ReadonlyMap<string, Fragment>
  digest: string
  /** Per family, whether its table exists (a family nothing needs has none). */
  present: boolean[]
  /** Per family, the normalized listing right after a whole write or a verified read; undefined after a partial write. */
  listings: Array<string | undefined>
}

export interface ServicesReconcilerOptions {
  metrics?: ServicesMetrics
  /** How nft is run (default: the nft binary in this namespace). */
  nft?: NftExecutor
  /** Milliseconds, monotonic: spaces the full syncs' read-backs (default performance.now). */
  clock?: Clock
  /** Deletes the conntrack entries a filter matches (net/conntrack.ts); none: stale UDP flows are left to idle out. */
  forgetFlows?: (f: ConntrackFilter) => Promise<void>
}

export class ServicesReconciler implements Reconciler<ServicesView> {
  readonly name = 'services'
  readonly owns = `the nftables tables ip ${SERVICES_TABLE} and ip6 ${SERVICES_TABLE} (the service proxy)`
  readonly inputs = ['subnet', 'pods', 'services', 'endpointslices'] as const
  // A node that cannot program Services leaves its pods without cluster DNS and every ClusterIP:
  // it should not take new pods.
  readonly gatesReadiness = true
  readonly holdsWhileRefused = true
  private written: Written | undefined
  /**
   * Each Service's compiled plan, by `namespace/name`: a sync compiles only the Services whose
   * model changed (compared as data, not as text: turning 10 000 models into JSON on every sync
   * was most of a partial sync's time), and a partial write touches only theirs. An unchanged
   * Service keeps its Fragment object, so "changed" is "another object". Pure memo, kept across
   * failures.
   */
  private compiled = new Map<string, Fragment>()
  /** The last read-back: how long it took and when it ended (clock ms); undefined until one succeeds, and after a failure. */
  private lastReadBack: { ms: number; endedAt: number } | undefined

  private readonly metrics?: ServicesMetrics
  private readonly nft: NftExecutor
  private readonly clock: Clock
  private readonly forgetFlows?: (f: ConntrackFilter) => Promise<void>

  constructor(
    private readonly node: ServicesNode,
    private readonly models: ServiceModelSource,
    private readonly log: Logger,
    options: ServicesReconcilerOptions = {},
  ) {
    this.metrics = options.metrics
    this.nft = options.nft ?? nftProcess
    this.clock = options.clock ?? (() => performance.now())
    this.forgetFlows = options.forgetFlows
  }

  /** Whether a full sync now must read the tables back: no verified last write to trust, or the spacing after the last read-back has passed. */
  private readBackDue(): { due: boolean; waitMs: number } {
    const last = this.lastReadBack
    if (!this.written || !last) return { due: true, waitMs: 0 }
    const waitMs = last.endedAt + READ_BACK_SPACING * last.ms - this.clock()
    return { due: waitMs <= 0, waitMs }
  }

  async sync(view: ServicesView, req: SyncRequest): Promise<SyncResult> {
    const due = this.readBackDue()
    const readBack = req.full && due.due
    if (req.full && !readBack)
      this.log.debug({ lastReadBackMs: Math.round(this.lastReadBack!.ms), nextInMs: Math.round(due.waitMs) }, 'services full sync trusts the last write: the last read-back was recent for its cost')
    // Every listing of this sync is timed: their sum is the read-back's duration.
    let readBackMs: number | undefined
    const readTable = async (family: NftFamily) => {
      const t0 = this.clock()
      readBackMs ??= 0
      try {
        return await this.listing(family)
      } finally {
        readBackMs! += this.clock() - t0
      }
    }
    const models = this.models(view)
    if (!models) return { changed: false, problems: [] }
    const fragments = new Map<string, Fragment>()
    for (const m of models) {
      const key = serviceKey(m)
      const known = this.compiled.get(key)
      fragments.set(key, known && (known.model === m || isDeepStrictEqual(known.model, m)) ? known : { model: m, digest: modelDigest(m), plan: compactPlan(compileServices([m], this.node)) })
    }
    this.compiled = fragments
    const digest = inputDigest(
      this.node.clusterRanges,
      Array.from(fragments.values(), (f) => f.digest),
    )
    const stats = emptyPlan(this.node).stats
    for (const f of fragments.values()) {
      stats.services += f.plan.stats.services
      stats.servicePorts += f.plan.stats.servicePorts
      stats.endpoints += f.plan.stats.endpoints
      stats.noEndpoints += f.plan.stats.noEndpoints
    }
    this.metrics?.servicesProgrammed.set(stats.services)
    this.metrics?.servicesPorts.set(stats.servicePorts)
    this.metrics?.servicesEndpoints.set(stats.endpoints)
    this.metrics?.servicesNoEndpoints.set(stats.noEndpoints)
    let whole: ServicesPlan | undefined
    const wholePlan = () =>
      (whole ??= mergePlans(
        [...fragments.values()].map((f) => f.plan),
        this.node,
      ))
    try {
      const tx = new NftTransaction()
      const listings: Array<string | undefined> = []
      const rewritten: boolean[] = []
      let changed = false
      const w = this.written
      // What changed since the last write, as two plans of only the Services concerned.
      // (An unchanged Service keeps its Fragment object.)
      const changedKeys: string[] = []
      if (w) {
        for (const [k, f] of fragments) if (w.fragments.get(k) !== f) changedKeys.push(k)
        for (const k of w.fragments.keys()) if (!fragments.has(k)) changedKeys.push(k)
      }
      const before = w
        ? mergePlans(
            changedKeys.flatMap((k) => (w.fragments.has(k) ? [w.fragments.get(k)!.plan] : [])),
            this.node,
          )
        : undefined
      const after = mergePlans(
        changedKeys.flatMap((k) => (fragments.has(k) ? [fragments.get(k)!.plan] : [])),
        this.node,
      )
      const wanted = FAMILIES.map((f, i) => {
        if (this.node.clusterRanges.some((r) => familyOf(r) === f)) return true
        for (const x of fragments.values()) if (hasContent(x.plan.families[i]!)) return true
        return false
      })
      for (const [i, f] of FAMILIES.entries()) {
        const t = tableFamily(f)
        let listing: string | undefined
        let trusted = !readBack && w !== undefined
        if (!trusted) {
          listing = await readTable(t)
          trusted = listing !== undefined && this.verify(listing, i, () => wholePlan().families[i]!, digest)
        }
        if (!wanted[i]) {
          if (listing !== undefined || (w?.present[i] && !readBack)) (tx.removeTable(t, SERVICES_TABLE), (changed = true))
          listings.push(undefined)
          rewritten.push(false)
          continue
        }
        if (trusted && w && before) {
          // A hairpin pair the changed Services drop stays while an unchanged Service has the endpoint.
          let kept: Set<string> | undefined
          const hairpinKept = (pair: string) => (kept ??= new Set([...fragments.values()].flatMap((x) => [...x.plan.families[i]!.hairpins]))).has(pair)
          // The shared `pick-` chains the table holds, and those the unchanged Services still use.
          let present: Set<string> | undefined
          let inUse: Set<string> | undefined
          const shared = {
            present: (name: string) => (present ??= sharedChains(w.fragments.values(), i)).has(name),
            kept: (name: string) => (inUse ??= sharedChains(fragments.values(), i)).has(name),
          }
          const diff = writeDifference(tx, before.families[i]!, after.families[i]!, w.digest, digest, hairpinKept, shared)
          if (diff !== undefined) {
            changed ||= diff
            listings.push(diff ? undefined : (listing ?? w.listings[i]))
            rewritten.push(false)
            continue
          }
        } else if (trusted) {
          listings.push(listing) // a restart finding its own last write
          rewritten.push(false)
          continue
        }
        if (listing !== undefined && w) this.log.warn({ table: `${t} ${SERVICES_TABLE}` }, 'services table differs from what flatnetd wrote (edited by hand?); rewriting it')
        writeWhole(tx, wholePlan().families[i]!, digest)
        changed = true
        listings.push(undefined)
        rewritten.push(true)
      }
      await applyNft(tx, `install nftables tables ${SERVICES_TABLE} (${stats.services} services, ${stats.servicePorts} ports, ${stats.endpoints} endpoints)`, this.nft)
      // After a whole write on a full sync, keep the listing: the next full sync compares text.
      // It is part of this sync's read-back (counted in its duration).
      if (readBack) for (const [i, f] of FAMILIES.entries()) if (rewritten[i]) listings[i] = await readTable(tableFamily(f))
      this.written = { fragments, digest, present: wanted, listings }
      if (w) await this.forgetStaleFlows(changedKeys.map((k) => [w.fragments.get(k)?.model, fragments.get(k)?.model] as const))
      if (readBackMs !== undefined) {
        this.lastReadBack = { ms: readBackMs, endedAt: this.clock() }
        this.metrics?.servicesReadBackSeconds.set(readBackMs / 1000)
      }
      if (changed) this.log.debug({ ...stats, services: changedKeys.length || stats.services, whole: rewritten.some(Boolean) }, 'services tables programmed')
      return { changed, problems: [] }
    } catch (e) {
      this.written = undefined
      this.lastReadBack = undefined
      return { changed: false, problems: [(e as Error).message] }
    }
  }

  /**
   * Deletes the UDP conntrack entries of the changed Services that lead to an endpoint no longer
   * serving them (daemon/services/staleFlows.ts), once the tables no longer send new flows there.
   * A failure is logged, not a failed sync: the tables are right, the flows idle out in the end.
   */
  private async forgetStaleFlows(changes: ReadonlyArray<readonly [ServiceModel | undefined, ServiceModel | undefined]>): Promise<void> {
    if (!this.forgetFlows) return
    const filters = changes.flatMap(([old, now]) => staleUdpFlows(old, now))
    const failed: string[] = []
    for (const f of filters) await this.forgetFlows(f).catch((e: Error) => failed.push(e.message))
    if (filters.length) this.log.debug({ filters: filters.length, failed: failed.length }, 'stale UDP conntrack entries of changed Services deleted')
    if (failed.length) this.log.warn({ failed: failed.length, first: failed[0] }, 'could not delete stale UDP conntrack entries; those flows keep their old endpoint until they idle out')
  }

  /** Whether the listed table is the last write (or, without one, the plan's own): same listing, or same structure and digest. */
  private verify(listing: string, i: number, now: () => FamilyServices, nowDigest: string): boolean {
    const w = this.written
    const known = w?.listings[i]
    if (known !== undefined) return listing === known
    const fam = w
      ? mergePlans(
          [...w.fragments.values()].map((f) => f.plan),
          this.node,
        ).families[i]!
      : now()
    const digest = w ? w.digest : nowDigest
    const sk = new Map(skeleton(fam).chains.map((c) => [c.name, c.rules.length]))
    const why = structureDiffers(listedStructure(listing), fam, sk, digest)
    if (why && w) this.log.warn({ table: `${tableFamily(fam.family)} ${SERVICES_TABLE}` }, `services table is not what flatnetd wrote: ${why}`)
    return why === undefined
  }

  /** nft's stateless listing of one table, normalized; undefined when there is none. */
  private async listing(family: 'ip' | 'ip6' | 'inet'): Promise<string | undefined> {
    const r = await this.nft.run(['-s', 'list', 'table', family, SERVICES_TABLE])
    if (r.code === 0) return normalizeListing(r.stdout)
    if (/No such file or directory/.test(r.stderr)) return undefined
    throw new Error(`list nftables table ${family} ${SERVICES_TABLE}: ${r.stderr.trim() || `nft exit ${r.code}`}`)
  }

  async remove(): Promise<string> {
    const removed: string[] = []
    const tx = new NftTransaction()
    // `list tables` prints no content (nft 1.0.6 still fetches the whole ruleset for it: seconds at
    // 10 000 Services, where listing the tables themselves took minutes with a chain per endpoint).
    const r = await this.nft.run(['list', 'tables'])
    if (r.code !== 0) throw new Error(`list nftables tables: ${r.stderr.trim() || `nft exit ${r.code}`}`)
    const tables = new Set(r.stdout.split('\n').map((l) => l.trim()))
    for (const t of ['ip', 'ip6'] as const) {
      if (!tables.has(`table ${t} ${SERVICES_TABLE}`)) continue
      tx.removeTable(t, SERVICES_TABLE)
      removed.push(`${t} ${SERVICES_TABLE}`)
    }
    await applyNft(tx, `remove nftables tables ${SERVICES_TABLE}`, this.nft)
    this.written = undefined
    return removed.length ? `nftables tables ${removed.join(', ')} removed` : `no nftables table ${SERVICES_TABLE}`
  }

  status(): ReconcilerStatus {
    return {}
  }
}
