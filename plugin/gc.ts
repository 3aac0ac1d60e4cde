// GC: the runtime lists the attachments it still uses; everything else of this network goes —
// reservations, and host veths (with their routes) that carry this network's alias or belong to
// a released reservation. Keeps going past errors and reports them all at the end.
import type { NetConf } from '../conf/netconf.js'
import { closeRtnl, openRtnl } from '../net/rtnl.js'
import { CniError, Code } from './errors.js'
import type { PluginLog } from './log.js'
import { reclaimExcept } from './reclaim.js'
import { openStore } from './store.js'

export async function cmdGc(conf: NetConf, log: PluginLog): Promise<void> {
  if (!conf.validAttachments) throw new CniError(Code.invalidConfig, 'GC needs "cni.dev/valid-attachments" in the network configuration')
  const host = openRtnl()
  let report
  try {
    report = await reclaimExcept(openStore(conf), host, conf.name, conf.validAttachments)
  } finally {
    closeRtnl(host)
  }
  if (report.released.length) log.info('gc released', { addresses: report.released.map((r) => r.address) })
  if (report.removedHostVeths.length) log.info('gc removed host veths', { hostVeths: report.removedHostVeths })
  const errors = report.errors
  if (errors.length) throw new CniError(Code.gcIncomplete, `GC of network ${conf.name} left ${errors.length} problem(s)`, errors.join('; '))
}
