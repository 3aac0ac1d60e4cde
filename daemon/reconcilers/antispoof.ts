// antispoof: owns the nftables table `inet flatnet-antispoof` (a pod sends only from its own
// addresses, both families; see ../antispoof.ts for the rules and why). Its rules are constant;
// its two sets hold the pod sources of this node's host routes, so its input is `podRoutes`
// (main.ts listens for the plugin's route changes). A full sync reads the table back with
// `nft -j` and rebuilds it in one transaction when anything differs (missing, hand-edited, pod
// sources not those of the host routes); a partial sync diffs the host routes against
// what it last wrote and adds and deletes elements in one transaction; a failure forgets that.
//
// It gates readiness: a node that is meant to enforce it but cannot would let its pods
// impersonate any other pod or node, silently. `--no-anti-spoofing` is the explicit way out (e.g.
// pods that route for others), and removes the table. A set that lags behind the routes costs
// speed only: a pod not in it is judged by the fib rule, as every packet was before the sets.
import type { Logger } from 'pino'
import type { IpFamily } from '../../net/ipbytes.js'
import { applyNft, nftProcess, NftTransaction, readNftTable, sameNftState, type NftExecutor, type NftTableState } from '../../net/nft.js'
import { ANTISPOOF_FAMILY, ANTISPOOF_TABLE, antispoofState, antispoofTable, podSourceElement, podSourcesListed, podSourcesSet, type PodSources } from '../antispoof.js'
import type { InputSource, Reconciler, ReconcilerStatus, SyncRequest, SyncResult } from '../reconcile/contract.js'

const TABLE = `${ANTISPOOF_FAMILY} ${ANTISPOOF_TABLE}`
const FAMILIES = [4, 6] as const

/** What the reconciler reads from the host: the pod sources of its host routes, and link names back to indexes. */
export interface PodSourceReader {
  sources(): Promise<PodSources>
  /** Interface index by name, now (nft lists a live link's index as its name). */
  indexes(): Promise<Map<string, number>>
}

export class AntispoofReconciler implements Reconciler {
  readonly name = 'antispoof'
  readonly owns = `the nftables table ${TABLE} (pods send only from their own addresses)`
  readonly inputs = ['podRoutes'] as const
  readonly gatesReadiness = true
  readonly holdsWhileRefused = true
  /** The elements of each set as last written (`index . address`); undefined: trust nothing. */
  private written: Record<IpFamily, Set<string>> | undefined

  constructor(
    private readonly log: Logger,
    private readonly host: PodSourceReader,
    private readonly nft: NftExecutor = nftProcess,
  ) {}

  async sync(_view: InputSource, req: SyncRequest): Promise<SyncResult> {
    try {
      const sources = await this.host.sources()
      const want = { 4: new Set(sources[4].map(podSourceElement)), 6: new Set(sources[6].map(podSourceElement)) }
      const have = this.written
      if (req.full || !have) {
        // Read back: anything else than the wanted rules and elements is rebuilt whole, in one
        // transaction (atomic: no packet sees the table half-made).
        const now = await readNftTable(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, this.nft)
        const sameRules = now !== undefined && sameNftState(withoutElements(now), antispoofState())
        if (sameRules) {
          const listed = await this.listedElements(now)
          if (FAMILIES.every((f) => sameElements(listed[f], want[f]))) {
            this.written = want
            return { changed: false, problems: [] }
          }
        }
        await applyNft(new NftTransaction().replaceTable(antispoofTable(sources)), `install nftables table ${TABLE}`, this.nft)
        this.written = want
        const podSources = want[4].size + want[6].size
        if (sameRules) this.log.info({ podSources }, 'anti-spoofing pod sources differed from the host routes: table rebuilt')
        else this.log.info({ podSources }, 'anti-spoofing table installed')
        return { changed: true, problems: [] }
      }
      const tx = new NftTransaction()
      let delta = 0
      for (const f of FAMILIES) {
        const add = [...want[f]].filter((e) => !have[f].has(e))
        const drop = [...have[f]].filter((e) => !want[f].has(e))
        tx.addElements(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, podSourcesSet(f), add).deleteElements(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, podSourcesSet(f), drop)
        delta += add.length + drop.length
      }
      if (delta) await applyNft(tx, `update the pod sources of nftables table ${TABLE}`, this.nft)
      this.written = want
      if (delta) this.log.debug({ changed: delta, podSources: want[4].size + want[6].size }, 'anti-spoofing pod sources updated')
      return { changed: delta > 0, problems: [] }
    } catch (e) {
      // After a trusted write the table and its fib rule are in place: only the sets lag.
      const consequence = this.written ? 'the fib rule still judges every pod packet, the pod-source sets lag' : 'pods could send with forged source addresses'
      this.written = undefined
      return { changed: false, problems: [`${(e as Error).message}: ${consequence}`] }
    }
  }

  private async listedElements(state: NftTableState): Promise<Record<IpFamily, Set<string>>> {
    const indexes = await this.host.indexes()
    const of = (f: IpFamily) => new Set(podSourcesListed(state.sets.find((s) => s.name === podSourcesSet(f))?.elem, (name) => indexes.get(name)))
    return { 4: of(4), 6: of(6) }
  }

  async remove(): Promise<string> {
    const existed = (await readNftTable(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, this.nft)) !== undefined
    await applyNft(new NftTransaction().removeTable(ANTISPOOF_FAMILY, ANTISPOOF_TABLE), `remove nftables table ${TABLE}`, this.nft)
    this.written = undefined
    return existed ? `nftables table ${TABLE} removed` : `no nftables table ${TABLE}`
  }

  status(): ReconcilerStatus {
    return {}
  }
}

function sameElements(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  return a.size === b.size && [...a].every((e) => b.has(e))
}

function withoutElements(s: NftTableState): NftTableState {
  return { ...s, sets: s.sets.map(({ elem: _elem, ...rest }) => rest) }
}
