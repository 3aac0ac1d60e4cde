// ADD: reserve an address → create the veth pair into the pod → wire the pod side → wire the
// host side → print the result. Each step's rollback sits right after it: a failed ADD leaves
// no veth, no route and no reservation behind.
import { fstatSync, statSync } from 'node:fs'
import type { NetConf } from '../conf/netconf.js'
import { openNetns, warmThreadPool, type NetnsHandle, type OpenedNetns } from '../net/netns.js'
import { closeRtnl, linkByName, openRtnl } from '../net/rtnl.js'
import type { Invocation } from './environment.js'
import { CniError, Code } from './errors.js'
import type { PluginLog } from './log.js'
import { openStore } from './store.js'
import { refuseHostConflicts, refuseHostVethInUse, refusePodRoutesTaken } from './conflicts.js'
import type { Result } from './versions.js'
import { createVethPair, defaultRouteMtu, hostVethName, removeHostVeth, setupContainerVeth, setupHostVeth, type PodAddress, type PodWiring } from './wiring.js'
import { AddStep, testCrashPoint } from './crashpoints.js'
import { enableForwarding, raDefaultRouteWarnings } from './forwarding.js'

/**
 * CNI_NETNS naming the namespace the plugin itself runs in (e.g. /proc/self/ns/net, or the
 * host's /proc/1/ns/net) would make the host the "pod": its default route replaced, an eth0
 * created beside the real one. No runtime means that; refuse it before anything is made.
 */
function refuseHostNetns(netns: NetnsHandle): void {
  const target = fstatSync(netns.fd)
  // The main thread is in the host namespace here (withNetns always switches back).
  const own = statSync('/proc/thread-self/ns/net')
  if (target.dev === own.dev && target.ino === own.ino) {
    throw new CniError(Code.invalidEnvironment, `CNI_NETNS ${netns.path} is the plugin's own (host) network namespace, not a pod's`)
  }
}

/** Opens CNI_NETNS as a pod's network namespace, or fails with the CNI code for what it is instead. */
export async function openPodNetns(path: string, opened?: OpenedNetns): Promise<NetnsHandle> {
  await warmThreadPool()
  const netns = openNetns(path, opened)
  try {
    refuseHostNetns(netns)
  } catch (e) {
    netns.close()
    throw e
  }
  return netns
}

export async function cmdAdd(inv: Invocation, conf: NetConf, log: PluginLog): Promise<Result> {
  const netns = await openPodNetns(inv.netns, inv.openedNetns)
  const host = openRtnl()
  const pod = openRtnl(netns)
  try {
    if (await linkByName(pod, inv.ifname)) {
      throw new CniError(Code.interfaceExists, `interface ${inv.ifname} already exists in ${inv.netns}`)
    }
    const hostVeth = hostVethName(inv.containerId, inv.ifname)
    await refuseHostVethInUse(host, hostVeth, inv)
    await refusePodRoutesTaken(
      pod,
      inv.ifname,
      conf.ranges.map((r) => ({ family: r.cidr.family, gateway: r.gateway })),
    )

    const turnedOn = enableForwarding(conf.ranges.map((r) => r.cidr.family))
    // Said once, by the ADD that turned IPv6 forwarding on; nothing is changed on its account.
    if (turnedOn.includes(6)) for (const warning of await raDefaultRouteWarnings(host)) log.error(warning)
    const mtu = conf.mtu ?? (await defaultRouteMtu(host, conf.ranges[0].cidr.family)) ?? 1500

    const store = openStore(conf)
    // CNI_ARGS IP= takes one address per range, comma-separated (as host-local reads it).
    const requested = inv.args.ip ? inv.args.ip.split(',').map((ip) => ip.trim()) : conf.requestedIps
    const reservations = await store.reserve({
      containerId: inv.containerId,
      ifname: inv.ifname,
      podNamespace: inv.args.podNamespace,
      podName: inv.args.podName,
      hostVeth,
      requested: requested.length ? requested : undefined,
    })

    try {
      testCrashPoint(AddStep.afterReserve)
      const addresses: PodAddress[] = reservations.map((r) => {
        const range = conf.ranges.find((x) => x.cidr.text === r.range)!
        return { family: range.cidr.family, address: r.address, gateway: range.gateway }
      })
      await refuseHostConflicts(host, addresses)
      const a: PodWiring = { network: conf.name, containerId: inv.containerId, ifname: inv.ifname, netns, hostVeth, mtu, addresses }
      await createVethPair(host, a)
      try {
        testCrashPoint(AddStep.afterVeth)
        const podLink = await setupContainerVeth(pod, a)
        testCrashPoint(AddStep.afterPodSide)
        const hostLink = await setupHostVeth(host, a, (msg) => log.error(msg))
        testCrashPoint(AddStep.afterHostSide)
        log.info('added', { addresses: addresses.map((p) => p.address), hostVeth })
        return {
          interfaces: [
            { name: hostLink.name, mac: hostLink.mac, mtu },
            { name: podLink.name, mac: podLink.mac, mtu, sandbox: inv.netns },
          ],
          ips: addresses.map((p) => ({ address: `${p.address}/${p.family === 4 ? 32 : 128}`, gateway: p.gateway, interface: 1 })),
          routes: addresses.map((p) => ({ dst: p.family === 4 ? '0.0.0.0/0' : '::/0', gw: p.gateway })),
          dns: conf.dns,
        }
      } catch (e) {
        await removeHostVeth(host, hostVeth).catch((re) => log.error(`rollback: ${(re as Error).message}`))
        throw e
      }
    } catch (e) {
      await store.release({ containerId: inv.containerId, ifname: inv.ifname }).catch((re) => log.error(`rollback: ${(re as Error).message}`))
      throw e
    }
  } finally {
    closeRtnl(pod)
    closeRtnl(host)
    netns.close()
  }
}
