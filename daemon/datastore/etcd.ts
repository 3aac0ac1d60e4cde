// The etcd datastore. Layout under the prefix (default `/flatnet/`):
//   nodes/<name>            → the node's record (JSON)
//   subnets/<a.b.c.d>_<len> → the name of the node holding that subnet
// Both keys of a node are written in one transaction guarded by compares ("absent" for a new
// claim, "unchanged since read" for an existing one), so two nodes can never win the same subnet,
// and both are attached to this daemon's lease, so a node that dies frees its subnet when the
// lease runs out. Every request has a deadline: an unreachable etcd is an 'unavailable' error
// naming the endpoints, never a hang.
import { Etcd3, EtcdLeaseInvalidError, type IKeyValue, type Lease, type Watcher } from 'etcd3'
import { parseAddress, parseCidr, type Cidr } from '../../ipam/index.js'
import { NodeSubnetAllocator } from '../../ipam/nodeSubnet.js'
import {
  allocatorsFor,
  checkAddressFree,
  checkClaimRequests,
  checkNodeName,
  checkOwner,
  chooseSubnets,
  readRecordBackend,
  readRecordFamilies,
  recordFor,
  sortByName,
  subnetsHeldBy,
} from './claimRules.js'
import { DatastoreError, type ClaimRequest, type NodeRecord, type SeedingDatastore, type StopWatch } from './types.js'
import { withEtcdDeadline } from './etcdDeadline.js'

export interface EtcdDatastoreOptions {
  endpoints: string[]
  /** Key prefix, default `/flatnet/`; a trailing `/` is added if missing. */
  prefix?: string
  /** Lease TTL in seconds, default 30. */
  leaseTtlSeconds?: number
  /** Deadline of one etcd request, default 5000 ms. */
  timeoutMs?: number
}

// etcd's default --max-txn-ops is 128 (compares, and operations, each); a claim costs one compare
// and one put for the node key plus one of each per subnet (two per claim single-stack, three dual).
const maxTxnOps = 128
const maxLostRaces = 200

/** Watch reconnect backoff: etcd3's default grows to 30 s, too slow for a node agent to notice etcd is back. */
class CappedBackoff {
  constructor(readonly duration = 100) {}
  next(): CappedBackoff {
    return new CappedBackoff(Math.min(this.duration * 2, 2000))
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

function isText(v: unknown): v is string {
  return typeof v === 'string' && v !== ''
}

export async function openEtcdDatastore(options: EtcdDatastoreOptions): Promise<EtcdDatastore> {
  const ttl = options.leaseTtlSeconds ?? 30
  const timeoutMs = options.timeoutMs ?? 5000
  let prefix = options.prefix ?? '/flatnet/'
  if (!prefix.endsWith('/')) prefix += '/'
  if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) {
    throw new DatastoreError('invalid', 'open etcd datastore: no endpoints given')
  }
  // etcd leases are whole seconds, at least 1.
  if (!Number.isInteger(ttl) || ttl < 1) throw new DatastoreError('invalid', `open etcd datastore: leaseTtlSeconds ${ttl} must be a whole number >= 1`)
  const client = new Etcd3({
    hosts: options.endpoints,
    dialTimeout: timeoutMs,
    // Unary calls get a deadline; streams (watch, keep-alive) must not, they live long.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: new Date(Date.now() + timeoutMs) }),
    faultHandling: { watchBackoff: new CappedBackoff() },
  })
  const store = new EtcdDatastore(client, options.endpoints, prefix, ttl, timeoutMs)
  try {
    await store.list() // an unreachable etcd is reported at open, not at first use
  } catch (err) {
    client.close()
    throw err
  }
  return store
}

interface Snapshot {
  revision: bigint
  nodes: Map<string, { record: NodeRecord; kv: IKeyValue }>
  subnets: Map<string, { name: string; kv: IKeyValue }>
}

export class EtcdDatastore implements SeedingDatastore {
  readonly kind = 'etcd' as const
  private readonly nodesPrefix: string
  private readonly subnetsPrefix: string
  private lease: { lease: Lease; id: Promise<string> } | undefined
  private readonly stops = new Set<StopWatch>()

  constructor(
    private readonly client: Etcd3,
    readonly endpoints: string[],
    readonly prefix: string,
    readonly leaseTtlSeconds: number,
    private readonly timeoutMs: number,
  ) {
    this.nodesPrefix = `${prefix}nodes/`
    this.subnetsPrefix = `${prefix}subnets/`
  }

  private nodeKey(name: string): string {
    return this.nodesPrefix + name
  }

  private subnetKey(subnet: string): string {
    return this.subnetsPrefix + subnet.replace('/', '_')
  }

  async claim(req: ClaimRequest): Promise<NodeRecord> {
    const [record] = await this.claimMany([req])
    return record!
  }

  async claimMany(reqs: ClaimRequest[]): Promise<NodeRecord[]> {
    const plans = checkClaimRequests(reqs)
    if (!plans) return []
    const claimsPerTxn = Math.floor(maxTxnOps / (1 + plans.length))
    const operation = reqs.length === 1 ? `claim a subnet for node ${reqs[0]!.name}` : `claim subnets for ${reqs.length} nodes`
    const leaseId = await this.leaseId(operation)
    const claimed: NodeRecord[] = []
    let pending = reqs
    let snapshot: Snapshot | undefined
    let allocators: NodeSubnetAllocator[] | undefined
    for (let lostRaces = 0; pending.length > 0;) {
      // One read serves every batch while our transactions succeed: the allocators already count
      // what we committed, and any concurrent change makes the next transaction's compares fail.
      if (!snapshot || !allocators) {
        snapshot = await this.snapshot(operation)
        // Subnet keys count too: a key whose node record is gone is still not free to hand out.
        const keyed: Cidr[] = [...snapshot.subnets.keys()].map((s) => parseCidr(s))
        allocators = allocatorsFor(
          plans,
          [...snapshot.nodes.values()].map((n) => n.record),
          keyed,
        )
      }
      const batch = pending.slice(0, claimsPerTxn)
      const updatedAt = new Date().toISOString()
      const records: NodeRecord[] = []
      const compares: Array<[string, 'Create' | 'Mod', string | number]> = []
      const puts = []
      // Every node as this transaction will leave it: the snapshot, then what this call claimed.
      const known = new Map([...snapshot.nodes.values()].map((n) => [n.record.name, n.record]))
      for (const r of claimed) known.set(r.name, r)
      for (const req of batch) {
        const own = snapshot.nodes.get(req.name)
        // Checked against the snapshot the transaction compares against, plus this call's own
        // claims. Two nodes claiming one address in concurrent transactions both pass (the address
        // is no key of its own); the daemons' own check of the node list reports that case.
        checkAddressFree(req, known.values())
        const subnets = chooseSubnets(req, own?.record, allocators, snapshot.nodes.size + claimed.length).map((c) => c.text)
        compares.push(own ? [this.nodeKey(req.name), 'Mod', own.kv.mod_revision] : [this.nodeKey(req.name), 'Create', 0])
        for (const subnet of subnets) {
          const holder = snapshot.subnets.get(subnet)
          if (holder && holder.name !== req.name) {
            throw new DatastoreError(
              'corrupt',
              `${operation}: etcd ${this.endpoints.join(',')}: ${this.subnetKey(subnet)} names node ${holder.name}, but ${this.nodeKey(req.name)} holds ${subnet}; repair by removing one of the two nodes`,
            )
          }
          compares.push(holder ? [this.subnetKey(subnet), 'Mod', holder.kv.mod_revision] : [this.subnetKey(subnet), 'Create', 0])
          puts.push(this.client.put(this.subnetKey(subnet)).value(req.name).lease(leaseId))
        }
        // A subnet the node held and no longer claims (a range dropped from its configuration) is freed.
        for (const old of own ? subnetsHeldBy(own.record).map((c) => c.text) : []) {
          const holder = snapshot.subnets.get(old)
          if (subnets.includes(old) || holder?.name !== req.name) continue
          compares.push([this.subnetKey(old), 'Mod', holder.kv.mod_revision])
          puts.push(this.client.delete().key(this.subnetKey(old)))
        }
        const record = recordFor(
          req,
          subnets.map((s) => parseCidr(s)),
          updatedAt,
        )
        records.push(record)
        known.set(record.name, record)
        puts.push(this.client.put(this.nodeKey(req.name)).value(JSON.stringify(record)).lease(leaseId))
      }
      const [[firstKey, firstColumn, firstValue], ...moreCompares] = compares as [(typeof compares)[0], ...typeof compares]
      const txn = this.client.if(firstKey, firstColumn, '==', firstValue)
      for (const [key, column, value] of moreCompares) txn.and(key, column, '==', value)
      const result = await this.timed(operation, txn.then(...puts).commit())
      if (result.succeeded) {
        claimed.push(...records)
        pending = pending.slice(batch.length)
        continue
      }
      // Another node committed between our read and our transaction: read again and re-choose.
      snapshot = undefined
      if (++lostRaces > maxLostRaces) throw new DatastoreError('unavailable', `${operation}: etcd ${this.endpoints.join(',')}: lost ${maxLostRaces} compare-and-swap races in a row`)
      await sleep(Math.random() * Math.min(lostRaces, 20))
    }
    return claimed
  }

  async renew(name: string, owner: string): Promise<void> {
    const operation = `renew the claim of node ${name}`
    checkNodeName(name, operation)
    checkOwner(owner, operation)
    const current = this.lease
    if (!current) throw new DatastoreError('lost', `${operation}: this daemon holds no etcd lease (never claimed, or the lease expired); claim again`)
    try {
      await this.timed(operation, current.lease.keepaliveOnce())
    } catch (err) {
      if (err instanceof DatastoreError && err.cause instanceof EtcdLeaseInvalidError) {
        if (this.lease === current) this.lease = undefined
        throw new DatastoreError('lost', `${operation}: its etcd lease expired; the node's keys are gone, claim again`, { cause: err })
      }
      throw err
    }
    const kvs = (await this.timed(operation, this.client.get(this.nodeKey(name)).exec())).kvs
    const record = kvs[0] ? this.parseRecord(kvs[0], operation) : undefined
    if (!record) throw new DatastoreError('lost', `${operation}: node ${name} holds no subnet any more (removed, or its lease expired); claim again`)
    if (record.owner !== owner) throw new DatastoreError('conflict', `${operation}: node ${name} is held by owner ${JSON.stringify(record.owner)}, not ${JSON.stringify(owner)}`)
  }

  async list(): Promise<NodeRecord[]> {
    const snapshot = await this.snapshot('list nodes')
    return sortByName([...snapshot.nodes.values()].map((n) => n.record))
  }

  async remove(name: string): Promise<boolean> {
    const operation = `remove node ${name}`
    checkNodeName(name, operation)
    for (let lostRaces = 0; ;) {
      const nodeKv = (await this.timed(operation, this.client.get(this.nodeKey(name)).exec())).kvs[0]
      if (!nodeKv) return false
      const record = this.parseRecord(nodeKv, operation)
      const txn = this.client.if(this.nodeKey(name), 'Mod', '==', nodeKv.mod_revision)
      const deletes = [this.client.delete().key(this.nodeKey(name))]
      for (const subnet of subnetsHeldBy(record)) {
        const subnetKv = (await this.timed(operation, this.client.get(this.subnetKey(subnet.text)).exec())).kvs[0]
        // Free a subnet key only if it names this node: never another node's subnet.
        if (subnetKv && subnetKv.value.toString() === name) {
          txn.and(this.subnetKey(subnet.text), 'Mod', '==', subnetKv.mod_revision)
          deletes.push(this.client.delete().key(this.subnetKey(subnet.text)))
        }
      }
      const result = await this.timed(operation, txn.then(...deletes).commit())
      if (result.succeeded) return true
      if (++lostRaces > maxLostRaces) throw new DatastoreError('unavailable', `${operation}: etcd ${this.endpoints.join(',')}: lost ${maxLostRaces} compare-and-swap races in a row`)
    }
  }

  watch(onChange: (nodes: NodeRecord[]) => void, onError: (err: Error) => void): StopWatch {
    const operation = `watch ${this.nodesPrefix} on etcd`
    let stopped = false
    let watcher: Watcher | undefined
    let nodes = new Map<string, NodeRecord>()
    let snapshotRevision = -1n
    // Events that arrive while a re-list is in flight wait here, then apply if newer than it.
    let buffered: Array<{ type: 'put' | 'delete'; kv: IKeyValue }> | undefined
    let emitted: string | undefined
    let emitTimer: NodeJS.Timeout | undefined
    let connectTimer: NodeJS.Timeout | undefined
    let restartTimer: NodeJS.Timeout | undefined
    let relistTimer: NodeJS.Timeout | undefined

    const report = (err: unknown) => {
      if (!stopped) onError(this.toDatastoreError(err, operation))
    }
    // Coalesce bursts (thousands of registrations) into one call.
    const emitSoon = () => {
      if (emitTimer || stopped) return
      emitTimer = setTimeout(() => {
        emitTimer = undefined
        if (stopped) return
        const list = sortByName([...nodes.values()])
        const key = JSON.stringify(list)
        if (key === emitted) return
        emitted = key
        onChange(list)
      }, 10)
    }
    const apply = (type: 'put' | 'delete', kv: IKeyValue) => {
      if (buffered) {
        buffered.push({ type, kv })
        return
      }
      if (BigInt(kv.mod_revision) <= snapshotRevision) return
      const name = kv.key.toString().slice(this.nodesPrefix.length)
      if (type === 'delete') {
        nodes.delete(name)
      } else {
        try {
          nodes.set(name, this.parseRecord(kv, operation))
        } catch (err) {
          // A record someone else overwrote with something unreadable: report it and keep what
          // was known of that node. Dropping it would remove its route, on every node, because
          // of a bad write rather than because the node left.
          report(err)
          return
        }
      }
      emitSoon()
    }
    let relisting = false
    let relistAgain = false
    const relist = async (): Promise<void> => {
      // One re-list at a time: a second request during one runs once it is done.
      if (relisting) {
        relistAgain = true
        return
      }
      relisting = true
      buffered = []
      try {
        const snapshot = await this.snapshot(operation)
        nodes = new Map([...snapshot.nodes].map(([name, n]) => [name, n.record]))
        snapshotRevision = snapshot.revision
      } catch (err) {
        report(err)
        // Connected but the read failed (e.g. timed out): try again rather than wait for the
        // next reconnect, which may never come.
        clearTimeout(relistTimer)
        if (!stopped) relistTimer = setTimeout(() => void relist(), 1000)
      } finally {
        const events = buffered
        buffered = undefined
        for (const e of events) apply(e.type, e.kv)
        emitSoon()
        relisting = false
      }
      if (relistAgain && !stopped) {
        relistAgain = false
        await relist()
      }
    }
    const start = () => {
      if (stopped) return
      const w = this.client.watch().prefix(this.nodesPrefix).watcher()
      watcher = w
      connectTimer = setTimeout(() => report(new Error(`not connected after ${this.timeoutMs} ms; still trying`)), this.timeoutMs)
      // On every (re)connect: the watch resumes where it stopped, but a full re-list also covers
      // history etcd compacted away meanwhile.
      w.on('connected', () => {
        clearTimeout(connectTimer)
        void relist()
      })
      w.on('put', (kv) => apply('put', kv))
      w.on('delete', (kv) => apply('delete', kv))
      w.on('disconnected', (err) => report(err))
      // A watch etcd cancelled (e.g. its start revision was compacted) is dead: start a new one.
      w.on('error', (err) => {
        report(err)
        void w.cancel().catch(() => undefined)
        if (watcher === w && !stopped) restartTimer = setTimeout(start, 1000)
      })
    }
    start()

    const stop = () => {
      if (stopped) return
      stopped = true
      clearTimeout(emitTimer)
      clearTimeout(connectTimer)
      clearTimeout(restartTimer)
      clearTimeout(relistTimer)
      void watcher?.cancel().catch(() => undefined)
      this.stops.delete(stop)
    }
    this.stops.add(stop)
    return stop
  }

  async close(): Promise<void> {
    for (const stop of [...this.stops]) stop()
    // Stop keep-alives but do not revoke: a daemon restarting for an upgrade keeps its subnet
    // as long as it returns within the TTL.
    this.lease?.lease.release()
    this.lease = undefined
    this.client.close()
  }

  /** This instance's lease, granted on first need and again after it was lost. */
  private async leaseId(operation: string): Promise<string> {
    if (this.lease && !this.lease.lease.revoked()) return this.timed(operation, this.lease.id)
    const lease = this.client.lease(this.leaseTtlSeconds, { autoKeepAlive: false })
    const entry = { lease, id: lease.grant() }
    entry.id.catch(() => undefined) // reported through timed() below
    lease.on('lost', () => {
      if (this.lease === entry) this.lease = undefined
    })
    this.lease = entry
    try {
      return await this.timed(operation, entry.id)
    } catch (err) {
      if (this.lease === entry) this.lease = undefined
      lease.release()
      throw err
    }
  }

  private async snapshot(operation: string): Promise<Snapshot> {
    // Two ranges read at one revision, not the whole prefix: cluster objects (pods, policies;
    // daemon/objects/etcdStore.ts) share it under `objects/` and can outnumber nodes by far.
    const nodes = await this.timed(operation, this.client.getAll().prefix(this.nodesPrefix).exec())
    const subnets = await this.timed(operation, this.client.getAll().prefix(this.subnetsPrefix).revision(nodes.header.revision).exec())
    const snapshot: Snapshot = { revision: BigInt(nodes.header.revision), nodes: new Map(), subnets: new Map() }
    for (const kv of [...nodes.kvs, ...subnets.kvs]) {
      const key = kv.key.toString()
      if (key.startsWith(this.nodesPrefix)) {
        const record = this.parseRecord(kv, operation)
        snapshot.nodes.set(record.name, { record, kv })
      } else if (key.startsWith(this.subnetsPrefix)) {
        const subnetText = key.slice(this.subnetsPrefix.length).replace('_', '/')
        let subnet: string
        try {
          subnet = parseCidr(subnetText).text
        } catch (err) {
          throw new DatastoreError('corrupt', `${operation}: etcd key ${key} does not name a subnet: ${(err as Error).message}`)
        }
        snapshot.subnets.set(subnet, { name: kv.value.toString(), kv })
      }
    }
    return snapshot
  }

  private parseRecord(kv: IKeyValue, operation: string): NodeRecord {
    const key = kv.key.toString()
    const bad = (detail: string) => new DatastoreError('corrupt', `${operation}: etcd key ${key} (endpoints ${this.endpoints.join(',')}) is not a flatnet node record: ${detail}`)
    let doc: unknown
    try {
      doc = JSON.parse(kv.value.toString())
    } catch (err) {
      throw bad(`invalid JSON: ${(err as Error).message}`)
    }
    if (typeof doc !== 'object' || doc === null) throw bad('not a JSON object')
    const d = doc as Record<string, unknown>
    for (const field of ['name', 'nodeIP', 'subnet', 'owner', 'updatedAt'] as const) {
      if (!isText(d[field])) throw bad(`${field} is ${JSON.stringify(d[field])}`)
    }
    const record = { name: d.name, nodeIP: d.nodeIP, subnet: d.subnet, owner: d.owner, updatedAt: d.updatedAt } as NodeRecord
    if (key !== this.nodeKey(record.name)) throw bad(`it names node ${record.name}`)
    try {
      parseAddress(record.nodeIP)
      if (parseCidr(record.subnet).text !== record.subnet) throw new Error(`subnet ${record.subnet} is not in canonical form`)
      Object.assign(record, readRecordFamilies(d), readRecordBackend(d))
    } catch (err) {
      throw bad((err as Error).message)
    }
    return record
  }

  /** Bounds any etcd promise by the request timeout and maps its failure to a DatastoreError. */
  private async timed<T>(operation: string, work: Promise<T>): Promise<T> {
    try {
      return await withEtcdDeadline(work, this.timeoutMs)
    } catch (err) {
      throw this.toDatastoreError(err, operation)
    }
  }

  private toDatastoreError(err: unknown, operation: string): DatastoreError {
    if (err instanceof DatastoreError) return err
    const message = err instanceof Error ? err.message : String(err)
    return new DatastoreError('unavailable', `${operation}: etcd ${this.endpoints.join(',')}: ${message}`, { cause: err })
  }
}
