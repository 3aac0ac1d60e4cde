// The on-disk record of one reserved pod address: a JSON file named by the address. This layout
// is a contract shared with flatnetctl and operators reading /var/lib/cni, so it is plain JSON
// with the address repeated inside (a renamed or copied file is detectable).
import { IpamError } from './ipamError.js'

/** Who holds an address: the CNI attachment key (container ID + interface name). */
export interface Attachment {
  containerId: string
  ifname: string
}

export interface Reservation extends Attachment {
  address: string
  /** The pod range (CIDR text) the address was taken from. */
  range: string
  podNamespace?: string
  podName?: string
  hostVeth?: string
  /** ISO 8601 time of the reservation. */
  createdAt: string
}

const optionalFields = ['podNamespace', 'podName', 'hostVeth'] as const

export function sameAttachment(a: Attachment, b: Attachment): boolean {
  return a.containerId === b.containerId && a.ifname === b.ifname
}

export function encodeReservation(r: Reservation): string {
  // A fixed field order keeps files diffable and easy to read.
  const ordered: Record<string, string> = { address: r.address, range: r.range, containerId: r.containerId, ifname: r.ifname }
  for (const field of optionalFields) {
    const value = r[field]
    if (value !== undefined) ordered[field] = value
  }
  ordered.createdAt = r.createdAt
  return JSON.stringify(ordered) + '\n'
}

/** Parses a record file's text; throws IpamError('invalid') naming the file if it is not a record for `address`. */
export function decodeReservation(path: string, address: string, text: string): Reservation {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new IpamError('invalid', `corrupt reservation record ${path}: not JSON (${(err as Error).message})`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new IpamError('invalid', `corrupt reservation record ${path}: not a JSON object`)
  }
  const o = value as Record<string, unknown>
  for (const field of ['address', 'range', 'containerId', 'ifname', 'createdAt'] as const) {
    if (typeof o[field] !== 'string' || o[field] === '') {
      throw new IpamError('invalid', `corrupt reservation record ${path}: field "${field}" missing or not a string`)
    }
  }
  if (o.address !== address) {
    throw new IpamError('invalid', `corrupt reservation record ${path}: it names address ${JSON.stringify(o.address)}, not ${address}`)
  }
  const record: Reservation = {
    address,
    range: o.range as string,
    containerId: o.containerId as string,
    ifname: o.ifname as string,
    createdAt: o.createdAt as string,
  }
  for (const field of optionalFields) {
    const v = o[field]
    if (v === undefined) continue
    if (typeof v !== 'string') throw new IpamError('invalid', `corrupt reservation record ${path}: field "${field}" is not a string`)
    record[field] = v
  }
  return record
}
