// policy: owns the nftables table `inet flatnet-policy` — NetworkPolicy enforced for this node's
// pods (the compiler and the table's shape: ../policy/). Every sync compiles the cluster objects
// into the whole table and, when it differs from what is in the kernel, replaces its content in
// one `nft -f -` transaction: flush every chain's rules, delete every set, declare the table
// again. The kernel commits all of it or none: a packet is judged by the old rules or by the new
// ones, never by a mix. Unlike deleting and re-creating the whole table (also one transaction),
// the base chains stay hooked and the refusal counters keep counting across syncs.
//
// Level-triggered: a full sync reads the table back (`nft -s list table`, stateless: counters
// left out) and rewrites it unless it is exactly what the last write left; a partial sync trusts
// what it last wrote. Nothing is written before namespaces, pods and policies have all been fully
// listed (the runner's inputs), and nothing is flushed at start: a restarted flatnetd, or one whose
// object source is unreachable, leaves the last programmed policy in force.
import type { Logger } from 'pino'
import { NftTransaction, applyNft, nftProcess, renderNftTable, type NftExecutor, type NftTable } from '../../net/nft.js'
import { nodeFamilies, type NodeRecord } from '../datastore/index.js'
import type { DaemonMetrics } from '../metrics.js'
import type { ObjectInputs } from '../objects/view.js'
import { DROP_COUNTERS, POLICY_TABLE, compilePolicies, policyTable, type Direction } from '../policy/index.js'
import type { InputSource, Reconciler, ReconcilerStatus, SyncRequest, SyncResult } from '../reconcile/contract.js'

/** What the policy reconciler reads: the cluster objects and this node's held subnets (DaemonView). */
export type PolicyView = InputSource & Pick<ObjectInputs, 'namespaces' | 'pods' | 'networkPolicies'> & { self(): NodeRecord | undefined }

export type PolicyMetrics = Pick<DaemonMetrics, 'policyPolicies' | 'policyPodsSelected' | 'policyRules' | 'policyTableBytes' | 'policyDrops'>

export class PolicyReconciler implements Reconciler<PolicyView> {
  readonly name = 'policy'
  readonly owns = `the nftables table inet ${POLICY_TABLE} (NetworkPolicy of this node's pods)`
  readonly inputs = ['subnet', 'namespaces', 'pods', 'networkpolicies'] as const
  // A node that cannot program the policy its pods are under is not ready: new pods would start
  // under an older policy than the cluster's.
  readonly gatesReadiness = true
  readonly holdsWhileRefused = true
  /** The script last applied and nft's stateless listing right after it; undefined after a failure. */
  private written: { script: string; listing: string } | undefined
  /** Addresses this node's CNI ADDs gave pods the view may not list yet, by `namespace/name`. */
  private readonly attachments = new Map<string, readonly string[]>()

  constructor(
    private readonly log: Logger,
    private readonly metrics?: PolicyMetrics,
    private readonly nft: NftExecutor = nftProcess,
  ) {}

  /** A pod of this node got addresses (CNI ADD): it counts as known, with its object's labels, from now on. */
  noteAttachment(namespace: string, name: string, addresses: readonly string[]): void {
    this.attachments.set(`${namespace}/${name}`, [...addresses])
  }

  /** A pod of this node was detached (CNI DEL). */
  forgetAttachment(namespace: string, name: string): void {
    this.attachments.delete(`${namespace}/${name}`)
  }

  async sync(view: PolicyView, req: SyncRequest): Promise<SyncResult> {
    const namespaces = view.namespaces()
    const pods = view.pods()
    const policies = view.networkPolicies()
    const self = view.self()
    if (!namespaces || !pods || !policies || !self) return { changed: false, problems: [] }
    // An attachment is only needed until the pod's own status lists its addresses.
    for (const p of pods) if (p.status?.podIPs?.length || p.status?.podIP) this.attachments.delete(`${p.metadata?.namespace ?? 'default'}/${p.metadata?.name ?? ''}`)
    const plan = compilePolicies({ namespaces, pods, policies, nodeSubnets: nodeFamilies(self).map((f) => f.subnet), attachments: this.attachments })
    const table = policyTable(plan)
    const script = new NftTransaction().replaceTable(table).text()
    this.metrics?.policyPolicies.set(plan.stats.policies)
    this.metrics?.policyPodsSelected.set(plan.stats.podsSelected)
    this.metrics?.policyRules.set(plan.stats.rules)
    try {
      if (req.full) await this.readDrops()
      if (this.written?.script === script) {
        if (!req.full) return { changed: false, problems: [] }
        if ((await this.listing()) === this.written.listing) return { changed: false, problems: [] }
        this.log.warn({ table: `inet ${POLICY_TABLE}` }, 'policy table differs from what flatnetd wrote (edited or removed by hand); rewriting it')
      }
      await applyNft(await this.replaceContent(table), `install nftables table inet ${POLICY_TABLE} (${plan.stats.policies} policies, ${plan.stats.rules} rules)`, this.nft)
      this.written = { script, listing: (await this.listing()) ?? '' }
      this.metrics?.policyTableBytes.set(Buffer.byteLength(renderNftTable(table)))
      this.log.debug({ policies: plan.stats.policies, podsSelected: plan.stats.podsSelected, rules: plan.stats.rules }, 'policy table installed')
      return { changed: true, problems: [] }
    } catch (e) {
      this.written = undefined
      return { changed: false, problems: [(e as Error).message] }
    }
  }

  /** One transaction that leaves exactly `table` in place, its base chains and counters kept. */
  private async replaceContent(table: NftTable): Promise<NftTransaction> {
    const tx = new NftTransaction().addTable('inet', POLICY_TABLE).flushTable('inet', POLICY_TABLE)
    const r = await this.nft.run(['-t', '-j', 'list', 'table', 'inet', POLICY_TABLE])
    if (r.code !== 0 && !/No such file or directory/.test(r.stderr)) throw new Error(`list nftables table inet ${POLICY_TABLE}: ${r.stderr.trim() || `nft exit ${r.code}`}`)
    const wanted = new Map(table.chains.map((c) => [c.name, c]))
    for (const item of r.code === 0 ? ((JSON.parse(r.stdout) as { nftables?: Array<Record<string, { name?: string; hook?: string; prio?: number }>> }).nftables ?? []) : []) {
      if (item.set?.name) tx.deleteSet('inet', POLICY_TABLE, item.set.name)
      // A chain this version does not declare, or a base chain hooked otherwise, goes (it is empty now).
      const chain = item.chain
      if (chain?.name) {
        const want = wanted.get(chain.name)
        if (!want || (want.base?.hook ?? undefined) !== chain.hook) tx.deleteChain('inet', POLICY_TABLE, chain.name)
      }
    }
    return tx.declareTable(table)
  }

  /** nft's stateless listing of the table, or undefined when there is none. */
  private async listing(): Promise<string | undefined> {
    const r = await this.nft.run(['-s', 'list', 'table', 'inet', POLICY_TABLE])
    if (r.code === 0) return r.stdout
    if (/No such file or directory/.test(r.stderr)) return undefined
    throw new Error(`list nftables table inet ${POLICY_TABLE}: ${r.stderr.trim() || `nft exit ${r.code}`}`)
  }

  /** The refused new connections per direction, from the table's named counters. */
  private async readDrops(): Promise<void> {
    if (!this.metrics) return
    const r = await this.nft.run(['-j', 'list', 'counters', 'table', 'inet', POLICY_TABLE])
    for (const [direction, counter] of Object.entries(DROP_COUNTERS) as Array<[Direction, string]>) {
      // The counters live as long as the table (a sync keeps them); no table yet: nothing counted.
      this.metrics.policyDrops.set((r.code === 0 ? dropPackets(r.stdout, counter) : undefined) ?? 0, { direction })
    }
  }

  async remove(): Promise<string> {
    const existed = (await this.listing()) !== undefined
    await applyNft(new NftTransaction().removeTable('inet', POLICY_TABLE), `remove nftables table inet ${POLICY_TABLE}`, this.nft)
    this.written = undefined
    return existed ? `nftables table inet ${POLICY_TABLE} removed` : `no nftables table inet ${POLICY_TABLE}`
  }

  status(): ReconcilerStatus {
    return {}
  }
}

function dropPackets(json: string, counter: string): number | undefined {
  try {
    const doc = JSON.parse(json) as { nftables?: Array<{ counter?: { name?: string; packets?: number } }> }
    return doc.nftables?.find((x) => x.counter?.name === counter)?.counter?.packets
  } catch {
    return undefined
  }
}
