// Masquerade as nft sees it in the daemon's namespace: the table after start (replacing the
// IPv4-only table of earlier versions), rebuilt when someone edits it, gone with --no-masquerade;
// and --uninstall removing what the daemon installed.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { flatnetBinary, flatnetMissingReason, inNetns, runOk, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { openDatastore } from './datastore/index.js'
import { eventually, flatnetdMissingReason, nodeNamespace, routeLines, startFlatnetd, tempDir } from './testing/harness.js'

const skip = flatnetdMissingReason()

async function nftTable(ns: Netns): Promise<string | undefined> {
  const r = await inNetns(ns, ['nft', 'list', 'table', 'inet', 'flatnet'])
  return r.code === 0 ? r.stdout : undefined
}

async function legacyTable(ns: Netns): Promise<string | undefined> {
  const r = await inNetns(ns, ['nft', 'list', 'table', 'ip', 'flatnet'])
  return r.code === 0 ? r.stdout : undefined
}

async function antispoofTable(ns: Netns): Promise<string | undefined> {
  const r = await inNetns(ns, ['nft', 'list', 'table', 'inet', 'flatnet-antispoof'])
  return r.code === 0 ? r.stdout : undefined
}

const expectedTable = [
  'table inet flatnet {',
  '\tchain postrouting {',
  '\t\ttype nat hook postrouting priority srcnat; policy accept;',
  '\t\tip saddr 10.32.0.0/12 ip daddr != 10.32.0.0/12 meta mark set 0x00000000 masquerade',
  '\t}',
  '}',
  '',
].join('\n')

t.test('masquerade table after start (the IPv4-only table of an earlier version gone), repaired after tampering, removed by --no-masquerade, back when re-enabled', { skip }, async (t) => {
  const dir = tempDir(t, 'dmasq')
  const nss = testNamespaces(t, 'dmasq')
  const ns = await nodeNamespace(nss, '192.168.79.1/24')
  // Someone else's NAT rules in the same namespace must survive everything the daemon does.
  await runOk(['ip', 'netns', 'exec', ns.name, 'nft', 'add table ip other; add chain ip other post { type nat hook postrouting priority 100; }; add rule ip other post counter'])
  // What the previous, IPv4-only version left in force.
  await runOk([
    'ip',
    'netns',
    'exec',
    ns.name,
    'nft',
    'add table ip flatnet; add chain ip flatnet postrouting { type nat hook postrouting priority srcnat; }; add rule ip flatnet postrouting ip saddr 10.32.0.0/12 ip daddr != 10.32.0.0/12 masquerade',
  ])
  const args = [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.79.1',
    '--cluster-cidr',
    '10.32.0.0/12',
    '--datastore-file',
    join(dir, 'nodes.json'),
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    join(dir, 'net.d'),
    '--reconcile-interval',
    '0.5',
  ]
  const d = startFlatnetd(t, ns, args)
  await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
  )
  t.equal(await nftTable(ns), expectedTable, 'exactly one rule: cluster range → outside is masqueraded')
  t.equal(await legacyTable(ns), undefined, 'the table of the earlier version is gone, replaced in the same transaction')
  t.ok(d.logs.some((l) => /IPv4-only table ip flatnet of an earlier version removed/.test(String(l.msg))))

  // A hand edit (an extra rule) is undone by the next pass: the table is rebuilt whole.
  await runOk(['ip', 'netns', 'exec', ns.name, 'nft', 'add rule inet flatnet postrouting ip saddr 10.32.1.0/24 masquerade'])
  await eventually(
    'table rebuilt',
    () => nftTable(ns),
    (x) => x === expectedTable,
  )
  t.equal(await d.stop(), 0)
  t.equal(await nftTable(ns), expectedTable, 'the table stays across a stop (pods keep working)')

  const off = startFlatnetd(t, ns, [...args, '--no-masquerade'])
  await eventually(
    '/readyz 200 without masquerade',
    () => off.http('/readyz'),
    (r) => r.status === 200,
  )
  t.equal(await nftTable(ns), undefined, '--no-masquerade removed the table')
  t.ok(off.logs.some((l) => /table inet flatnet removed/.test(String(l.msg))))
  t.equal(await off.stop(), 0)

  const on = startFlatnetd(t, ns, args)
  await eventually(
    'table back',
    () => nftTable(ns),
    (x) => x === expectedTable,
  )
  t.equal(await on.stop(), 0)
  t.match((await runOk(['ip', 'netns', 'exec', ns.name, 'nft', 'list', 'table', 'ip', 'other'])).stdout, /counter/, 'the other table is untouched')
})

t.test("--uninstall removes the table, the conflist, the installed plugin and the daemon's routes, nothing else", { skip: skip ?? flatnetMissingReason() }, async (t) => {
  const dir = tempDir(t, 'duninst')
  const nss = testNamespaces(t, 'duninst')
  const ns = await nodeNamespace(nss, '192.168.79.1/24')
  const storePath = join(dir, 'nodes.json')
  const store = await openDatastore({ kind: 'file', path: storePath })
  t.teardown(() => store.close())
  await store.claim({ name: 'peer', nodeIP: '192.168.79.2', owner: 'test-peer', clusterCidr: '10.244.0.0/16', prefixLength: 24 })
  await runOk(['ip', '-n', ns.name, 'route', 'add', '10.99.0.0/16', 'via', '192.168.79.254', 'proto', 'static'])
  const binDir = join(dir, 'bin')
  const confDir = join(dir, 'net.d')
  const args = [
    '--node-name',
    'me',
    '--node-ip',
    '192.168.79.1',
    '--datastore-file',
    storePath,
    '--state-dir',
    join(dir, 'state'),
    '--cni-conf-dir',
    confDir,
    '--cni-bin-dir',
    binDir,
    '--reconcile-interval',
    '0.5',
  ]
  const d = startFlatnetd(t, ns, [...args, '--install-cni-binary', flatnetBinary])
  await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
  )
  t.equal(await d.stop(), 0)
  t.ok(existsSync(join(confDir, '10-flatnet.conflist')))
  t.ok(await nftTable(ns))
  t.ok(await antispoofTable(ns))
  t.same(await routeLines(ns), ['10.244.0.0/24 via 192.168.79.2 proto 200', '10.99.0.0/16 via 192.168.79.254 proto static'])
  t.ok(existsSync(join(binDir, 'flatnet')), 'plugin installed')

  const u = startFlatnetd(t, ns, [...args.slice(2), '--uninstall']) // no --node-name needed
  t.equal(await u.exited, 0, 'uninstall exits 0')
  t.equal(await nftTable(ns), undefined, 'table gone')
  t.equal(await antispoofTable(ns), undefined, 'anti-spoofing table gone')
  t.notOk(existsSync(join(confDir, '10-flatnet.conflist')), 'conflist gone')
  t.notOk(existsSync(join(binDir, 'flatnet')), 'plugin gone')
  t.notOk(existsSync(join(binDir, 'flatnet.bundle')))
  t.same(await routeLines(ns), ['10.99.0.0/16 via 192.168.79.254 proto static'], 'its routes gone, the static one kept')
  t.ok(
    (await store.list()).some((n) => n.name === 'me'),
    "the datastore record stays (flatnetctl node remove is the operator's call)",
  )
})
