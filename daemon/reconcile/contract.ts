// The contract every concern of flatnetd fulfils (forwarding, routes, conflist, masquerade; next
// policy, services, VXLAN peers). One concern is one object that owns exactly one thing, computes
// what it wants with pure functions over the cluster view, and applies it in one atomic step. The
// runner (runner.ts) schedules them; main starts the enabled ones and remove()s the disabled ones.

/**
 * Kinds of cluster input a reconciler can need. `subnet`: this node's own held subnet record.
 * `namespaces`, `pods`, `networkpolicies`: cluster objects (daemon/objects/view.ts). `podRoutes`:
 * the host routes the plugin makes for this node's pods, read from the kernel at each sync (always
 * listed; main.ts reports their changes).
 */
export type InputKind = 'nodes' | 'subnet' | 'namespaces' | 'pods' | 'networkpolicies' | 'services' | 'endpointslices' | 'podRoutes'

/** What a reconciler may read: per kind, whether it has been fully listed at least once. */
export interface InputSource {
  synced(kind: InputKind): boolean
}

export interface SyncRequest {
  /**
   * Full: compare with the kernel/disk and rebuild what differs (the periodic tick, a retry
   * after a failure, the first sync). Partial: only `changed` inputs changed since the last
   * successful sync; a reconciler may diff against what it last wrote instead of reading back.
   */
  full: boolean
  changed: ReadonlySet<InputKind>
}

export interface SyncResult {
  /** Something in the kernel or on disk was changed by this sync. */
  changed: boolean
  /** What went wrong, each naming the operation and the object; empty when the sync succeeded. */
  problems: string[]
}

export interface ReconcilerStatus {
  /** Why this concern is not (yet) in the state it wants, beyond the runner's own view of its syncs. */
  reason?: string
  /** Things an operator should see that do not make the node not ready (e.g. a blocked peer route). */
  warnings?: string[]
}

export interface Reconciler<View extends InputSource = InputSource> {
  /** One word: log field, metric label, /readyz prefix. */
  readonly name: string
  /** What it owns, in one sentence (logged at start, printed by --uninstall). */
  readonly owns: string
  /** Cluster inputs it needs; sync() is never called before all of them are fully listed. */
  readonly inputs: readonly InputKind[]
  /** Whether its failures make the node not ready (a written decision per concern). */
  readonly gatesReadiness: boolean
  /**
   * A dataplane concern: while the configuration is refused (a changed cluster range, a check of
   * the node's configuration failing) it is not synced at all, so the last good state stays in
   * force rather than being rewritten for a configuration the node does not accept.
   */
  readonly holdsWhileRefused: boolean
  /**
   * Computes desired state and applies it in one atomic step, never flushing first. It must
   * forget partial-sync memory when it fails, so the next sync rebuilds from what is there.
   */
  sync(view: View, req: SyncRequest): Promise<SyncResult>
  /** Deletes everything it owns (concern switched off, --uninstall); returns what it removed, for the log. */
  remove(): Promise<string>
  status(): ReconcilerStatus
}

/** A readiness condition outside the reconcilers: the cluster view, the subnet holder, configuration checks. */
export interface ReadinessGate {
  readonly name: string
  /** Why the node is not ready because of it; undefined when fine. */
  problem(): string | undefined
  /**
   * Set while this node's configuration is refused or not yet confirmed (e.g. `configuration
   * refused: …`): dataplane reconcilers then keep the last good state (see
   * Reconciler.holdsWhileRefused). Undefined when the configuration is accepted.
   */
  refusal?(): string | undefined
}
