// flatnetd's dataplane per family, on a real kernel: a dual-stack node namespace running the
// daemon, pods wired by hand as the plugin wires them (testing/handPods.ts), and an "outside"
// namespace on a link of its own. Proven by packets and counters, in each family:
// - forwarding: IPv6 forwarding turned on only with an IPv6 range, and a /readyz warning for an
//   IPv6 default route learned from router advertisements on an interface with accept_ra=1;
// - masquerade: pod → outside arrives from the node's address of that family, pod → pod from the
//   pod's own;
// - anti-spoofing: a pod forging a neighbour pod's or an outside address is dropped, its own
//   traffic and its neighbour discovery (including DAD from the unspecified address) pass, and
//   with --no-anti-spoofing the same forged packets do arrive (the rule is what stops them).
// And the single-family daemons: IPv4 only leaves IPv6 forwarding off; IPv6 only leaves IPv4
// forwarding as it was, masquerades IPv6 only and routes a peer's IPv6 subnet.
import { join } from 'node:path'
import t from 'tap'
import { inNetns, runOk, sysctl, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { openDatastore } from './datastore/index.js'
import { eventually, flatnetdMissingReason, nodeNamespace, startFlatnetd, tempDir } from './testing/harness.js'
import { countSources, receivedFrom, wireHandPod } from './testing/handPods.js'

const skip = flatnetdMissingReason()

/** Exit code of a ping from `ns` (0: at least one answer). */
async function ping(ns: Netns, dst: string, src?: string, count = 3): Promise<number> {
  const argv = ['ping', dst.includes(':') ? '-6' : '-4', '-n', '-q', '-c', String(count), '-i', '0.2', '-W', '2', ...(src ? ['-I', src] : []), dst]
  return (await inNetns(ns, argv)).code
}

async function nftList(ns: Netns, family: string, name: string): Promise<string | undefined> {
  const r = await inNetns(ns, ['nft', 'list', 'table', family, name])
  return r.code === 0 ? r.stdout : undefined
}

function daemonArgs(dir: string, extra: string[]): string[] {
  return ['--node-name', 'me', '--datastore-file', join(dir, 'nodes.json'), '--state-dir', join(dir, 'state'), '--cni-conf-dir', join(dir, 'net.d'), '--reconcile-interval', '0.5', ...extra]
}

const POD_A = ['10.244.0.5', 'fd00:10:244::5']
const POD_B = ['10.244.0.6', 'fd00:10:244::6']
const POD_C = ['10.244.0.7', 'fd00:10:244::7']
const OUTSIDE = ['192.168.91.2', 'fd00:91::2']
const NODE_OUT = ['192.168.91.1', 'fd00:91::1']
const FORGED_OUTSIDE = ['192.168.91.77', 'fd00:91::77']

t.test('dual stack: forwarding, masquerade and anti-spoofing per family, by packets', { skip }, async (t) => {
  const dir = tempDir(t, 'dfam')
  const nss = testNamespaces(t, 'dfam')
  const node = await nodeNamespace(nss, '192.168.79.1/24', 'node')
  const ip = (...a: string[]) => runOk(['ip', '-n', node.name, ...a])
  await ip('addr', 'add', 'fd00:79::1/64', 'dev', 'lan0', 'nodad')
  // IPv4's rp_filter could drop forged IPv4 sources by itself: off here, so the nftables rule is what is proven.
  await runOk(['ip', 'netns', 'exec', node.name, 'sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'])
  t.equal(await sysctl('net.ipv6.conf.all.forwarding', node), '0', 'a new namespace starts with IPv6 forwarding off')
  // A default route as the kernel installs it from a router advertisement, on lan0 (accept_ra=1 by default).
  await ip('-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'lan0', 'proto', 'ra')

  // The outside: its own link, no route to any pod range.
  const outside = await nss.create('out')
  await ip('link', 'add', 'out0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside.name)
  await ip('addr', 'add', `${NODE_OUT[0]}/24`, 'dev', 'out0')
  await ip('addr', 'add', `${NODE_OUT[1]}/64`, 'dev', 'out0', 'nodad')
  await ip('link', 'set', 'out0', 'up')
  await runOk(['ip', '-n', outside.name, 'addr', 'add', `${OUTSIDE[0]}/24`, 'dev', 'eth0'])
  await runOk(['ip', '-n', outside.name, 'addr', 'add', `${OUTSIDE[1]}/64`, 'dev', 'eth0', 'nodad'])
  await runOk(['ip', '-n', outside.name, 'link', 'set', 'eth0', 'up'])

  const gateways = { v4: '10.244.0.1', v6: 'fd00:10:244::1' }
  const a = await wireHandPod(node, await nss.create('a'), 'fn00000000000a0', POD_A, gateways)
  await wireHandPod(node, await nss.create('b'), 'fn00000000000b0', POD_B, gateways)
  const c = await wireHandPod(node, await nss.create('c'), 'fn00000000000c0', POD_C, gateways)

  const args = daemonArgs(dir, ['--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56', '--node-prefix-length', '24,64', '--node-ip', '192.168.79.1,fd00:79::1'])
  const d = startFlatnetd(t, node, args)
  const ready = await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    30_000,
  )

  t.test('forwarding: both families on; the RA-learned default route is a warning naming lan0 and the fix', async (t) => {
    t.equal(await sysctl('net.ipv4.ip_forward', node), '1')
    t.equal(await sysctl('net.ipv6.conf.all.forwarding', node), '1')
    const forwarding = (JSON.parse(ready.body) as { reconcilers: Array<{ name: string; warnings?: string[] }> }).reconcilers.find((r) => r.name === 'forwarding')
    t.match(forwarding?.warnings, [/IPv6 default route via fe80::1 dev lan0 is learned from router advertisements with accept_ra=1.*net\.ipv6\.conf\.lan0\.accept_ra=2/])
    t.equal(await sysctl('net.ipv6.conf.lan0.accept_ra', node), '1', 'accept_ra left as the operator set it')
    t.ok(d.logs.some((l) => l.level === 'warn' && /learned from router advertisements/.test(String(l.msg))))
  })

  t.test('masquerade: one rule per family in inet flatnet; pod → outside from the node address, pod → pod from the pod', async (t) => {
    const table = await nftList(node, 'inet', 'flatnet')
    t.match(
      table,
      /ip saddr 10\.244\.0\.0\/16 ip daddr != 10\.244\.0\.0\/16 meta mark set 0x00000000 masquerade\n\t\tip6 saddr fd00:10:244::\/56 ip6 daddr != fd00:10:244::\/56 meta mark set 0x00000000 masquerade\n/,
    )
    await countSources(outside, [...NODE_OUT, ...POD_A])
    await countSources(c.ns, POD_A)
    for (const f of [0, 1]) {
      const fam = `IPv${f === 0 ? 4 : 6}`
      t.equal(await ping(a.ns, OUTSIDE[f]!), 0, `${fam}: pod → outside answered`)
      t.ok((await receivedFrom(outside, NODE_OUT[f]!)) > 0, `${fam}: the outside saw the node's address ${NODE_OUT[f]}`)
      t.equal(await receivedFrom(outside, POD_A[f]!), 0, `${fam}: and never the pod's`)
      t.equal(await ping(a.ns, POD_C[f]!), 0, `${fam}: pod → pod answered`)
      t.ok((await receivedFrom(c.ns, POD_A[f]!)) > 0, `${fam}: the other pod saw the sender's own address`)
    }
  })

  t.test("anti-spoofing: a forged neighbour's or outside source is dropped in each family; own traffic and neighbour discovery pass", async (t) => {
    t.ok(await nftList(node, 'inet', 'flatnet-antispoof'))
    for (const forged of [...POD_B, ...FORGED_OUTSIDE])
      await runOk(['ip', '-n', a.ns.name, 'addr', 'add', `${forged}/${forged.includes(':') ? 128 : 32}`, 'dev', 'eth0', ...(forged.includes(':') ? ['nodad'] : [])])
    await countSources(c.ns, [...POD_A, ...POD_B, ...FORGED_OUTSIDE])
    for (const f of [0, 1]) {
      const fam = `IPv${f === 0 ? 4 : 6}`
      t.not(await ping(a.ns, POD_C[f]!, POD_B[f]!, 2), 0, `${fam}: forging neighbour B's address gets no answer`)
      t.equal(await receivedFrom(c.ns, POD_B[f]!), 0, `${fam}: and C never received it`)
      t.not(await ping(a.ns, POD_C[f]!, FORGED_OUTSIDE[f]!, 2), 0, `${fam}: forging an outside address gets no answer`)
      t.equal(await receivedFrom(c.ns, FORGED_OUTSIDE[f]!), 0, `${fam}: and C never received it`)
      t.equal(await ping(a.ns, POD_C[f]!, POD_A[f]!), 0, `${fam}: its own address still works`)
      t.ok((await receivedFrom(c.ns, POD_A[f]!)) > 0)
    }
    // DAD: a solicitation from the unspecified address ::, seen by the node after the anti-spoofing chain.
    await runOk(['ip', 'netns', 'exec', node.name, 'nft', '-f', '-'], {
      input: 'table inet fntnd {\n\tchain pre {\n\t\ttype filter hook prerouting priority 0; policy accept;\n\t\tip6 saddr :: icmpv6 type nd-neighbor-solicit counter\n\t}\n}\n',
    })
    await runOk(['ip', 'netns', 'exec', a.ns.name, 'sysctl', '-qw', 'net.ipv6.conf.eth0.accept_dad=1'])
    await runOk(['ip', '-n', a.ns.name, 'addr', 'add', 'fd00:10:244::55/128', 'dev', 'eth0'])
    await eventually(
      'the DAD solicitation passed the anti-spoofing chain',
      async () => (await runOk(['ip', 'netns', 'exec', node.name, 'nft', 'list', 'table', 'inet', 'fntnd'])).stdout,
      (text) => /counter packets [1-9]/.test(text),
      5000,
    )
    const neigh = (await runOk(['ip', '-n', node.name, '-6', 'neigh', 'show', 'dev', a.hostVeth])).stdout
    t.match(neigh, /fd00:10:244::5 lladdr/, "the node resolved the pod's IPv6 address by neighbour discovery")
  })

  t.test('--no-anti-spoofing removes the table, and the same forged packets then arrive', async (t) => {
    t.equal(await d.stop(), 0)
    const off = startFlatnetd(t, node, [...args, '--no-anti-spoofing'])
    await eventually(
      '/readyz 200 without anti-spoofing',
      () => off.http('/readyz'),
      (r) => r.status === 200,
      30_000,
    )
    t.equal(await nftList(node, 'inet', 'flatnet-antispoof'), undefined)
    await countSources(c.ns, [...POD_B, ...FORGED_OUTSIDE])
    for (const f of [0, 1]) {
      await ping(a.ns, POD_C[f]!, POD_B[f]!, 2)
      await ping(a.ns, POD_C[f]!, FORGED_OUTSIDE[f]!, 2)
      t.ok((await receivedFrom(c.ns, POD_B[f]!)) > 0, `IPv${f === 0 ? 4 : 6}: without the rule the forged neighbour source reaches C`)
      t.ok((await receivedFrom(c.ns, FORGED_OUTSIDE[f]!)) > 0, `IPv${f === 0 ? 4 : 6}: and so does the forged outside source`)
    }
    t.equal(await off.stop(), 0)
  })
})

t.test('IPv4 only: IPv6 forwarding is left off, and the masquerade table holds the IPv4 rule only', { skip }, async (t) => {
  const dir = tempDir(t, 'dfam4')
  const node = await nodeNamespace(testNamespaces(t, 'dfam4'), '192.168.79.1/24')
  const d = startFlatnetd(t, node, daemonArgs(dir, ['--node-ip', '192.168.79.1']))
  await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    30_000,
  )
  t.equal(await sysctl('net.ipv6.conf.all.forwarding', node), '0')
  t.equal(await sysctl('net.ipv4.ip_forward', node), '1')
  const table = await nftList(node, 'inet', 'flatnet')
  t.match(table, /ip saddr 10\.244\.0\.0\/16 ip daddr != 10\.244\.0\.0\/16 meta mark set 0x00000000 masquerade/)
  t.notMatch(table, /ip6/)
  t.equal(await d.stop(), 0)
})

t.test('IPv6 only: IPv6 forwarding on, IPv4 forwarding untouched, an IPv6 masquerade rule only, IPv6 peer routes', { skip }, async (t) => {
  const dir = tempDir(t, 'dfam6')
  const node = await nodeNamespace(testNamespaces(t, 'dfam6'), '192.168.79.1/24')
  await runOk(['ip', '-n', node.name, 'addr', 'add', 'fd00:79::1/64', 'dev', 'lan0', 'nodad'])
  await runOk(['ip', 'netns', 'exec', node.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=0'])
  const store = await openDatastore({ kind: 'file', path: join(dir, 'nodes.json') })
  t.teardown(() => store.close())
  await store.claim({ name: 'peer', nodeIP: 'fd00:79::2', owner: 'test-peer', clusterCidr: 'fd00:10:244::/56', prefixLength: 64 })
  const d = startFlatnetd(t, node, daemonArgs(dir, ['--cluster-cidr', 'fd00:10:244::/56', '--node-ip', 'fd00:79::1', '--service-cidr', 'fd00:96::/112']))
  await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
    30_000,
  )
  t.equal(await sysctl('net.ipv6.conf.all.forwarding', node), '1')
  t.equal(await sysctl('net.ipv4.ip_forward', node), '0', 'no IPv4 range: IPv4 forwarding left as it was')
  const table = await nftList(node, 'inet', 'flatnet')
  t.match(table, /ip6 saddr fd00:10:244::\/56 ip6 daddr != fd00:10:244::\/56 meta mark set 0x00000000 masquerade/)
  t.notMatch(table, /\bip saddr/)
  const routes6 = (await runOk(['ip', '-n', node.name, '-6', 'route', 'show', 'proto', '200'])).stdout.trim()
  t.equal(routes6, 'fd00:10:244::/64 via fd00:79::2 dev lan0 metric 1024 pref medium', "the peer's IPv6 subnet via its IPv6 address")
  t.equal(await d.stop(), 0)
})
