// antispoof: owns the nftables table `inet flatnet-antispoof` (a pod sends only from its own
// addresses, both families; see ../antispoof.ts for the rule and why). The table is constant, so
// a full sync reads it back with `nft -j` and rebuilds it in one transaction only when it differs
// (missing, hand-edited); a partial sync trusts what it last wrote; a failure forgets that.
//
// It gates readiness: a node that is meant to enforce it but cannot would let its pods
// impersonate any other pod or node, silently. `--no-anti-spoofing` is the explicit way out (e.g.
// pods that route for others), and removes the table.
import type { Logger } from 'pino'
import { applyNft, nftProcess, NftTransaction, readNftTable, sameNftState, type NftExecutor } from '../../net/nft.js'
import { ANTISPOOF_FAMILY, ANTISPOOF_TABLE, antispoofState, antispoofTable } from '../antispoof.js'
import type { InputSource, Reconciler, ReconcilerStatus, SyncRequest, SyncResult } from '../reconcile/contract.js'

const TABLE = `${ANTISPOOF_FAMILY} ${ANTISPOOF_TABLE}`

export class AntispoofReconciler implements Reconciler {
  readonly name = 'antispoof'
  readonly owns = `the nftables table ${TABLE} (pods send only from their own addresses)`
  readonly inputs = [] as const
  readonly gatesReadiness = true
  readonly holdsWhileRefused = true
  private written = false

  constructor(
    private readonly log: Logger,
    private readonly nft: NftExecutor = nftProcess,
  ) {}

  async sync(_view: InputSource, req: SyncRequest): Promise<SyncResult> {
    if (!req.full && this.written) return { changed: false, problems: [] }
    try {
      const now = await readNftTable(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, this.nft)
      if (now && sameNftState(now, antispoofState())) {
        this.written = true
        return { changed: false, problems: [] }
      }
      await applyNft(new NftTransaction().replaceTable(antispoofTable()), `install nftables table ${TABLE}`, this.nft)
      this.written = true
      this.log.info('anti-spoofing table installed')
      return { changed: true, problems: [] }
    } catch (e) {
      this.written = false
      return { changed: false, problems: [`${(e as Error).message}: pods could send with forged source addresses`] }
    }
  }

  async remove(): Promise<string> {
    const existed = (await readNftTable(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, this.nft)) !== undefined
    await applyNft(new NftTransaction().removeTable(ANTISPOOF_FAMILY, ANTISPOOF_TABLE), `remove nftables table ${TABLE}`, this.nft)
    this.written = false
    return existed ? `nftables table ${TABLE} removed` : `no nftables table ${TABLE}`
  }

  status(): ReconcilerStatus {
    return {}
  }
}
