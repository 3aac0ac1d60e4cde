// conflist: owns this node's CNI network configuration file (10-flatnet.conflist in
// --cni-conf-dir), written atomically and only when its bytes change (conflistWriter.ts). It
// follows this node's subnet and what the chained portmap on the CNI path speaks.
//
// Runtimes load the first *.conf, *.conflist or *.json of the directory by name (libcni's
// ConfFiles sorts the names; containerd and CRI-O take the first): another such file that sorts
// before ours is the network every new pod gets, so while one exists the node is not ready and the
// file is named in /readyz and the log.
import { readdir } from 'node:fs/promises'
import type { Logger } from 'pino'
import { CONFLIST_FILE_NAME, chainPlan } from '../../conf/conflist.js'
import type { DaemonConfig } from '../../conf/daemonConfig.js'
import { ChainedPluginProbe } from '../chainedPlugins.js'
import type { ClusterView } from '../clusterView.js'
import { nodeFamilies, type NodeRecord } from '../datastore/index.js'
import { podMtuFor } from '../vxlan.js'
import { conflistPath, removeConflist, writeConflist } from '../conflistWriter.js'
import type { Reconciler, ReconcilerStatus, SyncResult } from '../reconcile/contract.js'

/** The extensions libcni loads network configurations from. */
const CNI_CONFIG_EXTENSIONS = ['.conf', '.conflist', '.json']

/** Names in `entries` a runtime would load before `ours` (byte order, as Go's sort.Strings). */
export function configsBefore(entries: readonly string[], ours: string): string[] {
  return entries.filter((n) => n !== ours && CNI_CONFIG_EXTENSIONS.some((x) => n.endsWith(x)) && Buffer.compare(Buffer.from(n), Buffer.from(ours)) < 0).sort()
}

export class ConflistReconciler implements Reconciler<ClusterView> {
  readonly name = 'conflist'
  readonly owns: string
  readonly inputs = ['subnet'] as const
  // No conflist (or another one first): the runtime cannot start pods on flatnet's network.
  readonly gatesReadiness = true
  readonly holdsWhileRefused = true
  private readonly chained: ChainedPluginProbe
  /** Subnet of the conflist last written successfully (or found up to date). */
  private writtenSubnet: string | undefined
  private wantedSubnet: string | undefined
  private shadowedBy: string[] = []

  constructor(
    private readonly cfg: Pick<DaemonConfig, 'cniConfDir' | 'cniPath' | 'ipamDataDir' | 'mtu' | 'cniVersion'> & Partial<Pick<DaemonConfig, 'backend'>>,
    private readonly log: Logger,
    /** The MTU of the interface holding a node address (for the VXLAN overhead); undefined when none does. */
    private readonly uplinkMtu?: (address: string) => Promise<number | undefined>,
  ) {
    this.owns = `the CNI network configuration ${conflistPath(cfg.cniConfDir)}`
    this.chained = new ChainedPluginProbe(cfg.cniPath)
  }

  async sync(view: ClusterView): Promise<SyncResult> {
    const rec = view.self()
    if (!rec) return { changed: false, problems: [] }
    // One range per family, in cluster-range order: the plugin gives each pod one address of each.
    const ranges = nodeFamilies(rec).map((f) => f.subnet)
    const subnet = ranges.join(',')
    this.wantedSubnet = subnet
    const problems: string[] = []
    let changed = false
    try {
      const portmap = await this.chained.versions('portmap')
      const plan = chainPlan(portmap, this.cfg.cniVersion)
      const mtu = this.cfg.mtu ?? (await this.tunnelMtu(rec))
      if (await writeConflist(this.cfg.cniConfDir, { ranges, dataDir: this.cfg.ipamDataDir, mtu, portmap, cniVersion: this.cfg.cniVersion })) {
        changed = true
        this.log.info({ path: conflistPath(this.cfg.cniConfDir), subnet, mtu, cniVersion: plan.cniVersion, portmap: plan.withPortmap }, 'conflist written')
        if (!plan.withPortmap) {
          this.log.warn(
            { cniPath: this.cfg.cniPath, portmap },
            portmap === 'absent'
              ? 'no portmap plugin on the CNI path: conflist written without it, hostPort will not work'
              : 'the portmap plugin on the CNI path speaks no CNI version flatnet does: conflist written without it, hostPort will not work',
          )
        }
      }
      this.writtenSubnet = subnet
    } catch (e) {
      this.writtenSubnet = undefined
      problems.push(`conflist not written: ${(e as Error).message}`)
    }
    try {
      const before = configsBefore(await readdir(this.cfg.cniConfDir), CONFLIST_FILE_NAME)
      if (before.length && before.join() !== this.shadowedBy.join()) {
        this.log.error({ dir: this.cfg.cniConfDir, files: before, ours: CONFLIST_FILE_NAME }, "another CNI configuration sorts before flatnet's: runtimes give new pods that network; remove it")
      } else if (!before.length && this.shadowedBy.length) {
        this.log.info({ dir: this.cfg.cniConfDir }, "flatnet's CNI configuration is the first of the directory again")
      }
      this.shadowedBy = before
    } catch (e) {
      problems.push(`list ${this.cfg.cniConfDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
    return { changed, problems }
  }

  /** With --backend vxlan or auto (and no --mtu): room for the encapsulation (vxlan.ts podMtuFor). */
  private async tunnelMtu(rec: NodeRecord): Promise<number | undefined> {
    const backend = this.cfg.backend ?? 'host-gw'
    if (backend === 'host-gw' || !this.uplinkMtu) return undefined
    const uplinks: Array<{ family: 4 | 6; mtu: number }> = []
    for (const f of nodeFamilies(rec)) {
      const mtu = f.nodeIP === undefined ? undefined : await this.uplinkMtu(f.nodeIP)
      if (mtu !== undefined) uplinks.push({ family: f.family, mtu })
    }
    return podMtuFor(backend, uplinks)
  }

  async remove(): Promise<string> {
    this.writtenSubnet = undefined
    const path = conflistPath(this.cfg.cniConfDir)
    return (await removeConflist(this.cfg.cniConfDir)) ? `${path} removed` : `no ${path}`
  }

  status(): ReconcilerStatus {
    if (this.shadowedBy.length) {
      return { reason: `${this.shadowedBy.join(', ')} in ${this.cfg.cniConfDir} sorts before ${CONFLIST_FILE_NAME}: runtimes use it instead of flatnet; remove it` }
    }
    if (this.wantedSubnet && this.writtenSubnet !== this.wantedSubnet) return { reason: `conflist for ${this.wantedSubnet} not written yet` }
    return {}
  }
}
