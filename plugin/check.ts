// CHECK: is everything ADD made still there, as prevResult says? Each difference is named.
import type { NetConf } from '../conf/netconf.js'
import { IFA_F_DADFAILED, IFA_F_TENTATIVE, closeRtnl, linkByName, listAddresses, listRoutes, openRtnl } from '../net/rtnl.js'
import { familyOf } from '../net/ipbytes.js'
import { readSysctl } from '../net/sysctl.js'
import type { Invocation } from './environment.js'
import { CniError, Code } from './errors.js'
import { openPodNetns } from './add.js'
import { openStore } from './store.js'
import { hostVethName } from './wiring.js'

interface PrevIp {
  address: string
  gateway?: string
}

function prevIps(prev: Record<string, unknown>): PrevIp[] {
  const ips = prev.ips
  if (!Array.isArray(ips) || ips.length === 0) throw new CniError(Code.invalidConfig, 'CHECK: prevResult has no "ips"')
  return ips.map((ip, i) => {
    if (typeof ip?.address !== 'string' || !/^[^/]+\/\d+$/.test(ip.address)) throw new CniError(Code.invalidConfig, `CHECK: prevResult.ips[${i}].address is not an IP/prefix`)
    return { address: ip.address, gateway: typeof ip.gateway === 'string' ? ip.gateway : undefined }
  })
}

export async function cmdCheck(inv: Invocation, conf: NetConf): Promise<void> {
  if (!conf.prevResult) throw new CniError(Code.invalidConfig, 'CHECK needs "prevResult" in the network configuration')
  const ips = prevIps(conf.prevResult)
  const problems: string[] = []
  const hostVeth = hostVethName(inv.containerId, inv.ifname)

  const netns = await openPodNetns(inv.netns, inv.openedNetns)
  const host = openRtnl()
  const pod = openRtnl(netns)
  try {
    const podLink = await linkByName(pod, inv.ifname)
    const hostLink = await linkByName(host, hostVeth)
    if (!podLink) problems.push(`interface ${inv.ifname} is missing in ${inv.netns}`)
    else if (!podLink.up) problems.push(`interface ${inv.ifname} in ${inv.netns} is down`)
    if (!hostLink) problems.push(`host veth ${hostVeth} is missing`)
    else if (!hostLink.up) problems.push(`host veth ${hostVeth} is down`)
    // ADD turns strict reverse-path filtering on for the host end (anti-spoofing: a pod cannot
    // send with another source address); a 0 or 2 (loose) there lets it.
    if (hostLink && ips.some((ip) => familyOf(ip.address.split('/')[0]) === 4)) {
      const rpFilter = await readSysctl(`net.ipv4.conf.${hostVeth}.rp_filter`).catch((e: Error) => e.message)
      if (rpFilter !== '1') problems.push(`reverse-path filter on host veth ${hostVeth} is ${rpFilter}, not 1 (strict): the pod can send with addresses not its own`)
    }

    const prevIfaces = Array.isArray(conf.prevResult.interfaces) ? conf.prevResult.interfaces : []
    const prevPod = prevIfaces.find((i: { name?: string; sandbox?: string }) => i?.name === inv.ifname && i?.sandbox)
    if (podLink && typeof prevPod?.mac === 'string' && prevPod.mac.toLowerCase() !== podLink.mac) {
      problems.push(`interface ${inv.ifname} has MAC ${podLink.mac}, prevResult says ${prevPod.mac}`)
    }

    for (const ip of ips) {
      const [address, len] = ip.address.split('/')
      const family = familyOf(address)
      if (podLink) {
        const have = (await listAddresses(pod, podLink.index)).find((a) => a.address === address && a.prefixLength === Number(len))
        if (!have) problems.push(`address ${ip.address} is missing on ${inv.ifname}`)
        // ADD adds IPv6 addresses nodad: one still in (or failed) duplicate address detection was re-added by someone else and cannot be used.
        else if (have.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED))
          problems.push(`address ${ip.address} on ${inv.ifname} is ${have.flags & IFA_F_DADFAILED ? 'a duplicate (DAD failed)' : 'tentative (in duplicate address detection)'}`)
        const routes = (await listRoutes(pod, family)).filter((r) => r.oif === podLink.index)
        if (ip.gateway) {
          if (!routes.some((r) => r.dstLength === 0 && r.gateway === ip.gateway)) problems.push(`default route via ${ip.gateway} is missing in the pod`)
          if (!routes.some((r) => r.dst === ip.gateway && r.dstLength === (family === 4 ? 32 : 128) && !r.gateway))
            problems.push(`route to gateway ${ip.gateway} on ${inv.ifname} is missing in the pod`)
        }
      }
      if (hostLink) {
        const hostRoutes = await listRoutes(host, family)
        if (!hostRoutes.some((r) => r.dst === address && r.oif === hostLink.index)) problems.push(`host route ${address} dev ${hostVeth} is missing`)
        if (ip.gateway && !(await listAddresses(host, hostLink.index)).some((a) => a.address === ip.gateway)) problems.push(`gateway ${ip.gateway} is missing on host veth ${hostVeth}`)
      }
    }
  } finally {
    closeRtnl(pod)
    closeRtnl(host)
    netns.close()
  }

  const reserved = await openStore(conf).find({ containerId: inv.containerId, ifname: inv.ifname })
  for (const ip of ips) {
    const address = ip.address.split('/')[0]
    if (!reserved.some((r) => r.address === address)) problems.push(`address ${address} is not reserved for ${inv.containerId}/${inv.ifname}`)
  }
  if (problems.length) throw new CniError(Code.checkFailed, `CHECK of ${inv.containerId}/${inv.ifname} failed: ${problems.join('; ')}`)
}
