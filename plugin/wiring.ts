// Pod wiring, ptp-style: one veth pair per attachment, no bridge. The pod holds IP/32 with a
// scope-link route to the gateway and a default route through it; the host end holds the
// gateway /32 (the same address on every host veth) and a /32 route back to the pod. Pure L3:
// no proxy ARP; strict rp_filter holds, since each pod's /32 route points back out its own veth
// (plugin/plugin.test.ts proves traffic both ways with rp_filter=1).
// IPv6 is wired the same way (pod /128, gateway /128 on the host end, the same gateway on every
// host veth), without duplicate address detection: see ipv6Interface below.
import { sha256Hex } from './sha256.js'
import { readFileSync, writeFileSync } from 'node:fs'
import type { IpFamily } from '../net/ipbytes.js'
import { withNetns, type NetnsHandle } from '../net/netns.js'
import { addAddress, addRoute, createVeth, deleteLink, linkByName, setLinkAlias, setLinkUp, listRoutes, linkByIndex, waitForOperUp, type LinkInfo, type Rtnl } from '../net/rtnl.js'
import { AddStep, testCrashPoint } from './crashpoints.js'

/** rtm_protocol of the host routes the plugin adds, so an operator can list them (`ip route show proto 201`). */
export const POD_ROUTE_PROTOCOL = 201

/**
 * The host end's name, derived from the attachment alone so DEL and GC find it without state:
 * "fn" + 13 hex digits of sha256(containerId/ifname) = 15 bytes, the kernel's limit.
 */
export function hostVethName(containerId: string, ifname: string): string {
  return 'fn' + sha256Hex(`${containerId}/${ifname}`).slice(0, 13)
}

/**
 * The host end's alias records whose it is, so GC can tell the host veths of this network from
 * those of another flatnet network on the same host.
 */
export function hostVethAlias(network: string, containerId: string, ifname: string): string {
  return truncateBytes(`flatnet:${network}:${ifname}:${containerId}`, MAX_ALIAS_BYTES)
}

/**
 * The kernel takes at most 255 bytes of alias including the NUL the netlink package appends
 * (a 1024-byte container ID, which the spec allows, was refused with ERANGE). Only the network
 * name at its start must survive: at most 200 bytes, so "flatnet:<network>:" always fits.
 */
const MAX_ALIAS_BYTES = 254

function truncateBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text
  let out = ''
  for (const ch of text) {
    if (Buffer.byteLength(out + ch) > max) break
    out += ch
  }
  return out
}

export function networkOfAlias(alias: string | undefined): string | undefined {
  const m = /^flatnet:([^:]+):/.exec(alias ?? '')
  return m?.[1]
}

export interface PodAddress {
  family: IpFamily
  address: string
  gateway: string
}

/** What wiring one attachment needs (the attachment itself — container ID and interface — is ipam's Attachment). */
export interface PodWiring {
  network: string
  containerId: string
  ifname: string
  netns: NetnsHandle
  hostVeth: string
  mtu: number
  addresses: PodAddress[]
}

/** Creates the veth pair: the pod end is born inside the pod namespace under its final name. */
export async function createVethPair(host: Rtnl, a: PodWiring): Promise<void> {
  await createVeth(host, { name: a.hostVeth, peerName: a.ifname, peerNetns: a.netns, mtu: a.mtu })
}

const hasIpv6 = (a: PodWiring) => a.addresses.some((p) => p.family === 6)

/**
 * The IPv6 settings of one veth end, written before the link comes up. Addresses are added with
 * nodad, but the link-local address the kernel makes at link-up goes through DAD unless
 * accept_dad=0 (the kernel uses max(all, interface), so a host with all=1 is overridden here only
 * for flatnet's own interfaces). accept_ra=0: nothing on a pod link advertises routes, and a pod
 * must route through its gateway only. /proc/sys/net shows the namespace of the calling thread,
 * so the pod end's files are written from inside the pod namespace.
 */
function ipv6Interface(ifname: string, where: string): void {
  for (const [key, value] of [
    ['accept_dad', '0'],
    ['accept_ra', '0'],
  ] as const) {
    const file = `/proc/sys/net/ipv6/conf/${ifname}/${key}`
    try {
      writeFileSync(file, value)
    } catch (e) {
      throw new Error(`set ${key}=${value} on ${ifname} ${where} (${file}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
}

export async function setupContainerVeth(pod: Rtnl, a: PodWiring): Promise<LinkInfo> {
  const lo = await linkByName(pod, 'lo')
  if (lo && !lo.up) await setLinkUp(pod, lo.index, 'lo')
  testCrashPoint(AddStep.afterPodLo)
  const link = await linkByName(pod, a.ifname)
  if (!link) throw new Error(`find ${a.ifname} in ${a.netns.path}: it vanished after creation`)
  if (hasIpv6(a)) withNetns(a.netns, () => ipv6Interface(a.ifname, `in ${a.netns.path}`))
  for (const p of a.addresses) {
    const bits = p.family === 4 ? 32 : 128
    await addAddress(pod, { index: link.index, family: p.family, address: p.address, prefixLength: bits, linkName: a.ifname, noDad: p.family === 6 })
  }
  testCrashPoint(AddStep.afterPodAddress)
  await setLinkUp(pod, link.index, a.ifname)
  testCrashPoint(AddStep.afterPodUp)
  for (const p of a.addresses) {
    const bits = p.family === 4 ? 32 : 128
    const any = p.family === 4 ? '0.0.0.0' : '::'
    await addRoute(pod, { family: p.family, dst: p.gateway, dstLength: bits, oif: link.index, scope: 'link' })
    testCrashPoint(AddStep.afterPodGatewayRoute)
    await addRoute(pod, { family: p.family, dst: any, dstLength: 0, gateway: p.gateway, oif: link.index })
  }
  return { ...link, up: true }
}

/**
 * Anti-spoofing: strict reverse-path filtering on the host end, so a packet arriving from the
 * pod is dropped unless the host would route its source address back out through this very
 * veth — i.e. unless the source is the pod's own address. A pod that takes another pod's address
 * (or any other) cannot send with it. Set before the link is up, so no packet ever passes
 * unchecked. The sysctl file belongs to the device and disappears with it: nothing to undo.
 *
 * The kernel applies max(conf.all.rp_filter, conf.<dev>.rp_filter): all=2 (loose) would make it
 * loose here too, and loose mode accepts any source the host can route somewhere. That is the
 * host's choice to make, not the plugin's, so it is only reported.
 */
function setupHostAntiSpoofing(hostVeth: string, log?: (msg: string) => void): void {
  const file = `/proc/sys/net/ipv4/conf/${hostVeth}/rp_filter`
  try {
    writeFileSync(file, '1')
  } catch (e) {
    throw new Error(`enable reverse-path filtering on host veth ${hostVeth} (${file}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  let all = ''
  try {
    all = readFileSync('/proc/sys/net/ipv4/conf/all/rp_filter', 'utf8').trim()
  } catch {
    // unreadable: nothing more to say about it
  }
  if (all === '2') log?.(`net.ipv4.conf.all.rp_filter is 2 (loose): it overrides the strict filter on ${hostVeth}, pods can send with each other's addresses`)
}

export async function setupHostVeth(host: Rtnl, a: PodWiring, warn?: (msg: string) => void): Promise<LinkInfo> {
  const link = await linkByName(host, a.hostVeth)
  if (!link) throw new Error(`find host veth ${a.hostVeth}: it vanished after creation`)
  await setLinkAlias(host, link.index, hostVethAlias(a.network, a.containerId, a.ifname), a.hostVeth)
  testCrashPoint(AddStep.afterHostAlias)
  setupHostAntiSpoofing(a.hostVeth, warn)
  testCrashPoint(AddStep.afterHostRpFilter)
  if (hasIpv6(a)) ipv6Interface(a.hostVeth, 'on the host')
  for (const p of a.addresses) {
    const bits = p.family === 4 ? 32 : 128
    await addAddress(host, { index: link.index, family: p.family, address: p.gateway, prefixLength: bits, linkName: a.hostVeth, noDad: p.family === 6 })
  }
  testCrashPoint(AddStep.afterHostAddress)
  await setLinkUp(host, link.index, a.hostVeth)
  testCrashPoint(AddStep.afterHostUp)
  for (const p of a.addresses) {
    const bits = p.family === 4 ? 32 : 128
    // Exclusive, never replace: the kernel drops a device's routes with the device, so no route of
    // a dead veth can be in the way; a route that is there belongs to someone (refuseHostConflicts
    // names it before anything is made), and replacing it would delete it for good at DEL.
    await addRoute(host, { family: p.family, dst: p.address, dstLength: bits, oif: link.index, scope: 'link', protocol: POD_ROUTE_PROTOCOL })
  }
  // IPv6 takes a link as ready for neighbour discovery only once its operstate is up, which the
  // kernel sets from deferred work after both ends are up: the pod is reachable when ADD returns.
  if (hasIpv6(a)) return waitForOperUp(host, link.index, a.hostVeth)
  return { ...link, up: true }
}

/** Removes the host end (the kernel takes the pod end and the host routes with it). */
export async function removeHostVeth(host: Rtnl, name: string): Promise<boolean> {
  return deleteLink(host, { name })
}

/** MTU of the interface carrying the host's default route, the MTU pods get unless configured. */
export async function defaultRouteMtu(host: Rtnl, family: IpFamily): Promise<number | undefined> {
  const def = (await listRoutes(host, family)).find((r) => r.dstLength === 0 && r.oif)
  if (!def?.oif) return undefined
  return (await linkByIndex(host, def.oif))?.mtu
}
