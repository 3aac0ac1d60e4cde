// masquerade: owns the nftables table `inet flatnet` (each cluster range → outside is
// masqueraded, in its family; see ../masquerade.ts for the rule and why), and removes the
// IPv4-only `ip flatnet` of earlier versions. A full sync reads both back with `nft -j` and
// rebuilds in one transaction when the structure differs (missing, hand-edited, other ranges, the
// legacy table still there); a partial sync trusts what it last wrote. A failure forgets that
// memory.
import type { Logger } from 'pino'
import type { Cidr } from '../../ipam/index.js'
import { applyNft, nftProcess, NftTransaction, readNftTable, sameNftState, type NftExecutor } from '../../net/nft.js'
import { LEGACY_MASQUERADE_TABLE, MASQUERADE_FAMILY, MASQUERADE_TABLE, masqueradeState, masqueradeTable } from '../masquerade.js'
import type { InputSource, Reconciler, ReconcilerStatus, SyncRequest, SyncResult } from '../reconcile/contract.js'

const TABLE = `${MASQUERADE_FAMILY} ${MASQUERADE_TABLE}`
const LEGACY = `${LEGACY_MASQUERADE_TABLE.family} ${LEGACY_MASQUERADE_TABLE.name}`

export class MasqueradeReconciler implements Reconciler {
  readonly name = 'masquerade'
  readonly owns: string
  readonly inputs = [] as const
  // Without it pods reach nothing outside the cluster.
  readonly gatesReadiness = true
  readonly holdsWhileRefused = true
  private readonly ranges: string
  /** Whether the table is known to be as wanted (written or found right); false after a failure. */
  private written = false

  constructor(
    private readonly clusters: readonly Cidr[],
    private readonly log: Logger,
    private readonly nft: NftExecutor = nftProcess,
  ) {
    this.ranges = clusters.map((c) => c.text).join(', ')
    this.owns = `the nftables table ${TABLE} (masquerade of ${this.ranges} → outside)`
  }

  async sync(_view: InputSource, req: SyncRequest): Promise<SyncResult> {
    if (!req.full && this.written) return { changed: false, problems: [] }
    try {
      const now = await readNftTable(MASQUERADE_FAMILY, MASQUERADE_TABLE, this.nft)
      const legacy = await readNftTable(LEGACY_MASQUERADE_TABLE.family, LEGACY_MASQUERADE_TABLE.name, this.nft)
      if (now && !legacy && sameNftState(now, masqueradeState(this.clusters))) {
        this.written = true
        return { changed: false, problems: [] }
      }
      const tx = new NftTransaction().removeTable(LEGACY_MASQUERADE_TABLE.family, LEGACY_MASQUERADE_TABLE.name).replaceTable(masqueradeTable(this.clusters))
      await applyNft(tx, `install nftables table ${TABLE} (masquerade ${this.ranges} → outside)`, this.nft)
      this.written = true
      if (legacy) this.log.info({ clusters: this.ranges }, `masquerade table installed; the IPv4-only table ${LEGACY} of an earlier version removed`)
      else this.log.info({ clusters: this.ranges }, 'masquerade table installed')
      return { changed: true, problems: [] }
    } catch (e) {
      this.written = false
      return { changed: false, problems: [(e as Error).message] }
    }
  }

  async remove(): Promise<string> {
    const existed = (await readNftTable(MASQUERADE_FAMILY, MASQUERADE_TABLE, this.nft)) !== undefined
    const legacy = (await readNftTable(LEGACY_MASQUERADE_TABLE.family, LEGACY_MASQUERADE_TABLE.name, this.nft)) !== undefined
    const tx = new NftTransaction().removeTable(LEGACY_MASQUERADE_TABLE.family, LEGACY_MASQUERADE_TABLE.name).removeTable(MASQUERADE_FAMILY, MASQUERADE_TABLE)
    await applyNft(tx, `remove nftables tables ${TABLE} and ${LEGACY}`, this.nft)
    this.written = false
    const gone = [existed && `nftables table ${TABLE} removed`, legacy && `nftables table ${LEGACY} (earlier version) removed`].filter(Boolean)
    return gone.length ? gone.join('; ') : `no nftables table ${TABLE}`
  }

  status(): ReconcilerStatus {
    return {}
  }
}
