// masquerade: owns the nftables table `ip flatnet` (cluster range → outside is masqueraded; see
// ../masquerade.ts for the rule and why). A full sync reads the table back with `nft -j` and
// rebuilds it in one transaction when its structure differs (missing, hand-edited, another
// range); a partial sync trusts what it last wrote. A failure forgets that memory.
import type { Logger } from 'pino'
import type { Cidr } from '../../ipam/index.js'
import { NftTransaction, applyNft, nftProcess, readNftTable, sameNftState, type NftExecutor } from '../../net/nft.js'
import { MASQUERADE_TABLE, masqueradeFamily, masqueradeState, masqueradeTable } from '../masquerade.js'
import type { InputSource, Reconciler, ReconcilerStatus, SyncRequest, SyncResult } from '../reconcile/contract.js'

export class MasqueradeReconciler implements Reconciler {
  readonly name = 'masquerade'
  readonly owns: string
  readonly inputs = [] as const
  // Without it pods reach nothing outside the cluster.
  readonly gatesReadiness = true
  readonly holdsWhileRefused = true
  /** The range of the table last written or found right; undefined after a failure. */
  private written: string | undefined

  constructor(
    private readonly cluster: Cidr,
    private readonly log: Logger,
    private readonly nft: NftExecutor = nftProcess,
  ) {
    this.owns = `the nftables table ${masqueradeFamily(cluster.family)} ${MASQUERADE_TABLE} (masquerade of ${cluster.text} → outside)`
  }

  async sync(_view: InputSource, req: SyncRequest): Promise<SyncResult> {
    const fam = masqueradeFamily(this.cluster.family)
    if (!req.full && this.written === this.cluster.text) return { changed: false, problems: [] }
    try {
      const now = await readNftTable(fam, MASQUERADE_TABLE, this.nft)
      if (now && sameNftState(now, masqueradeState(this.cluster))) {
        this.written = this.cluster.text
        return { changed: false, problems: [] }
      }
      await applyNft(new NftTransaction().replaceTable(masqueradeTable(this.cluster)), `install nftables table ${fam} ${MASQUERADE_TABLE} (masquerade ${this.cluster.text} → outside)`, this.nft)
      this.written = this.cluster.text
      this.log.info({ cluster: this.cluster.text }, 'masquerade table installed')
      return { changed: true, problems: [] }
    } catch (e) {
      this.written = undefined
      return { changed: false, problems: [(e as Error).message] }
    }
  }

  async remove(): Promise<string> {
    const fam = masqueradeFamily(this.cluster.family)
    const existed = (await readNftTable(fam, MASQUERADE_TABLE, this.nft)) !== undefined
    await applyNft(new NftTransaction().removeTable(fam, MASQUERADE_TABLE), `remove nftables table ${fam} ${MASQUERADE_TABLE}`, this.nft)
    this.written = undefined
    return existed ? `nftables table ${fam} ${MASQUERADE_TABLE} removed` : `no nftables table ${fam} ${MASQUERADE_TABLE}`
  }

  status(): ReconcilerStatus {
    return {}
  }
}
