// Opens this network's pod address store and maps its failures to CNI errors.
import { join } from 'node:path'
import { IpamError, PodAddressStore } from '../ipam/index.js'
import type { NetConf } from '../conf/netconf.js'
import { CniError, Code } from './errors.js'

export function openStore(conf: NetConf): PodAddressStore {
  return new PodAddressStore(join(conf.dataDir, conf.name), conf.ranges)
}

export function ipamToCni(e: unknown): unknown {
  if (!(e instanceof IpamError)) return e
  switch (e.kind) {
    case 'exhausted': return new CniError(Code.rangeExhausted, e.message)
    case 'unavailable': return new CniError(Code.addressUnavailable, e.message)
    case 'invalid': return new CniError(Code.invalidConfig, e.message)
    default: return new CniError(Code.ioFailure, e.message)
  }
}
