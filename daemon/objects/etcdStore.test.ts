// The etcd backend of cluster objects: the store contract on a real etcd (loopback, its own data
// directory), and the key layout under the prefix.
import { randomBytes } from 'node:crypto'
import { Etcd3 } from 'etcd3'
import t from 'tap'
import { startEtcd } from '../datastore/testing/etcdTestServer.js'
import type { DatastoreConfig } from '../datastore/types.js'
import { openWritable, pod, runObjectStoreContract } from './testing/contractSuite.js'

const etcd = await startEtcd()
t.teardown(() => etcd.stop())
const run = randomBytes(4).toString('hex')
let stores = 0
const fresh = (): DatastoreConfig => ({ kind: 'etcd', endpoints: [etcd.endpoint], prefix: `/flatnet-test-${run}/store-${++stores}/`, timeoutMs: 3000 })

t.test('contract', async (t) => runObjectStoreContract(t, fresh))

t.test('one key per object under <prefix>objects/<Kind>/<namespace>/<name>; resourceVersion is its mod revision', async (t) => {
  const cfg = fresh() as DatastoreConfig & { kind: 'etcd'; prefix: string }
  const store = await openWritable(t, cfg)
  const { object } = await store.apply(pod('default', 'a'))
  const client = new Etcd3({ hosts: [etcd.endpoint] })
  t.teardown(() => client.close())
  const keys = Object.keys(await client.getAll().prefix(`${cfg.prefix}objects/`).strings()).sort()
  t.same(keys, [`${cfg.prefix}objects/Namespace/default`, `${cfg.prefix}objects/Namespace/kube-system`, `${cfg.prefix}objects/Pod/default/a`])
  const kv = (await client.get(`${cfg.prefix}objects/Pod/default/a`).exec()).kvs[0]!
  t.equal(object.metadata?.resourceVersion, String(kv.mod_revision))
  t.notOk((JSON.parse(kv.value.toString()) as { metadata: { resourceVersion?: string } }).metadata.resourceVersion, 'not stored in the value')
})
