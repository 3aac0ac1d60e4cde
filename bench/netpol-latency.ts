// NetworkPolicy apply → enforcement latency: `node bench/run.mjs netpol-latency [--rounds N]
// [--pods N] [--policies N]` (default 20 rounds, 1000 pods, 200 policies; ~2 min).
//
// A real 2-node lab (file datastore) with two real pods, x/client on node1 and x/server on node2
// (TCP 80), and besides them a cluster of Pod records only — `--pods` Pods in 20 namespaces on
// 20 other nodes, with addresses outside the lab's ranges — and `--policies` NetworkPolicies over
// them (each selects one app of one namespace, ingress from one app of the namespaces with a team
// label on port 80, egress to an ipBlock with an except and to its namespace on UDP 53: the shape
// of bench/policy.ts). So every sync of node2 compiles the whole cluster.
//
// Each round applies a policy isolating x/server (ingress from nobody) through the lab's object
// store, exactly what `flatnetctl lab apply` does, and probes x/client → x/server:80 back to back
// from inside x/client until the first probe is refused; then deletes it and probes until the first
// connects. A latency is from just before the store write to the end of the first probe that saw
// the new verdict (it includes the datastore write, the file watch, the runner's coalescing, the
// compile and the two nft transactions); the probe loop's own resolution is one probe (~1 ms).
import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import type { IPod } from 'kubernetes-models/v1'
import type { ClusterObject } from '../daemon/objects/index.js'
import { labUp, layoutOf, readLabState } from '../lab/index.js'
import { openLabObjects } from '../lab/objectStore.js'
import { labApply } from '../lab/objects.js'
import { podRef } from '../lab/podSpec.js'
import { controlSocketPath, PodProber } from '../lab/responder.js'
import { labForTest, labSkipReason } from '../lab/testing/testLabs.js'
import { benchCleanup, median, percentile, progress } from './measure.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const arg = (flag: string, fallback: number) => {
  const at = process.argv.indexOf(flag)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}
const ROUNDS = arg('--rounds', 20)
const PODS = arg('--pods', 1000)
const POLICIES = arg('--policies', 200)
/** A verdict that has not changed after this long is a failure of the benchmark, not a sample. */
const GIVE_UP_MS = 30_000

const { teardown, cleanUp } = benchCleanup()

function recordPods(): ClusterObject[] {
  const objects: ClusterObject[] = []
  for (let i = 0; i < 20; i++) objects.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns${i}`, labels: i % 2 ? { team: `t${i % 4}` } : {} } } as ClusterObject)
  for (let i = 0; i < PODS; i++) {
    const node = i % 20
    const host = Math.floor(i / 20) + 2
    // 10.200.0.0/16 and up: outside the lab's cluster range, so no record collides with a real pod.
    const ip = `10.${200 + node}.${host >> 8}.${host & 255}`
    const pod: IPod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { namespace: `ns${i % 20}`, name: `pod${i}`, labels: { app: `app${i % 50}`, tier: i % 3 ? 'back' : 'front' } },
      spec: { nodeName: `record-node${node}`, containers: [{ name: 'c', image: 'none', ports: [{ name: 'http', containerPort: 8000 + (i % 7) }] }] },
      status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
    }
    objects.push(pod as ClusterObject)
  }
  for (let k = 0; k < POLICIES; k++) {
    const policy: INetworkPolicy = {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { namespace: `ns${k % 20}`, name: `p${k}` },
      spec: {
        podSelector: { matchLabels: { app: `app${k % 50}` } },
        policyTypes: ['Ingress', 'Egress'],
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: `t${k % 4}` } }, podSelector: { matchLabels: { app: `app${(k + 1) % 50}` } } }], ports: [{ port: 80 }, { port: 'http' }] }],
        egress: [{ to: [{ ipBlock: { cidr: '192.0.2.0/24', except: [`192.0.2.${k % 256}/32`] } }, { podSelector: {} }], ports: [{ protocol: 'UDP', port: 53 }] }],
      },
    }
    objects.push(policy as ClusterObject)
  }
  return objects
}

async function main(): Promise<void> {
  const skip = labSkipReason()
  if (skip) throw new Error(skip)
  const name = labForTest(teardown, 'netpollat')
  const ref = { name }
  progress(`lab ${name}: 2 nodes, x/client on node1, x/server on node2`)
  await labUp({ name, nodes: 2, podsPerNode: 0, datastore: 'file', services: false, daemonLogLevel: 'warn' })
  const container = () => ({ name: 'serve', image: 'responder', ports: [{ containerPort: 80, protocol: 'TCP' }] })
  await labApply(ref, [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } } as ClusterObject,
    { apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'x', name: 'client', labels: { role: 'client' } }, spec: { nodeName: 'node1', containers: [container()] } } as ClusterObject,
    { apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'x', name: 'server', labels: { role: 'server' } }, spec: { nodeName: 'node2', containers: [container()] } } as ClusterObject,
  ])
  const lab = layoutOf(ref)
  const state = await readLabState(lab)
  const store = await openLabObjects(state)
  teardown.teardown(() => store.close())
  progress(`writing ${PODS} Pod records and ${POLICIES} NetworkPolicies`)
  for (const o of recordPods()) await store.apply(o)
  const client = state.pods.find((p) => podRef(p) === 'x/client')!
  const server = state.pods.find((p) => podRef(p) === 'x/server')!
  const prober = await PodProber.open('x/client', controlSocketPath(lab, client.containerId))
  teardown.teardown(() => prober.close())
  const probe = async () => (await prober.probe({ host: server.address, port: 80, protocol: 'TCP', connectTimeoutMs: 300 })).ok
  const until = async (want: boolean, what: string) => {
    const t0 = performance.now()
    for (;;) {
      if ((await probe()) === want) return
      if (performance.now() - t0 > GIVE_UP_MS) throw new Error(`${what}: the verdict did not change within ${GIVE_UP_MS} ms`)
    }
  }
  // The big cluster programmed first: the server reachable once node2 has compiled it all.
  await until(true, 'x/client → x/server before any isolating policy')
  const isolate = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { namespace: 'x', name: 'isolate-server' },
    spec: { podSelector: { matchLabels: { role: 'server' } }, policyTypes: ['Ingress'] },
  } as ClusterObject
  const key = { kind: 'NetworkPolicy' as const, namespace: 'x', name: 'isolate-server' }
  const toDeny: number[] = []
  const toAllow: number[] = []
  const load0 = loadavg()[0]!
  for (let round = 0; round < ROUNDS; round++) {
    let t0 = performance.now()
    await store.apply(isolate)
    await until(false, `round ${round}: apply isolate-server`)
    toDeny.push(performance.now() - t0)
    t0 = performance.now()
    await store.delete(key)
    await until(true, `round ${round}: delete isolate-server`)
    toAllow.push(performance.now() - t0)
    progress(`round ${round + 1}/${ROUNDS}: apply → refused ${toDeny.at(-1)!.toFixed(0)} ms, delete → connects ${toAllow.at(-1)!.toFixed(0)} ms`)
  }
  const row = (samples: number[]) => ({ median: median(samples), p95: percentile(samples, 95), max: Math.max(...samples) })
  const result = { pods: PODS, policies: POLICIES, rounds: ROUNDS, load: [load0, loadavg()[0]!], applyToDeny: row(toDeny), deleteToAllow: row(toAllow) }
  progress(
    `${PODS} pod records × ${POLICIES} policies, ${ROUNDS} rounds, load ${load0.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}: apply → enforced median ${result.applyToDeny.median.toFixed(0)} ms, p95 ${result.applyToDeny.p95.toFixed(0)} ms; delete → lifted median ${result.deleteToAllow.median.toFixed(0)} ms, p95 ${result.deleteToAllow.p95.toFixed(0)} ms`,
  )
  mkdirSync(join(root, 'bench', 'results'), { recursive: true })
  const out = join(root, 'bench', 'results', `netpol-latency-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n')
  progress(`written ${out}`)
}

main()
  .catch((e) => {
    console.error(e)
    process.exitCode = 1
  })
  .finally(() => cleanUp())
