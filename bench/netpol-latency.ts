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
import { loadavg } from 'node:os'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import type { IPod } from 'kubernetes-models/v1'
import type { ClusterObject } from '../daemon/objects/index.js'
import { layoutOf, readLabState } from '../lab/index.js'
import { openLabObjects } from '../lab/objectStore.js'
import { podRef } from '../lab/podSpec.js'
import { controlSocketPath, PodProber } from '../lab/responder.js'
import { clientServerLab, numberFlag, runBench, writeResult } from './clientServerLab.js'
import { benchCleanup, median, percentile, progress } from './measure.js'

const ROUNDS = numberFlag('--rounds', 20)
const PODS = numberFlag('--pods', 1000)
const POLICIES = numberFlag('--policies', 200)
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
  const { name, client, server } = await clientServerLab(teardown, 'netpollat')
  const lab = layoutOf({ name })
  const state = await readLabState(lab)
  const store = await openLabObjects(state)
  teardown.teardown(() => store.close())
  progress(`writing ${PODS} Pod records and ${POLICIES} NetworkPolicies`)
  for (const o of recordPods()) await store.apply(o)
  const clientPod = state.pods.find((p) => podRef(p) === client.name)!
  const prober = await PodProber.open(client.name, controlSocketPath(lab, clientPod.containerId))
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
  writeResult('netpol-latency', result)
}

runBench(main, cleanUp)
