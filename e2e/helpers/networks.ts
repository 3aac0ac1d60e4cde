// The two networks the e2e tests and the benchmark compare, as conflists (what an admin puts in
// /etc/cni/net.d). Both give a pod one address from a /24 with the gateway (.1) on the host side
// of a veth pair; ptp + host-local is the Go reference flatnet is measured against.
import type { Conflist } from './cni.js'
import type { TestRange } from './ranges.js'

export interface NetworkSpec {
  /** conflist `name`; host-local and flatnet keep reservations under <dataDir>/<name>/<ip> */
  name: string
  range: TestRange
  dataDir: string
  mtu?: number
}

/** Debian's ptp with host-local IPAM and a default route through the gateway. */
export function referenceConflist(spec: NetworkSpec): Conflist {
  return {
    cniVersion: '1.0.0',
    name: spec.name,
    plugins: [
      {
        type: 'ptp',
        mtu: spec.mtu ?? 1500,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: spec.range.cidr, gateway: spec.range.gateway }]],
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: spec.dataDir,
        },
      },
    ],
  }
}

/** flatnet with the same range size, MTU and data directory layout. */
export function flatnetConflist(spec: NetworkSpec): Conflist {
  return {
    cniVersion: '1.0.0',
    name: spec.name,
    plugins: [{ type: 'flatnet', ranges: [spec.range.cidr], mtu: spec.mtu ?? 1500, dataDir: spec.dataDir }],
  }
}
