// A reader of a PolicyPlan for unit tests: the verdict the `inet flatnet-policy` table gives a
// new connection, computed from the plan's sets and rules exactly as table.ts wires them (forward:
// egress of a local source, then ingress of a local destination; input: egress only). Kernel tests
// (../policy.kernel.test.ts) prove the table itself does this with real packets.
import { parseAddress, parseCidr, type IpFamily } from '../../../ipam/index.js'
import type { AllowRule, Direction, L4Protocol, PolicyPlan } from '../plan.js'

export interface Connection {
  from: string
  to: string
  protocol: L4Protocol
  port: number
  /** `forward` (the default): routed by this node; `input`: to this node's own address. */
  hook?: 'forward' | 'input'
}

function inElement(family: IpFamily, value: bigint, element: string): boolean {
  if (element.includes('/')) {
    const c = parseCidr(element)
    return c.family === family && value >= c.network && value < c.network + (1n << BigInt((family === 4 ? 32 : 128) - c.prefixLength))
  }
  const dash = element.indexOf('-')
  if (dash > 0) {
    const lo = parseAddress(element.slice(0, dash))
    const hi = parseAddress(element.slice(dash + 1))
    return lo.family === family && value >= lo.value && value <= hi.value
  }
  const a = parseAddress(element)
  return a.family === family && a.value === value
}

const inList = (address: string, elements: readonly string[]) => {
  const a = parseAddress(address)
  return elements.some((e) => inElement(a.family, a.value, e))
}

function portMatches(plan: PolicyPlan, r: AllowRule, c: Connection): boolean {
  if (!r.ports) return true
  if ('numeric' in r.ports) {
    const set = plan.portSets.find((s) => s.name === (r.ports as { numeric: string }).numeric)!
    return set.elements.some((e) => {
      const [proto, range] = e.split(' . ') as [string, string]
      const [lo, hi] = range.includes('-') ? range.split('-').map(Number) : [Number(range), Number(range)]
      return proto === c.protocol && c.port >= lo! && c.port <= hi!
    })
  }
  const set = plan.namedPortSets.find((s) => s.name === (r.ports as { named: string }).named)!
  const canonical = parseAddress(c.to)
  return set.elements.some((e) => {
    const [addr, proto, port] = e.split(' . ') as [string, string, string]
    const a = parseAddress(addr)
    return a.family === canonical.family && a.value === canonical.value && proto === c.protocol && Number(port) === c.port
  })
}

function allowed(plan: PolicyPlan, d: Direction, c: Connection): boolean {
  const family = parseAddress(c.from).family
  const [local, remote] = d === 'ingress' ? [c.to, c.from] : [c.from, c.to]
  const set = (name: string) => plan.addressSets.find((s) => s.name === name)!.elements
  return plan.rules.some((r) => r.direction === d && r.family === family && inList(local, set(r.local)) && (!r.peers || inList(remote, set(r.peers))) && portMatches(plan, r, c))
}

function checked(plan: PolicyPlan, d: Direction, address: string): boolean {
  const family = parseAddress(address).family
  if (inList(address, plan.isolated[d][family])) return true
  return plan.unknownIsolated[d] && inList(address, plan.localSubnets[family]) && !inList(address, plan.known[family])
}

/** Whether the node lets this new connection through. */
export function verdict(plan: PolicyPlan, c: Connection): 'accept' | 'refuse' {
  if (checked(plan, 'egress', c.from) && !allowed(plan, 'egress', c)) return 'refuse'
  if ((c.hook ?? 'forward') === 'forward' && checked(plan, 'ingress', c.to) && !allowed(plan, 'ingress', c)) return 'refuse'
  return 'accept'
}
