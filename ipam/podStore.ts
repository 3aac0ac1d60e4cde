// The pod address store: which pod attachment holds which address of this node's pod ranges,
// kept as one file per address in <dataDir>/<network>/ so that concurrent plugin processes and
// crashes at any instant never hand one address out twice (see storeFiles.ts for how).
import { accessSync, constants as fsConstants, linkSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { cidrContains, cidrsOverlap, formatAddress, parseAddress } from './cidr.js'
import type { IpFamily, PodRange } from './cidr.js'
import { IpamError, ioError } from './ipamError.js'
import { encodeReservation, sameAttachment } from './reservationRecord.js'
import type { Attachment, Reservation } from './reservationRecord.js'
import { ensureDirectory, linkRecord, listEntries, readHint, readRecord, removeRecordIfOwned, sweepTempFiles, tempName, writeHint } from './storeFiles.js'
import type { DirEntry } from './storeFiles.js'
import { runTestPoint, StoreStep } from './testPoints.js'
import { rotationCandidates } from './rotation.js'

export interface ReserveRequest extends Attachment {
  podNamespace?: string
  podName?: string
  hostVeth?: string
  /** Specific addresses to take (CNI_ARGS `IP=` or runtimeConfig.ips), at most one per range. */
  requested?: string[]
}

export interface StoreStatus {
  /** The store directory accepts new files. */
  writable: boolean
  /** Why an ADD would fail now (not writable, or a range has no free address). */
  problem?: string
  inUse: number
  capacity: number
}

export interface PodAddressStoreOptions {
  /** Receives each corrupt record met by any operation; the default prints it on stderr. */
  onProblem?: (problem: IpamError) => void
  /**
   * The store's directory is <dataDir>/<network> and its siblings are the other flatnet networks'
   * stores (the plugin's layout): reservations then refuse addresses another network holds.
   */
  siblingsAreNetworks?: boolean
}

/** A directory listing with every record file read. */
interface Scan {
  entries: DirEntry[]
  records: Reservation[]
  corrupt: IpamError[]
}

/** As many bytes as a typical record: the probe must need what a reservation needs. */
const statusProbeBytes = Buffer.alloc(256, 0x20)

function defaultOnProblem(problem: IpamError): void {
  process.stderr.write(`flatnet ipam: ${problem.message}\n`)
}

function checkAttachment(operation: string, a: Attachment): void {
  for (const field of ['containerId', 'ifname'] as const) {
    if (typeof a[field] !== 'string' || a[field] === '') {
      throw new IpamError('invalid', `${operation}: ${field} must be a non-empty string, got ${JSON.stringify(a[field])}`)
    }
  }
}

function attachmentText(a: Attachment): string {
  return `container ${a.containerId} (${a.ifname})`
}

export class PodAddressStore {
  readonly dir: string
  readonly ranges: readonly PodRange[]
  private readonly onProblem: (problem: IpamError) => void
  private readonly siblingsAreNetworks: boolean

  constructor(dir: string, ranges: PodRange[], options: PodAddressStoreOptions = {}) {
    if (ranges.length === 0) throw new IpamError('invalid', `pod address store ${dir}: no pod range configured`)
    for (let i = 0; i < ranges.length; i++) {
      for (let j = i + 1; j < ranges.length; j++) {
        if (cidrsOverlap(ranges[i].cidr, ranges[j].cidr)) {
          throw new IpamError('invalid', `pod address store ${dir}: pod ranges ${ranges[i].cidr.text} and ${ranges[j].cidr.text} overlap`)
        }
      }
    }
    this.dir = dir
    this.ranges = ranges
    this.onProblem = options.onProblem ?? defaultOnProblem
    this.siblingsAreNetworks = options.siblingsAreNetworks ?? false
  }

  /**
   * Reserves one address per pod range for the attachment, all or nothing. Idempotent: an
   * attachment that already holds an address in a range gets that address back.
   *
   * The ranges are taken one after the other (one record file each). A failure gives back what
   * this call took; a crash between two ranges leaves records that name the attachment, which the
   * runtime's DEL (release) or GC (not in its valid list) takes back, both families together —
   * never one family kept for a live pod and the other lost, since a crashed ADD returned no result.
   */
  async reserve(req: ReserveRequest): Promise<Reservation[]> {
    checkAttachment(`reserve in ${this.dir}`, req)
    const requested = this.requestedByRange(req.requested ?? [])
    ensureDirectory(this.dir)
    const scan = this.scan()
    try {
      // Leftovers of crashed processes, found for free in the listing; the age test is GC's job.
      sweepTempFiles(this.dir, scan.entries, false)
    } catch {
      // a failed sweep does not stop a reservation
    }

    const createdAt = new Date().toISOString()
    const reserved: Reservation[] = []
    const created: Reservation[] = []
    try {
      for (let i = 0; i < this.ranges.length; i++) {
        const existing = scan.records.find((r) => sameAttachment(r, req) && this.rangeIndexOf(r.address) === i)
        if (existing !== undefined) {
          const wanted = requested.get(i)
          if (wanted !== undefined && wanted !== existing.address) {
            throw new IpamError('unavailable', `reserve requested address ${wanted} for ${attachmentText(req)}: it already holds ${existing.address} in ${this.ranges[i].cidr.text}`)
          }
          reserved.push(existing)
          continue
        }
        const record: Reservation = {
          address: '',
          range: this.ranges[i].cidr.text,
          containerId: req.containerId,
          ifname: req.ifname,
          ...(req.podNamespace === undefined ? {} : { podNamespace: req.podNamespace }),
          ...(req.podName === undefined ? {} : { podName: req.podName }),
          ...(req.hostVeth === undefined ? {} : { hostVeth: req.hostVeth }),
          createdAt,
        }
        const wanted = requested.get(i)
        const taken = wanted === undefined ? this.takeNextFree(i, record, scan.entries) : this.takeRequested(wanted, record)
        created.push(taken)
        reserved.push(taken)
        if (i < this.ranges.length - 1) runTestPoint(StoreStep.betweenRanges)
      }
    } catch (err) {
      // All or nothing: give back what this call took before the failing range.
      for (const r of created) {
        try {
          removeRecordIfOwned(this.dir, r.address, r)
        } catch {
          // GC will find it: its attachment is not among the runtime's live ones
        }
      }
      throw err
    }
    try {
      if (this.siblingsAreNetworks) this.refuseSharedRanges(reserved)
    } catch (err) {
      for (const r of created) {
        try {
          removeRecordIfOwned(this.dir, r.address, r)
        } catch {
          // GC will find it: its attachment is not among the runtime's live ones
        }
      }
      throw err
    }
    return reserved
  }

  /** Releases every address the attachment holds. Idempotent: resolves [] if it holds none. */
  async release(a: Attachment): Promise<Reservation[]> {
    checkAttachment(`release in ${this.dir}`, a)
    const released: Reservation[] = []
    const scan = this.scan()
    try {
      // A reservation killed between its temp file and its link(2) left the temp file; DEL is
      // the next call that comes for that attachment, so it takes it along (pid test only).
      sweepTempFiles(this.dir, scan.entries, false)
    } catch {
      // a failed sweep does not stop a release; GC retries it
    }
    for (const r of scan.records) {
      if (!sameAttachment(r, a)) continue
      const gone = removeRecordIfOwned(this.dir, r.address, a)
      if (gone !== undefined) released.push(gone)
    }
    return this.sorted(released)
  }

  /** The reservations the attachment holds, in pod range order. */
  async find(a: Attachment): Promise<Reservation[]> {
    checkAttachment(`find in ${this.dir}`, a)
    return this.sorted(this.scan().records.filter((r) => sameAttachment(r, a)))
  }

  /** All reservations in the directory (also of ranges no longer configured). Corrupt records go to onProblem. */
  async list(): Promise<Reservation[]> {
    return this.sorted(this.scan().records)
  }

  /**
   * CNI GC: releases every reservation whose attachment is not in `valid`, and removes temp files
   * left by crashed processes. Keeps going past failures and returns them. A corrupt record is
   * reported but kept: nobody can tell whether a live pod still uses its address.
   */
  async releaseAllExcept(valid: Attachment[]): Promise<{ released: Reservation[]; errors: Error[] }> {
    const keep = new Set(valid.map((a) => `${a.containerId}\u0000${a.ifname}`))
    const errors: Error[] = []
    let scan: Scan
    try {
      scan = this.scan()
    } catch (err) {
      return { released: [], errors: [err as Error] }
    }
    for (const c of scan.corrupt) {
      errors.push(new IpamError('invalid', `${c.message}; kept, remove it by hand once no pod uses that address`, { cause: c }))
    }
    try {
      sweepTempFiles(this.dir, scan.entries, true)
    } catch (err) {
      errors.push(err as Error)
    }
    const released: Reservation[] = []
    for (const r of scan.records) {
      if (keep.has(`${r.containerId}\u0000${r.ifname}`)) continue
      try {
        const gone = removeRecordIfOwned(this.dir, r.address, r)
        if (gone !== undefined) released.push(gone)
      } catch (err) {
        errors.push(err as Error)
      }
    }
    return { released: this.sorted(released), errors }
  }

  /** Removes temp files of crashed processes (pid gone or older than a minute); resolves their names. */
  async sweepTemp(): Promise<string[]> {
    return sweepTempFiles(this.dir, listEntries(this.dir), true)
  }

  /** Cheap readiness check for CNI STATUS: can an ADD write here, and is an address free? */
  async status(): Promise<StoreStatus> {
    const capacity = this.ranges.reduce((sum, r) => sum + r.capacity, 0)
    let writable = true
    let problem: string | undefined
    try {
      ensureDirectory(this.dir)
      const attempt = `write to store directory ${this.dir}`
      try {
        accessSync(this.dir, fsConstants.W_OK)
        // access(2) says yes to root on most refusals. A rehearsal of what a reservation does —
        // create and write a temp file, link(2) it to a second name — also catches immutable
        // directories and a filesystem out of blocks (an empty file still fits on a full disk, a
        // record does not) or out of inodes (tmpfs counts each hard link as one).
        const probe = join(this.dir, tempName())
        const probeLink = join(this.dir, tempName())
        try {
          writeFileSync(probe, statusProbeBytes, { flag: 'wx', mode: 0o600 })
          linkSync(probe, probeLink)
        } finally {
          for (const p of [probeLink, probe]) {
            try {
              unlinkSync(p)
            } catch {
              // never created, or gone: nothing left either way
            }
          }
        }
      } catch (err) {
        throw ioError(attempt, err)
      }
    } catch (err) {
      writable = false
      problem = (err as Error).message
    }
    let inUse = 0
    try {
      const entries = listEntries(this.dir)
      for (let i = 0; i < this.ranges.length; i++) {
        const n = this.inUseValues(i, entries).size
        inUse += n
        if (n >= this.ranges[i].capacity && problem === undefined) problem = this.exhaustedMessage(i, n)
      }
    } catch (err) {
      problem ??= (err as Error).message
    }
    return { writable, ...(problem === undefined ? {} : { problem }), inUse, capacity }
  }

  // ---- internals ----

  /**
   * An address must be unique on the host across every flatnet network, but each network's store
   * is its own directory (<dataDir>/<network>/): two network names with one range would each hand
   * out .2. So, after taking its addresses and before anyone can use them, a reservation reads the
   * sibling stores; any record there inside one of this store's ranges means two networks share
   * addresses, and the reservation is undone and refused, naming the other network. Written
   * first, read after — by both sides: of two concurrent reservations, at least one sees the
   * other's record. Nothing moves on disk, so stores written by earlier versions are read as
   * they are.
   */
  private refuseSharedRanges(reserved: Reservation[]): void {
    const parent = dirname(this.dir)
    const own = basename(this.dir)
    let siblings: string[]
    try {
      siblings = readdirSync(parent, { withFileTypes: true })
        .filter((d) => d.isDirectory() && d.name !== own && !d.name.startsWith('.'))
        .map((d) => d.name)
    } catch (err) {
      throw ioError(`list the networks' stores in ${parent}`, err)
    }
    for (const name of siblings) {
      for (const e of listEntries(join(parent, name))) {
        if (e.kind !== 'record') continue
        const i = this.ranges.findIndex((r) => r.cidr.family === e.family && cidrContains(r.cidr, e.family, e.value))
        if (i < 0) continue
        const mine = reserved.map((r) => r.address).join(', ')
        throw new IpamError(
          'invalid',
          `reserve ${mine} in ${this.ranges[i].cidr.text} for network ${own}: network ${name} uses the same addresses on this host (it holds ${e.name}, ${join(parent, name)}); ` +
            'an address must be unique per host across flatnet networks — give each network a range of its own',
        )
      }
    }
  }

  private scan(): Scan {
    const entries = listEntries(this.dir)
    const records: Reservation[] = []
    const corrupt: IpamError[] = []
    for (const e of entries) {
      if (e.kind !== 'record') continue
      try {
        const r = readRecord(this.dir, e.name)
        if (r !== undefined) records.push(r)
      } catch (err) {
        if (!(err instanceof IpamError) || err.kind !== 'invalid') throw err
        corrupt.push(err)
        this.onProblem(err)
      }
    }
    return { entries, records, corrupt }
  }

  private rangeIndexOf(address: string): number {
    let a: { family: IpFamily; value: bigint }
    try {
      a = parseAddress(address)
    } catch {
      return -1
    }
    return this.ranges.findIndex((r) => cidrContains(r.cidr, a.family, a.value))
  }

  /** Validates requested addresses and assigns each to its range. */
  private requestedByRange(requested: string[]): Map<number, string> {
    const byRange = new Map<number, string>()
    const all = this.ranges.map((r) => r.cidr.text).join(', ')
    for (const text of requested) {
      let a: { family: IpFamily; value: bigint }
      try {
        a = parseAddress(text)
      } catch (err) {
        throw new IpamError('invalid', `reserve requested address: ${(err as Error).message}`)
      }
      const address = formatAddress(a.family, a.value)
      const i = this.ranges.findIndex((r) => cidrContains(r.cidr, a.family, a.value))
      if (i < 0) throw new IpamError('invalid', `reserve requested address ${address}: outside the pod range${this.ranges.length > 1 ? 's' : ''} ${all}`)
      const range = this.ranges[i]
      if (address === range.gateway) throw new IpamError('invalid', `reserve requested address ${address}: it is the gateway of ${range.cidr.text}`)
      if (a.value < range.first || a.value > range.last) {
        throw new IpamError(
          'invalid',
          `reserve requested address ${address}: not a pod address of ${range.cidr.text} (pods get ${formatAddress(a.family, range.first)}-${formatAddress(a.family, range.last)})`,
        )
      }
      const other = byRange.get(i)
      if (other !== undefined && other !== address) {
        throw new IpamError('invalid', `reserve requested addresses ${other} and ${address}: both in ${range.cidr.text}, one address per range`)
      }
      byRange.set(i, address)
    }
    return byRange
  }

  private takeRequested(address: string, record: Reservation): Reservation {
    const taken = { ...record, address }
    if (linkRecord(this.dir, address, encodeReservation(taken))) return taken
    let holder: string
    try {
      const r = readRecord(this.dir, address)
      holder = r === undefined ? 'another container (released just now; retry)' : attachmentText(r)
    } catch {
      holder = 'an unreadable record'
    }
    throw new IpamError('unavailable', `reserve requested address ${address} in ${record.range}: already held by ${holder}`)
  }

  /** Next-free rotation: the first free address after the last one handed out, wrapping around. */
  private takeNextFree(i: number, record: Reservation, entries: DirEntry[]): Reservation {
    const range = this.ranges[i]
    const family = range.cidr.family
    const inUse = this.inUseValues(i, entries)
    const size = range.last - range.first + 1n
    if (BigInt(inUse.size) >= size) throw new IpamError('exhausted', this.exhaustedMessage(i, inUse.size))
    let start = range.first
    const hint = readHint(this.dir, i)
    if (hint !== undefined) {
      try {
        const h = parseAddress(hint)
        if (h.family === family && h.value >= range.first && h.value <= range.last) start = h.value + 1n
      } catch {
        // an unreadable hint only costs the rotation order
      }
    }
    // Bounded by the records in the store, not by the range's size (rotation.ts).
    for (const value of rotationCandidates(range.first, range.last, start, inUse)) {
      const address = formatAddress(family, value)
      const taken = { ...record, address }
      if (linkRecord(this.dir, address, encodeReservation(taken))) {
        writeHint(this.dir, i, address)
        return taken
      }
      // Another process got there first; it is likely ahead of us on the same path, so refresh
      // the whole picture instead of colliding address by address.
      inUse.add(value)
      for (const v of this.inUseValues(i, listEntries(this.dir))) inUse.add(v)
    }
    throw new IpamError('exhausted', this.exhaustedMessage(i, inUse.size))
  }

  /** Pod addresses of range i that have a record file (readable or not). */
  private inUseValues(i: number, entries: DirEntry[]): Set<bigint> {
    const range = this.ranges[i]
    const used = new Set<bigint>()
    for (const e of entries) {
      if (e.kind === 'record' && e.family === range.cidr.family && e.value >= range.first && e.value <= range.last) used.add(e.value)
    }
    return used
  }

  private exhaustedMessage(i: number, inUse: number): string {
    const range = this.ranges[i]
    return `no free address in ${range.cidr.text}: ${inUse} of ${range.capacity} in use`
  }

  private sorted(records: Reservation[]): Reservation[] {
    const key = (r: Reservation): [number, number, bigint] => {
      const i = this.rangeIndexOf(r.address)
      const a = parseAddress(r.address)
      return [i < 0 ? this.ranges.length : i, a.family, a.value]
    }
    return records
      .map((r) => ({ r, k: key(r) }))
      .sort((x, y) => x.k[0] - y.k[0] || x.k[1] - y.k[1] || (x.k[2] < y.k[2] ? -1 : x.k[2] > y.k[2] ? 1 : 0))
      .map((x) => x.r)
  }
}
