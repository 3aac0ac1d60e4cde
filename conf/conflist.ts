// The CNI network configuration list flatnetd writes for the runtime: flatnet for the pod
// interface and node IPAM, portmap chained after it for hostPort. Rendered from validated values
// only, deterministically (same input → same bytes), so the writer can tell "unchanged" by
// comparing bytes.
import { parseCidr } from '../ipam/index.js'
import { newestCommonVersion, WIDEST_READ, type CniVersion } from './cniVersions.js'

export const CONFLIST_FILE_NAME = '10-flatnet.conflist'
/**
 * The list's version unless the daemon is told otherwise: the newest one the runtimes we test
 * read (containerd 1.6 stops at 1.0.0), not the newest flatnet speaks.
 */
export const CONFLIST_CNI_VERSION: CniVersion = WIDEST_READ
export const NETWORK_NAME = 'flatnet'

export interface ConflistInput {
  /** This node's pod subnet(s), CIDR text, in preference order (one per family). */
  ranges: string[]
  /** The plugin's pod address store. */
  dataDir: string
  /** Omitted: the plugin uses the MTU of the host's default-route interface. */
  mtu?: number
  /**
   * What the chained portmap binary on this node answered to VERSION: its supportedVersions, or
   * 'absent' when the runtime's plugin path has none. A runtime hands every plugin of a list the
   * list's cniVersion, so the list can only use a version all of its plugins speak (Debian 12's
   * portmap stops at 1.0.0). Omitted: assume it speaks flatnet's newest.
   */
  portmap?: readonly string[] | 'absent'
  /**
   * The newest cniVersion the node's runtime reads (flatnetd --cni-version); the list is written in
   * it, or older when the chained portmap stops earlier. Omitted: CONFLIST_CNI_VERSION.
   */
  cniVersion?: CniVersion
}

/**
 * The list's cniVersion and whether portmap can be chained, for what portmap reported and the
 * newest version the runtime reads (`ceiling`).
 */
export function chainPlan(portmap: ConflistInput['portmap'], ceiling: CniVersion = CONFLIST_CNI_VERSION): { cniVersion: CniVersion; withPortmap: boolean } {
  if (portmap === undefined) return { cniVersion: ceiling, withPortmap: true }
  if (portmap === 'absent') return { cniVersion: ceiling, withPortmap: false }
  const common = newestCommonVersion(portmap, ceiling)
  return common ? { cniVersion: common, withPortmap: true } : { cniVersion: ceiling, withPortmap: false }
}

export function renderConflist(input: ConflistInput): string {
  if (input.ranges.length === 0) throw new Error('render conflist: no pod range')
  const ranges = input.ranges.map((r) => parseCidr(r).text)
  if (input.mtu !== undefined && (!Number.isInteger(input.mtu) || input.mtu < 68 || input.mtu > 65535)) {
    throw new Error(`render conflist: MTU ${input.mtu} is not an integer between 68 and 65535`)
  }
  const flatnet: Record<string, unknown> = { type: 'flatnet', ranges }
  if (input.mtu !== undefined) flatnet.mtu = input.mtu
  flatnet.dataDir = input.dataDir
  const plan = chainPlan(input.portmap, input.cniVersion)
  const plugins: Array<Record<string, unknown>> = [flatnet]
  if (plan.withPortmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true } })
  const conflist = { cniVersion: plan.cniVersion, name: NETWORK_NAME, plugins }
  return JSON.stringify(conflist, null, 2) + '\n'
}
