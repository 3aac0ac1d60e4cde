// The lab's per-family e2e proof (test-only; flatnetctl does not import it): one lab of a family
// and a datastore, built and checked through dist/bin/flatnetctl, judged on the kernel's state
// (addresses, routes, DAD flags) and on `lab check --json`, then removed.
import { existsSync } from 'node:fs'
import type { Test } from 'tap'
import type { IpFamily } from '../../ipam/cidr.js'
import type { CheckReport, LabStatus } from '../index.js'
import { ETCD_BINARY } from '../etcd.js'
import { runOk } from '../exec.js'
import { interfaceAddresses, peerRoutes, byDestination, type PeerRoute } from '../kernelView.js'
import { familiesOf, type LabIpFamily } from '../layout.js'
import { flatnetctl, labForTest, labNamespaces, labProcesses, labSkipReason } from './testLabs.js'

export function familyLabSkip(datastore: 'file' | 'etcd'): string | false {
  return labSkipReason() || (datastore === 'etcd' && !existsSync(ETCD_BINARY) ? `${ETCD_BINARY} missing: run scripts/install-deps.sh` : false)
}

function parse<T>(stdout: string, what: string): T {
  try {
    return JSON.parse(stdout) as T
  } catch {
    throw new Error(`${what}: not JSON: ${stdout.slice(0, 500)}`)
  }
}

const familyOf = (text: string): IpFamily => (text.includes(':') ? 6 : 4)
const HOST_PREFIX: Record<IpFamily, number> = { 4: 32, 6: 128 }
const NODE_SUBNET: Record<IpFamily, RegExp> = { 4: /^10\.244\.\d+\.0\/24$/, 6: /^fd00:10:244:[0-9a-f]{0,2}::\/64$|^fd00:10:244::\/64$/ }

/** `ip -6 address show tentative` on the pod's eth0: what is still waiting for DAD (nothing should). */
async function tentativeAddresses(netns: string): Promise<string[]> {
  const { stdout } = await runOk(['ip', '-n', netns, '-6', '-j', 'address', 'show', 'dev', 'eth0', 'tentative'], { what: `tentative addresses in ${netns}` })
  const raw = JSON.parse(stdout.trim() || '[]') as Array<{ addr_info?: Array<{ local: string }> }>
  return raw.flatMap((l) => (l.addr_info ?? []).map((a) => a.local))
}

/**
 * `lab up --ip-family F --datastore D` with 2 nodes × 2 pods, then: node subnets and pod addresses
 * of every family in order, in the kernel; peer routes of every family; the whole matrix of `lab
 * check` green in every family, each probe carrying its family; a node added later joins in every
 * family; `lab down` leaves nothing.
 */
export async function proveFamilyLab(t: Test, ipFamily: LabIpFamily, datastore: 'file' | 'etcd'): Promise<void> {
  const families = familiesOf(ipFamily)
  // Lab names are letters and digits, test tags letters only: vfourfile, vsixetcd, dualfile…
  const tag = { ipv4: 'vfour', ipv6: 'vsix', dual: 'dual' }[ipFamily]
  const name = labForTest(t, `${tag}${datastore}`)
  const up = await flatnetctl(['lab', 'up', '--name', name, '--nodes', '2', '--pods-per-node', '2', '--ip-family', ipFamily, '--datastore', datastore])
  t.equal(up.code, 0, `lab up --ip-family ${ipFamily} --datastore ${datastore} succeeds: ${up.stderr}`)
  if (up.code !== 0) return

  const status = parse<LabStatus>((await flatnetctl(['lab', 'status', '--name', name, '--json'])).stdout, 'lab status --json')
  t.equal(status.ipFamily, ipFamily)
  t.same(status.clusterCidrs.map(familyOf), families, 'one cluster range per family, in order')
  t.equal(status.datastore.kind, datastore)
  for (const node of status.nodes) {
    t.same(node.subnets.map(familyOf), families, `${node.name}: one subnet per family, in cluster-range order (${node.subnets.join(', ')})`)
    for (const subnet of node.subnets) t.match(subnet, NODE_SUBNET[familyOf(subnet)], `${node.name}: ${subnet} is a node subnet of its cluster range`)
    t.same(node.addresses.map(familyOf), families, `${node.name}: an address per family`)
    const want: PeerRoute[] = families.flatMap((f) =>
      status.nodes
        .filter((n) => n !== node)
        .map((n) => ({ dst: n.subnets.find((s) => familyOf(s) === f)!, gateway: n.addresses.find((a) => familyOf(a) === f)! }))
        .sort(byDestination),
    )
    t.same(await peerRoutes(node.namespace), want, `${node.name}: a proto-200 route to each peer's subnet of each family via its address of that family`)
  }
  for (const n of families) {
    const subnets = status.nodes.map((node) => node.subnets.find((s) => familyOf(s) === n))
    t.equal(new Set(subnets).size, status.nodes.length, `IPv${n}: distinct node subnets`)
  }
  for (const pod of status.pods) {
    t.same(pod.addresses.map(familyOf), families, `${pod.name}: one address per range, in the conflist's order (${pod.addresses.join(', ')})`)
    for (const f of families) {
      const address = pod.addresses.find((a) => familyOf(a) === f)!
      t.same(await interfaceAddresses(pod.namespace, 'eth0', f), [`${address}/${HOST_PREFIX[f]}`], `${pod.name}: the kernel gave eth0 ${address}/${HOST_PREFIX[f]}`)
    }
    if (families.includes(6)) t.same(await tentativeAddresses(pod.namespace), [], `${pod.name}: no IPv6 address waits for DAD`)
  }

  const check = await flatnetctl(['lab', 'check', '--name', name, '--json'])
  t.equal(check.code, 0, `lab check exits 0: ${check.stderr}`)
  const report = parse<CheckReport>(check.stdout, 'lab check --json')
  t.same(report.families, families)
  t.equal(report.ok, true, 'every requirement holds in every family')
  const totals = Object.fromEntries(report.requirements.map((r) => [`${r.id}${r.family ? `/${r.family}` : ''}`, `${r.passed}/${r.total}`]))
  const perFamily = { 'pod-pod-same-node': 4, 'pod-pod-across-nodes': 8, 'node-pod': 8, 'pod-node': 8, 'source-preserved': 12, 'own-ip': 4, localhost: 4, masquerade: 4 }
  t.same(
    totals,
    {
      'daemons-ready': '2/2',
      ...Object.fromEntries(Object.entries(perFamily).flatMap(([id, n]) => families.map((f) => [`${id}/${f}`, `${n}/${n}`]))),
    },
    'every row of every family proven, every pair probed',
  )
  t.equal(report.probes.length, 32 * families.length, '32 connections per family')
  for (const f of families) {
    const probes = report.probes.filter((p) => p.family === f)
    t.ok(
      probes.every((p) => familyOf(p.toAddress) === f && p.ok),
      `IPv${f}: every probe went to an IPv${f} address and connected`,
    )
    const podAddress = new Map(status.pods.map((p) => [p.name, p.addresses.find((a) => familyOf(a) === f)]))
    const nodeAddress = new Map(status.nodes.map((n) => [n.name, n.addresses.find((a) => familyOf(a) === f)]))
    const podToPod = probes.filter((p) => podAddress.has(p.from) && podAddress.has(p.to))
    t.equal(podToPod.length, 12)
    t.ok(
      podToPod.every((p) => p.sourceSeen === podAddress.get(p.from)),
      `IPv${f}: every pod→pod connection arrived from the sender's own pod address`,
    )
    const out = probes.filter((p) => p.to === 'outside')
    t.ok(out.length === 4 && out.every((p) => p.sourceSeen === nodeAddress.get(status.pods.find((x) => x.name === p.from)!.node)), `IPv${f}: the outside saw every pod as its node's IPv${f} address`)
  }

  const human = await flatnetctl(['lab', 'check', '--name', name])
  t.equal(human.code, 0)
  t.match(human.stdout, new RegExp(`all ${datastore === 'file' ? 15 : 9} requirements hold in ${families.map((f) => `IPv${f}`).join(' and ')}`))
  if (families.length === 2) t.match(human.stdout, /^✓\s+pod → pod across nodes\s+8\/8\s+8\/8$/m, 'both families side by side')

  // A node joining later gets a subnet and an address of every family, and every peer routes to it in each.
  const add = await flatnetctl(['lab', 'node', 'add', '--name', name, '--pods', '1'])
  t.equal(add.code, 0, `lab node add: ${add.stderr}`)
  const after = parse<LabStatus>((await flatnetctl(['lab', 'status', '--name', name, '--json'])).stdout, 'lab status --json')
  const joined = after.nodes.find((n) => n.name === 'node3')
  t.same(joined?.subnets.map(familyOf), families, `node3: one subnet per family (${joined?.subnets.join(', ')})`)
  t.same(after.pods.find((p) => p.node === 'node3')?.addresses.map(familyOf), families, 'its pod: one address per family')
  for (const peer of after.nodes.filter((n) => n !== joined)) {
    const routes = await peerRoutes(peer.namespace)
    for (const f of families) {
      const dst = joined?.subnets.find((s) => familyOf(s) === f)
      const gateway = joined?.addresses.find((a) => familyOf(a) === f)
      t.ok(
        routes.some((r) => r.dst === dst && r.gateway === gateway),
        `${peer.name} routes node3's IPv${f} subnet ${dst} via ${gateway}`,
      )
    }
  }

  const down = await flatnetctl(['lab', 'down', '--name', name])
  t.equal(down.code, 0, `lab down: ${down.stderr}`)
  t.same(await labNamespaces(name), [], 'no namespace left')
  t.same(await labProcesses(name), [], 'no process left')
}
