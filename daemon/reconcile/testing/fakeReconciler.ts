// Stand-ins for the runner's unit tests: a view whose inputs a test marks listed, and a
// reconciler whose syncs the test holds, fails or lets through, recording every request.
// Both implement the product interfaces (checked at compile time).
import type { InputKind, InputSource, Reconciler, ReconcilerStatus, SyncRequest, SyncResult } from '../contract.js'

export class FakeView implements InputSource {
  readonly listed = new Set<InputKind>()
  synced(kind: InputKind): boolean {
    return this.listed.has(kind)
  }
}

interface Held {
  release(result?: Partial<SyncResult>): void
}

export class FakeReconciler implements Reconciler<FakeView> {
  readonly owns: string
  /** Every sync request, in order. */
  readonly requests: SyncRequest[] = []
  /** Problems the next syncs return, one entry per sync (then success). */
  readonly failures: string[][] = []
  /** When true, syncs wait until the test releases them (see held). */
  hold = false
  readonly held: Held[] = []
  statusReason: string | undefined
  removed = 0

  constructor(
    readonly name: string,
    readonly inputs: readonly InputKind[] = [],
    readonly gatesReadiness = true,
    readonly holdsWhileRefused = false,
  ) {
    this.owns = `the fake state of ${name}`
  }

  get syncs(): number {
    return this.requests.length
  }

  async sync(_view: FakeView, req: SyncRequest): Promise<SyncResult> {
    this.requests.push({ full: req.full, changed: new Set(req.changed) })
    const problems = this.failures.shift() ?? []
    if (!this.hold) return { changed: false, problems }
    return new Promise<SyncResult>((resolve) => this.held.push({ release: (r) => resolve({ changed: false, problems, ...r }) }))
  }

  async remove(): Promise<string> {
    this.removed++
    return 'removed'
  }

  status(): ReconcilerStatus {
    return this.statusReason ? { reason: this.statusReason } : {}
  }
}

const _reconciler: Reconciler<FakeView> = new FakeReconciler('check')
const _view: InputSource = new FakeView()
void _reconciler
void _view
