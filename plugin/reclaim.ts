// Taking back what dead attachments left: reservations in the store and host veths (their /32
// routes go with them). Two callers decide differently who is dead:
//   - the plugin's GC: the runtime lists the attachments it still uses; everything else goes;
//   - `flatnetctl ipam gc`: no runtime to ask (a node rebooted, a runtime lost its state), so
//     the host decides: a reservation whose host veth is gone is dead, and so is a host veth of
//     the network that no reservation claims.
// The deciding is pure (plan*), the doing is shared (applyReclaim). Light imports only: the
// plugin loads this on its GC path, and flatnetctl imports it without dragging its CLI along.
import type { Attachment, PodAddressStore, Reservation } from '../ipam/index.js'
import { listLinks, type LinkInfo, type Rtnl } from '../net/rtnl.js'
import { hostVethName, networkOfAlias, removeHostVeth } from './wiring.js'

/** What a reclaim took back, and what it could not. */
export interface ReclaimReport {
  released: Reservation[]
  removedHostVeths: string[]
  /** Each problem, naming the operation and the object; the caller reports them all. */
  errors: string[]
}

/** A host link as the planners see it. */
export type HostLink = Pick<LinkInfo, 'name' | 'alias' | 'kind'>

const attachmentKey = (a: Attachment) => `${a.containerId}\u0000${a.ifname}`

/**
 * Only a veth carrying flatnet's derived name can be ours: a record or an alias is text anyone
 * with write access could have put there, and must never be able to make us delete `eth0`.
 */
function isFlatnetVeth(l: HostLink): boolean {
  return (l.kind === undefined || l.kind === 'veth') && /^fn[0-9a-f]{13}$/.test(l.name)
}

/**
 * GC by the runtime's list: host veths of `network` (by alias) not listed, plus the host veth of
 * every released reservation — an ADD killed before it set the alias left one without it, and the
 * reservation (made before the veth) is how we still know it is ours.
 */
export function planHostVethsByValidList(network: string, links: HostLink[], released: Reservation[], valid: Attachment[]): string[] {
  const keep = new Set(valid.map((a) => hostVethName(a.containerId, a.ifname)))
  const ofReleased = new Set(released.map((r) => hostVethName(r.containerId, r.ifname)))
  return links
    .filter(isFlatnetVeth)
    .filter((l) => !keep.has(l.name) && (networkOfAlias(l.alias) === network || ofReleased.has(l.name)))
    .map((l) => l.name)
}

export interface DetachedPlan {
  /** Reservations whose host veth is gone (and that are older than the grace period). */
  reservations: Reservation[]
  /** Host veths of the network that no reservation claims. */
  hostVeths: string[]
  /** Reservations without a host veth that are too young to judge: an ADD may be between its reservation and its veth. */
  tooYoung: Reservation[]
}

export interface DetachedInput {
  network: string
  /** Host links listed BEFORE the store was read: a veth seen here had its reservation made already. */
  linksBefore: HostLink[]
  reservations: Reservation[]
  /** Host links listed AFTER the store was read: a reservation without a veth here is not merely early. */
  linksAfter: HostLink[]
  now: number
  minAgeMs: number
}

/**
 * Judges by the host alone. The order of the three readings is what makes it safe against a
 * concurrent ADD (reserve, then create the veth) and DEL (remove the veth, then release): a veth
 * seen before the store was read without a reservation in it belongs to nobody; a reservation
 * read before the links were listed without its veth among them is dead — unless it is younger
 * than `minAgeMs`, the time an ADD may take between the two steps.
 */
export function planDetached(input: DetachedInput): DetachedPlan {
  const claimed = new Set(input.reservations.map((r) => hostVethName(r.containerId, r.ifname)))
  const present = new Set(input.linksAfter.map((l) => l.name))
  const hostVeths = input.linksBefore
    .filter(isFlatnetVeth)
    .filter((l) => networkOfAlias(l.alias) === input.network && !claimed.has(l.name))
    .map((l) => l.name)
  const reservations: Reservation[] = []
  const tooYoung: Reservation[] = []
  for (const r of input.reservations) {
    if (present.has(hostVethName(r.containerId, r.ifname))) continue
    const created = Date.parse(r.createdAt)
    // An unparsable time cannot prove youth; the record is old enough to have lost its veth.
    if (Number.isFinite(created) && input.now - created < input.minAgeMs) tooYoung.push(r)
    else reservations.push(r)
  }
  // One attachment may hold one address per range; all of them go or none (release by attachment).
  const young = new Set(tooYoung.map(attachmentKey))
  return { reservations: reservations.filter((r) => !young.has(attachmentKey(r))), hostVeths, tooYoung }
}

/** Removes the given host veths; a veth already gone is no error (a DEL got there first). */
export async function removeHostVeths(host: Rtnl, names: string[], report: ReclaimReport): Promise<void> {
  for (const name of names) {
    try {
      if (await removeHostVeth(host, name)) report.removedHostVeths.push(name)
    } catch (e) {
      report.errors.push((e as Error).message)
    }
  }
}

/** The plugin's GC: everything of `network` the runtime does not list. */
export async function reclaimExcept(store: PodAddressStore, host: Rtnl, network: string, valid: Attachment[]): Promise<ReclaimReport> {
  const { released, errors } = await store.releaseAllExcept(valid)
  const report: ReclaimReport = { released, removedHostVeths: [], errors: errors.map((e) => e.message) }
  let links: LinkInfo[]
  try {
    links = await listLinks(host)
  } catch (e) {
    report.errors.push((e as Error).message)
    return report
  }
  await removeHostVeths(host, planHostVethsByValidList(network, links, released, valid), report)
  return report
}

/** Reads the three inputs of planDetached in the order that makes it safe. */
export async function findDetached(store: PodAddressStore, host: Rtnl, network: string, now: number, minAgeMs: number): Promise<DetachedPlan> {
  const linksBefore = await listLinks(host)
  const reservations = await store.list()
  const linksAfter = await listLinks(host)
  return planDetached({ network, linksBefore, reservations, linksAfter, now, minAgeMs })
}

/** Carries out a plan from planDetached: releases the reservations, removes the host veths. */
export async function reclaimDetached(store: PodAddressStore, host: Rtnl, plan: DetachedPlan): Promise<ReclaimReport> {
  const report: ReclaimReport = { released: [], removedHostVeths: [], errors: [] }
  const seen = new Set<string>()
  for (const r of plan.reservations) {
    if (seen.has(attachmentKey(r))) continue
    seen.add(attachmentKey(r))
    try {
      report.released.push(...(await store.release({ containerId: r.containerId, ifname: r.ifname })))
    } catch (e) {
      report.errors.push((e as Error).message)
    }
  }
  await removeHostVeths(host, plan.hostVeths, report)
  return report
}
