// The anti-spoofing table's pod sources on a real kernel: a dual-stack node namespace running
// flatnetd with a periodic sync of an hour, so that only the route notifications can be what
// updates them; pods wired by hand as the plugin wires them (testing/handPods.ts).
// - a pod wired while flatnetd runs has its `host veth . address` pairs in the sets within
//   seconds, and loses them when its veth goes;
// - with the sets filled, forging a neighbour's address is still dropped in each family, and the
//   pod's own traffic passes;
// - a pod wired while flatnetd is down (not in the sets) is protected by the fib rule alone, and
//   its pairs appear once flatnetd is back.
import { join } from 'node:path'
import t from 'tap'
import { inNetns, runOk, testNamespaces, type Netns } from '../e2e/helpers/index.js'
import { eventually, flatnetdMissingReason, nodeNamespace, startFlatnetd, tempDir } from './testing/harness.js'
import { countSources, receivedFrom, wireHandPod } from './testing/handPods.js'

const skip = flatnetdMissingReason()

async function ping(ns: Netns, dst: string, src: string, count = 2): Promise<number> {
  const argv = ['ping', dst.includes(':') ? '-6' : '-4', '-n', '-q', '-c', String(count), '-i', '0.2', '-W', '1', '-I', src, dst]
  return (await inNetns(ns, argv)).code
}

/** The pod-sources elements of one family as `host veth . address`, sorted. */
async function podSources(node: Netns, family: 4 | 6): Promise<string[]> {
  const r = await runOk(['ip', 'netns', 'exec', node.name, 'nft', '-j', 'list', 'set', 'inet', 'flatnet-antispoof', `pod-sources-v${family}`])
  const doc = JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: Array<{ concat: [string, string] }> } }> }
  const elem = doc.nftables.find((x) => x.set)?.set?.elem ?? []
  return elem.map((e) => e.concat.join(' . ')).sort()
}

const GATEWAYS = { v4: '10.244.0.1', v6: 'fd00:10:244::1' }
const POD = {
  a: ['10.244.0.5', 'fd00:10:244::5'],
  b: ['10.244.0.6', 'fd00:10:244::6'],
  c: ['10.244.0.7', 'fd00:10:244::7'],
  d: ['10.244.0.8', 'fd00:10:244::8'],
}
const VETH = { a: 'fn00000000000a0', b: 'fn00000000000b0', c: 'fn00000000000c0', d: 'fn00000000000d0' }

t.test('anti-spoofing pod sources follow the host routes of pods; verdicts are the fib rule’s', { skip }, async (t) => {
  const dir = tempDir(t, 'aspo')
  const nss = testNamespaces(t, 'aspo')
  const node = await nodeNamespace(nss, '192.168.78.1/24', 'node')
  await runOk(['ip', '-n', node.name, 'addr', 'add', 'fd00:78::1/64', 'dev', 'lan0', 'nodad'])
  // IPv4's rp_filter would drop forged IPv4 sources by itself: off, so the nftables table is what is proven.
  await runOk(['ip', 'netns', 'exec', node.name, 'sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'])
  const args = [
    ...['--node-name', 'me', '--datastore-file', join(dir, 'nodes.json'), '--state-dir', join(dir, 'state'), '--cni-conf-dir', join(dir, 'net.d')],
    ...['--reconcile-interval', '3600', '--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56', '--node-prefix-length', '24,64', '--node-ip', '192.168.78.1,fd00:78::1'],
  ]
  let d = startFlatnetd(t, node, args)
  await eventually(
    '/readyz 200',
    () => d.http('/readyz'),
    (r) => r.status === 200,
  )
  t.same([await podSources(node, 4), await podSources(node, 6)], [[], []], 'no pods, no pod sources')

  const a = await wireHandPod(node, await nss.create('a'), VETH.a, POD.a, GATEWAYS)
  const b = await wireHandPod(node, await nss.create('b'), VETH.b, POD.b, GATEWAYS)
  const c = await wireHandPod(node, await nss.create('c'), VETH.c, POD.c, GATEWAYS)
  const pairs = (f: 0 | 1, ...pods: Array<'a' | 'b' | 'c' | 'd'>) => pods.map((p) => `${VETH[p]} . ${POD[p][f]}`).sort()
  await eventually(
    "the three pods' sources, learned from their host routes as they were added",
    async () => [await podSources(node, 4), await podSources(node, 6)],
    (v) => JSON.stringify(v) === JSON.stringify([pairs(0, 'a', 'b', 'c'), pairs(1, 'a', 'b', 'c')]),
    10_000,
  )

  for (const forged of POD.b) await runOk(['ip', '-n', a.ns.name, 'addr', 'add', `${forged}/${forged.includes(':') ? 128 : 32}`, 'dev', 'eth0', ...(forged.includes(':') ? ['nodad'] : [])])
  await countSources(c.ns, [...POD.a, ...POD.b, ...POD.d])
  for (const f of [0, 1] as const) {
    const fam = `IPv${f === 0 ? 4 : 6}`
    t.not(await ping(a.ns, POD.c[f], POD.b[f]), 0, `${fam}: a forging b's address (both in the sets) gets no answer`)
    t.equal(await receivedFrom(c.ns, POD.b[f]), 0, `${fam}: and c never received it`)
    t.equal(await ping(a.ns, POD.c[f], POD.a[f]), 0, `${fam}: a's own address works`)
    t.ok((await receivedFrom(c.ns, POD.a[f])) > 0)
  }

  await runOk(['ip', '-n', node.name, 'link', 'del', b.hostVeth])
  await eventually(
    "b's sources gone with its veth",
    async () => [await podSources(node, 4), await podSources(node, 6)],
    (v) => JSON.stringify(v) === JSON.stringify([pairs(0, 'a', 'c'), pairs(1, 'a', 'c')]),
    10_000,
  )

  t.equal(await d.stop('SIGKILL'), 137)
  const pd = await wireHandPod(node, await nss.create('d'), VETH.d, POD.d, GATEWAYS)
  for (const forged of POD.a) await runOk(['ip', '-n', pd.ns.name, 'addr', 'add', `${forged}/${forged.includes(':') ? 128 : 32}`, 'dev', 'eth0', ...(forged.includes(':') ? ['nodad'] : [])])
  t.same([await podSources(node, 4), await podSources(node, 6)], [pairs(0, 'a', 'c'), pairs(1, 'a', 'c')], 'flatnetd down: d is not in the sets')
  const fromA = await Promise.all(POD.a.map((s) => receivedFrom(c.ns, s)))
  for (const f of [0, 1] as const) {
    const fam = `IPv${f === 0 ? 4 : 6}`
    t.not(await ping(pd.ns, POD.c[f], POD.a[f]), 0, `${fam}: d, not in the sets, forging a's address gets no answer`)
    t.equal(await receivedFrom(c.ns, POD.a[f]), fromA[f], `${fam}: and c received nothing more from a's address`)
    t.equal(await ping(pd.ns, POD.c[f], POD.d[f]), 0, `${fam}: d's own address works`)
    t.ok((await receivedFrom(c.ns, POD.d[f])) > 0)
  }

  d = startFlatnetd(t, node, args)
  await eventually(
    "flatnetd back: d's sources added by its first sync",
    async () => [await podSources(node, 4), await podSources(node, 6)],
    (v) => JSON.stringify(v) === JSON.stringify([pairs(0, 'a', 'c', 'd'), pairs(1, 'a', 'c', 'd')]),
  )
  t.equal(await d.stop(), 0)
})
