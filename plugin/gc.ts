// GC: the runtime lists the attachments it still uses; everything else of this network goes —
// reservations, and host veths (with their routes) that carry this network's alias. Keeps going
// past errors and reports them all at the end.
import type { NetConf } from '../conf/netconf.js'
import { closeRtnl, listLinks, openRtnl } from '../net/rtnl.js'
import { CniError, Code } from './errors.js'
import type { PluginLog } from './log.js'
import { openStore } from './store.js'
import { hostVethName, networkOfAlias, removeHostVeth } from './wiring.js'

export async function cmdGc(conf: NetConf, log: PluginLog): Promise<void> {
  if (!conf.validAttachments) throw new CniError(Code.invalidConfig, 'GC needs "cni.dev/valid-attachments" in the network configuration')
  const valid = conf.validAttachments
  const errors: string[] = []

  const { released, errors: storeErrors } = await openStore(conf).releaseAllExcept(valid)
  for (const e of storeErrors) errors.push(e.message)
  if (released.length) log.info('gc released', { addresses: released.map((r) => r.address) })

  const keep = new Set(valid.map((a) => hostVethName(a.containerId, a.ifname)))
  const host = openRtnl()
  try {
    for (const link of await listLinks(host)) {
      if (networkOfAlias(link.alias) !== conf.name || keep.has(link.name)) continue
      try {
        await removeHostVeth(host, link.name)
        log.info('gc removed host veth', { hostVeth: link.name })
      } catch (e) {
        errors.push((e as Error).message)
      }
    }
  } catch (e) {
    errors.push((e as Error).message)
  } finally {
    closeRtnl(host)
  }
  if (errors.length) throw new CniError(Code.gcIncomplete, `GC of network ${conf.name} left ${errors.length} problem(s)`, errors.join('; '))
}
