// The structured form of what NetworkPolicy asks of this node: which local pods are isolated in
// which direction, the address and port sets the allow rules test, and the allow rules. compile.ts
// computes it from the cluster objects; table.ts renders it as the `inet flatnet-policy` table;
// tests evaluate it (testing/evaluate.ts) as well as load it into a kernel.
import type { IpFamily } from '../../ipam/index.js'

export type Direction = 'ingress' | 'egress'
export const DIRECTIONS: readonly Direction[] = ['ingress', 'egress']
export const FAMILIES: readonly IpFamily[] = [4, 6]

/** The L4 protocols NetworkPolicy ports name (nft's spelling). Other protocols are never isolated. */
export type L4Protocol = 'tcp' | 'udp' | 'sctp'
export const L4_PROTOCOLS: readonly L4Protocol[] = ['tcp', 'udp', 'sctp']

/** Per family, a list of nft set elements. */
export type PerFamily<T> = Record<IpFamily, T>

/** Addresses, address ranges (`a-b`) or CIDRs of one family: an interval set. */
export interface AddressSet {
  name: string
  family: IpFamily
  elements: string[]
}

/** `tcp . 80`, `udp . 5000-5100`, `sctp . 0-65535`: an interval set of protocol and port. */
export interface PortSet {
  name: string
  elements: string[]
}

/** `10.244.1.5 . tcp . 8080`: the pods that own a named port, with its number on each. */
export interface NamedPortSet {
  name: string
  family: IpFamily
  /** The port's name and protocol (for the reader; the elements carry the numbers). */
  port: string
  protocol: L4Protocol
  elements: string[]
}

/** One way a connection is allowed: local pod in `local`, remote end in `peers`, port in `ports`. */
export interface AllowRule {
  direction: Direction
  family: IpFamily
  /** `namespace/name` of the policy and the index of the rule in its ingress/egress list. */
  policy: string
  index: number
  /** The local pods the policy selects (destination for ingress, source for egress). */
  local: string
  /** The other end's allowed addresses; undefined: any address. */
  peers?: string
  /** The destination port: a PortSet or a NamedPortSet (keyed by destination address); undefined: any. */
  ports?: { numeric: string } | { named: string }
}

export interface PolicyPlan {
  /** Local pod addresses isolated per direction. */
  isolated: Record<Direction, PerFamily<string[]>>
  /** Every local pod address the view knows (isolated or not). */
  known: PerFamily<string[]>
  /** This node's pod subnets. */
  localSubnets: PerFamily<string[]>
  /**
   * Whether a local address no known pod holds (a pod newer than the view) is isolated in a
   * direction: true as soon as any policy of the cluster isolates that direction, so a new pod is
   * never less isolated than its policies want (it may start with less connectivity, never more).
   */
  unknownIsolated: Record<Direction, boolean>
  addressSets: AddressSet[]
  portSets: PortSet[]
  namedPortSets: NamedPortSet[]
  rules: AllowRule[]
  stats: { policies: number; podsSelected: number; rules: number }
}
