// The lab the NetworkPolicy benchmarks share (netpol-latency, netpol-dataplane): 2 nodes on the
// file datastore, no Services, and two real pods of namespace x — x/client (role=client) on node1
// and x/server (role=server) on node2, each with a responder on TCP 80 — so every connection
// between them crosses both nodes' policy chains. Plus the bits every benchmark ends with.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ClusterObject } from '../daemon/objects/index.js'
import { labStatus, labUp, type LabStatus } from '../lab/index.js'
import { labApply } from '../lab/objects.js'
import { labForTest, labSkipReason } from '../lab/testing/testLabs.js'
import { progress } from './measure.js'

type LabPodStatus = LabStatus['pods'][number]

export async function clientServerLab(cleanup: { teardown(fn: () => unknown): void }, tag: string): Promise<{ name: string; client: LabPodStatus; server: LabPodStatus }> {
  const skip = labSkipReason()
  if (skip) throw new Error(skip)
  const name = labForTest(cleanup, tag)
  progress(`lab ${name}: 2 nodes, x/client on node1, x/server on node2`)
  await labUp({ name, nodes: 2, podsPerNode: 0, datastore: 'file', services: false, daemonLogLevel: 'warn' })
  const pod = (podName: string, role: string, node: string) =>
    ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { namespace: 'x', name: podName, labels: { role } },
      spec: { nodeName: node, containers: [{ name: 'serve', image: 'responder', ports: [{ containerPort: 80, protocol: 'TCP' }] }] },
    }) as ClusterObject
  await labApply({ name }, [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } } as ClusterObject, pod('client', 'client', 'node1'), pod('server', 'server', 'node2')])
  const status = await labStatus({ name })
  const find = (ref: string) => {
    const p = status.pods.find((x) => x.name === ref)
    if (!p) throw new Error(`lab ${name}: pod ${ref} missing from the lab's status`)
    return p
  }
  return { name, client: find('x/client'), server: find('x/server') }
}

/** `--flag N` from the command line, or `fallback`. */
export function numberFlag(flag: string, fallback: number): number {
  const at = process.argv.indexOf(flag)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}

/** Writes `doc` to bench/results/<prefix>-<time>.json and says where. */
export function writeResult(prefix: string, doc: unknown): void {
  const dir = join(fileURLToPath(new URL('..', import.meta.url)), 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const out = join(dir, `${prefix}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(out, JSON.stringify(doc, null, 2) + '\n')
  progress(`written ${out}`)
}

/** Runs a benchmark's main, reporting a failure by exit code, and always cleans up. */
export function runBench(main: () => Promise<void>, cleanUp: () => Promise<void>): void {
  main()
    .catch((e) => {
      console.error(e)
      process.exitCode = 1
    })
    .finally(() => cleanUp())
}
