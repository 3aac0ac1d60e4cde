// This node's addresses when --node-ip does not give them: per family, the first address of that
// family on the interface that carries the family's default route (the address peers most likely
// reach this node by). IPv6 link-local addresses (fe80::/10) are skipped: every interface has one,
// and a route through one only works on that very link.
import { cidrContains, parseAddress, parseCidr, type IpFamily } from '../ipam/index.js'
import { listAddresses, listRoutes, type Rtnl } from '../net/rtnl.js'

const linkLocal6 = parseCidr('fe80::/10')

function isLinkLocal(address: string): boolean {
  const a = parseAddress(address)
  return a.family === 6 && cidrContains(linkLocal6, 6, a.value)
}

export async function detectNodeIP(rtnl: Rtnl, family: IpFamily = 4): Promise<string> {
  const defaults = (await listRoutes(rtnl, family)).filter((r) => r.dstLength === 0 && r.oif !== undefined).sort((a, b) => a.priority - b.priority)
  if (defaults.length === 0) throw new Error(`detect node IP: this network namespace has no IPv${family} default route; set --node-ip (or HOST_IP)`)
  const addresses = await listAddresses(rtnl)
  for (const r of defaults) {
    const a = addresses.find((x) => x.index === r.oif && x.family === family && !isLinkLocal(x.address))
    if (a) return a.address
  }
  throw new Error(
    `detect node IP: the IPv${family} default-route interface (#${defaults[0]!.oif}) has no IPv${family} address${family === 6 ? ' but link-local ones' : ''}; set --node-ip (or HOST_IP)`,
  )
}

/** This node's address per family of its cluster ranges: the given one, else detected; a family left without one says why. */
export async function nodeAddresses(rtnl: Rtnl, families: readonly IpFamily[], given: readonly string[]): Promise<{ nodeIPs: string[]; missing: Array<{ family: IpFamily; why: string }> }> {
  const nodeIPs: string[] = []
  const missing: Array<{ family: IpFamily; why: string }> = []
  for (const family of families) {
    const ip = given.find((g) => parseAddress(g).family === family)
    if (ip !== undefined) {
      nodeIPs.push(ip)
      continue
    }
    try {
      nodeIPs.push(await detectNodeIP(rtnl, family))
    } catch (e) {
      missing.push({ family, why: (e as Error).message })
    }
  }
  return { nodeIPs, missing }
}
