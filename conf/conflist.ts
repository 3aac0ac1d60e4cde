// The CNI network configuration list flatnetd writes for the runtime: flatnet for the pod
// interface and node IPAM, portmap chained after it for hostPort. Rendered from validated values
// only, deterministically (same input → same bytes), so the writer can tell "unchanged" by
// comparing bytes.
import { parseCidr } from '../ipam/index.js'

export const CONFLIST_FILE_NAME = '10-flatnet.conflist'
export const CONFLIST_CNI_VERSION = '1.1.0'
export const NETWORK_NAME = 'flatnet'

export interface ConflistInput {
  /** This node's pod subnet(s), CIDR text, in preference order (one per family). */
  ranges: string[]
  /** The plugin's pod address store. */
  dataDir: string
  /** Omitted: the plugin uses the MTU of the host's default-route interface. */
  mtu?: number
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
  const conflist = {
    cniVersion: CONFLIST_CNI_VERSION,
    name: NETWORK_NAME,
    plugins: [flatnet, { type: 'portmap', capabilities: { portMappings: true } }],
  }
  return JSON.stringify(conflist, null, 2) + '\n'
}
