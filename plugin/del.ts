// DEL: best effort and idempotent. It needs neither the namespace (containerd sends DEL with an
// empty CNI_NETNS after the task exited; after a reboot the path is gone) nor the link: the host
// end's name comes from the attachment, and deleting it takes the pod end and host route along.
// The address is released in every case.
import type { NetConf } from '../conf/netconf.js'
import { closeRtnl, openRtnl } from '../net/rtnl.js'
import type { Invocation } from './environment.js'
import { CniError, Code } from './errors.js'
import type { PluginLog } from './log.js'
import { openStore } from './store.js'
import { hostVethName, removeHostVeth } from './wiring.js'
import { DelStep, testCrashPoint } from './crashpoints.js'

export async function cmdDel(inv: Invocation, conf: NetConf, log: PluginLog): Promise<void> {
  const hostVeth = hostVethName(inv.containerId, inv.ifname)
  let linkError: Error | undefined
  const host = openRtnl()
  try {
    const removed = await removeHostVeth(host, hostVeth)
    if (removed) log.info('removed host veth', { hostVeth })
  } catch (e) {
    linkError = e as Error
  } finally {
    closeRtnl(host)
  }
  testCrashPoint(DelStep.afterVeth)
  const released = await openStore(conf).release({ containerId: inv.containerId, ifname: inv.ifname })
  if (released.length) log.info('released', { addresses: released.map((r) => r.address) })
  // Reported after the release so a retried DEL still finds nothing to leak.
  if (linkError) throw new CniError(Code.ioFailure, linkError.message)
}
