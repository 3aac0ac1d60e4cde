// net.ipv4.ip_forward in an unprivileged container, where /proc/sys is mounted read-only (what a
// container runtime does without privileged: true). Already 1: nothing to change, the daemon
// works. 0 and not settable: the daemon stays up, not ready with a reason naming the sysctl,
// and retries every pass — ready as soon as someone who can (the node) sets it.
import { join } from 'node:path'
import t from 'tap'
import { run, runOk, sysctl, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { openDatastore } from './datastore/index.js'
import { eventually, flatnetdMissingReason, nodeNamespace, routeLines, startFlatnetd, tempDir, type Teardown } from './testing/harness.js'

/** /readyz lists every reconciler this daemon runs; on a ready node each is in its wanted state. */
const READY_RECONCILERS = ['forwarding', 'routes', 'vxlan', 'conflist', 'policy', 'services'].map((name) => ({ name, ok: true, gates: true }))

const skip = flatnetdMissingReason()

/** A private mount namespace whose /proc/sys is read-only, then exec of the daemon. */
const readOnlyProcSys = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"', 'sh']

async function node(t: Teardown, tag: string, forwarding: '0' | '1'): Promise<{ ns: Netns; args: string[] }> {
  const dir = tempDir(t, tag)
  const ns = await nodeNamespace(testNamespaces(t, tag), '192.168.85.1/24')
  await runOk(['ip', 'netns', 'exec', ns.name, 'sysctl', '-qw', `net.ipv4.ip_forward=${forwarding}`])
  const storePath = join(dir, 'nodes.json')
  const store = await openDatastore({ kind: 'file', path: storePath })
  await store.claim({ name: 'peer', nodeIP: '192.168.85.2', owner: 'test-peer', clusterCidr: '10.244.0.0/16', prefixLength: 24 })
  await store.close()
  const args = [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.85.1',
    '--datastore-file',
    storePath,
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    join(dir, 'net.d'),
    '--reconcile-interval',
    '0.5',
    '--no-masquerade',
    '--no-anti-spoofing',
  ]
  return { ns, args }
}

t.test('the wrapper really makes /proc/sys read-only', { skip }, async (t) => {
  const { ns } = await node(t, 'dsysro', '1')
  const r = await run(['ip', 'netns', 'exec', ns.name, ...readOnlyProcSys, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'])
  t.not(r.code, 0)
  t.match(r.stderr, /Read-only file system/, 'a write fails with EROFS')
})

t.test('read-only /proc/sys with ip_forward already 1: ready, nothing to set', { skip }, async (t) => {
  const { ns, args } = await node(t, 'dsys1', '1')
  const d = startFlatnetd(t, ns, args, 9473, readOnlyProcSys)
  await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  t.same(await routeLines(ns), ['10.244.0.0/24 via 192.168.85.2 proto 200'], 'route to the peer programmed')
  t.notOk(
    d.logs.some((l) => /ip_forward/.test(JSON.stringify(l))),
    'no attempt to write it, no complaint',
  )
  t.equal(await d.stop(), 0)
})

t.test('read-only /proc/sys with ip_forward 0: up, not ready naming the sysctl, retrying; ready once the node sets it', { skip }, async (t) => {
  const { ns, args } = await node(t, 'dsys0', '0')
  const d = startFlatnetd(t, ns, args, 9473, readOnlyProcSys)
  const notReady = await eventually(
    '/readyz names the sysctl',
    () => d.http('/readyz'),
    (r) => r.status === 503 && /ip_forward/.test(r.body),
    20_000,
  )
  t.match(JSON.parse(notReady.body).reason, /set sysctl net\.ipv4\.ip_forward=1: EROFS/, 'reason: the sysctl and the read-only file system')
  const failures = () => d.logs.filter((l) => l.msg === 'reconcile failed' && /ip_forward/.test(JSON.stringify(l.problems))).length
  await eventually('three passes retried it', failures, (n) => n >= 3)
  t.equal(d.exitCode(), undefined, 'still running (no exit, no crash loop)')
  t.equal((await d.http('/healthz')).status, 200, '/healthz 200: alive, a restart would not help')
  t.same(await routeLines(ns), ['10.244.0.0/24 via 192.168.85.2 proto 200'], 'peer routes are programmed all the same')
  t.equal(await sysctl('net.ipv4.ip_forward', ns), '0')

  // The node (outside the container's read-only view) turns forwarding on.
  await runOk(['ip', 'netns', 'exec', ns.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
  const ready = await eventually(
    '/readyz 200 once forwarding is on',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  t.same(JSON.parse(ready.body), { ready: true, node: 'me', subnet: '10.244.1.0/24', reconcilers: READY_RECONCILERS })
  t.equal(await d.stop(), 0)
})

t.test('writable /proc/sys: forwarding turned off by someone while running is turned on again', { skip }, async (t) => {
  const { ns, args } = await node(t, 'dsysrw', '0')
  const d = startFlatnetd(t, ns, args)
  await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  t.equal(await sysctl('net.ipv4.ip_forward', ns), '1', 'set at start')
  await runOk(['ip', 'netns', 'exec', ns.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=0'])
  await eventually(
    'ip_forward back to 1',
    () => sysctl('net.ipv4.ip_forward', ns),
    (v) => v === '1',
  )
  // The value can be seen back before the daemon's log line has crossed its stderr pipe.
  const sets = await eventually(
    'the second set logged',
    async () => d.logs.filter((l) => l.msg === 'set net.ipv4.ip_forward=1').length,
    (n) => n >= 2,
  )
  t.equal(sets, 2, 'set, and set again (logged each time)')
  t.equal(await d.stop(), 0)
})
