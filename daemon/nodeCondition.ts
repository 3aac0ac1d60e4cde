// Tells Kubernetes this node's pod network is up — the Node's NetworkUnavailable condition to
// False — once routes to the peers are in place: the scheduler keeps pods off a node while the
// condition is True. Backends without Nodes (file, etcd) have no such condition. A failure is
// retried after the next successful routes sync.
import type { Logger } from 'pino'
import { hasNodeNetworkCondition, type Datastore } from './datastore/index.js'
import { errField } from './log.js'

export class NodeConditionMarker {
  private marked = false
  private busy = false

  constructor(
    private readonly nodeName: string,
    private readonly datastore: () => Datastore | undefined,
    private readonly log: Logger,
    private readonly onError: (op: string) => void,
  ) {}

  /** Call after a successful routes sync; writes the condition once per daemon run. */
  async routesInPlace(): Promise<void> {
    const ds = this.datastore()
    if (this.marked || this.busy || !ds || !hasNodeNetworkCondition(ds)) return
    this.busy = true
    try {
      const changed = await ds.markNetworkAvailable(this.nodeName)
      this.marked = true
      if (changed) this.log.info({ node: this.nodeName }, 'node condition NetworkUnavailable set to False')
    } catch (e) {
      this.onError('mark network available')
      this.log.warn({ err: errField(e) }, 'could not set the node condition NetworkUnavailable=False; retrying after the next routes sync')
    } finally {
      this.busy = false
    }
  }
}
