// STATUS: can an ADD succeed right now? Runtimes call it often, so it only looks at the store.
import type { NetConf } from '../conf/netconf.js'
import { CniError, Code } from './errors.js'
import { openStore } from './store.js'

export async function cmdStatus(conf: NetConf): Promise<void> {
  const s = await openStore(conf).status()
  if (!s.writable) throw new CniError(Code.notAvailable, `address store of network ${conf.name} is not writable: ${s.problem ?? 'unknown reason'}`)
  if (s.inUse >= s.capacity) {
    throw new CniError(Code.notAvailable, `no free pod address in ${conf.ranges.map((r) => r.cidr.text).join(', ')}: ${s.inUse} of ${s.capacity} in use`)
  }
}
