// This node's address when --node-ip is not given: the first IPv4 address of the interface that
// carries the default route (the address peers most likely reach this node by).
import { listAddresses, listRoutes, type Rtnl } from '../net/rtnl.js'

export async function detectNodeIP(rtnl: Rtnl): Promise<string> {
  const defaults = (await listRoutes(rtnl, 4)).filter((r) => r.dstLength === 0 && r.oif !== undefined).sort((a, b) => a.priority - b.priority)
  if (defaults.length === 0) throw new Error('detect node IP: this network namespace has no IPv4 default route; set --node-ip (or HOST_IP)')
  const addresses = await listAddresses(rtnl)
  for (const r of defaults) {
    const a = addresses.find((x) => x.index === r.oif && x.family === 4)
    if (a) return a.address
  }
  throw new Error(`detect node IP: the default-route interface (#${defaults[0]!.oif}) has no IPv4 address; set --node-ip (or HOST_IP)`)
}
