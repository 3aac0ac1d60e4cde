// Opens this network's pod address store (its errors get their CNI codes in invoke.ts). Every
// flatnet network on the host has its store beside it in dataDir, so reservations can refuse
// addresses another network holds.
import { join } from 'node:path'
import { PodAddressStore } from '../ipam/index.js'
import type { NetConf } from '../conf/netconf.js'
import { pluginStderr } from './log.js'

export function openStore(conf: NetConf): PodAddressStore {
  return new PodAddressStore(join(conf.dataDir, conf.name), conf.ranges, {
    siblingsAreNetworks: true,
    // As the store's own default does, but into this call's stderr (see log.ts).
    onProblem: (problem) => pluginStderr(`flatnet ipam: ${problem.message}\n`),
  })
}
