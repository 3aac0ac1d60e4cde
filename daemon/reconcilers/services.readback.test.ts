// The services reconciler's bounded read-back, on a real kernel (nft in a namespace of this test)
// with a played clock: every `nft list table` "takes" LIST_MS on it, so a read-back's duration is
// known exactly and the spacing after it (READ_BACK_SPACING × its duration) is crossed on demand.
// What is judged: which nft calls each sync made, and the table the kernel holds (a hand edit left
// alone inside the spacing, repaired after it, after a failure and after a restart).
import t from 'tap'
import { inNetnsOk, testNamespaces } from '../../e2e/helpers/index.js'
import type { NftExecutor } from '../../net/nft.js'
import { createLogger } from '../log.js'
import { DaemonMetrics } from '../metrics.js'
import { nftIn } from '../policy/testing/topology.js'
import type { InputKind } from '../reconcile/contract.js'
import type { ServiceModel } from '../services/model.js'
import { READ_BACK_SPACING, ServicesReconciler, type ServicesView } from './services.js'

const LIST_MS = 1000
const full = { full: true, changed: new Set<InputKind>() }
const partial = { full: false, changed: new Set<InputKind>(['services']) }
const view = { synced: () => true, services: () => [], pods: () => [], endpointSlices: () => [], self: () => undefined } satisfies ServicesView

function service(name: string, clusterIP: string): ServiceModel {
  return {
    namespace: 'x',
    name,
    type: 'ClusterIP',
    clusterIPs: [clusterIP],
    externalIPs: [],
    loadBalancerIPs: [],
    externalTrafficLocal: false,
    internalTrafficLocal: false,
    ports: [{ name: '', protocol: 'TCP', port: 80, endpoints: [{ address: '10.244.1.10', port: 8080, ready: true }] }],
  }
}

/** Real nft in `netns`; each table listing advances the played clock by LIST_MS; `failNextApply` makes the next `nft -f` fail. */
class TimedNft implements NftExecutor {
  now = 0
  lists = 0
  failNextApply = false
  constructor(private readonly inner: NftExecutor) {}
  async run(args: readonly string[], script = '') {
    if (args[0] === '-f' && this.failNextApply) {
      this.failNextApply = false
      return { code: 1, stdout: '', stderr: 'Error: played failure' }
    }
    if (args.includes('list') && args.includes('table')) ((this.now += LIST_MS), this.lists++)
    return this.inner.run(args, script)
  }
}

t.test('a full sync reads back only once READ_BACK_SPACING × the last read-back has passed, and always after a failure or restart', async (t) => {
  const ns = await testNamespaces(t, 'svcscale').create('node')
  const nft = new TimedNft(nftIn(ns.name))
  let models = [service('web', '10.96.0.10')]
  const metrics = new DaemonMetrics()
  const reconciler = () => new ServicesReconciler({ nodeName: 'n1', clusterRanges: ['10.244.0.0/16'] }, () => models, createLogger('fatal'), { metrics, nft, clock: () => nft.now })
  let r = reconciler()
  t.teardown(() => r.remove())
  const sync = async (req: typeof full) => {
    const listsBefore = nft.lists
    const res = await r.sync(view, req)
    return { changed: res.changed, problems: res.problems, lists: nft.lists - listsBefore }
  }
  const elements = async () => (await inNetnsOk(ns, ['nft', 'list', 'map', 'ip', 'flatnet-services', 'service-ips'])).stdout.match(/ : goto /g)?.length ?? 0
  const handEdit = () => inNetnsOk(ns, ['nft', 'flush', 'map', 'ip', 'flatnet-services', 'service-ips'])

  // First sync: both families listed (absent), the ip table written whole and listed again.
  t.same(await sync(full), { changed: true, problems: [], lists: 3 })
  const readBack = 3 * LIST_MS
  t.equal(metrics.servicesReadBackSeconds.get(), readBack / 1000, 'the gauge holds the read-back duration')
  t.equal(await elements(), 1)

  await handEdit()
  nft.now += READ_BACK_SPACING * readBack - 1
  t.same(await sync(full), { changed: false, problems: [], lists: 0 }, 'inside the spacing: a full sync trusts the last write, lists nothing')
  t.equal(await elements(), 0, 'so the hand edit is still in the kernel')

  nft.now += 1
  t.same(await sync(full), { changed: true, problems: [], lists: 3 }, 'the spacing over: the full sync lists, finds the edit, rewrites and lists its write')
  t.equal(await elements(), 1, 'the hand edit is repaired')

  t.same(await sync(full), { changed: false, problems: [], lists: 0 }, 'right after it: trusted again')
  models = [...models, service('api', '10.96.0.11')]
  t.same(await sync(full), { changed: true, problems: [], lists: 0 }, 'a change inside the spacing is written as a difference, as by a partial sync')
  t.equal(await elements(), 2, 'the added Service is in the kernel')

  await handEdit()
  models = [...models, service('db', '10.96.0.12')]
  nft.failNextApply = true
  t.match((await sync(partial)).problems, [/played failure/], 'a write fails')
  t.same(await sync(full), { changed: true, problems: [], lists: 3 }, 'the sync after a failure (the retry) reads back though inside the spacing')
  t.equal(await elements(), 3, 'and repairs the table')

  await handEdit()
  r = reconciler()
  t.same(await sync(full), { changed: true, problems: [], lists: 3 }, 'a restarted reconciler reads back at once')
  t.equal(await elements(), 3, 'and repairs the table')
})
