// NetworkPolicy sync cost: `node bench/run.mjs policy [PODS×POLICIES …]` (default every pair of
// 100/1000/5000 pods × 10/100/1000 policies, plus 1000×200, the issue's target: ≤ 200 ms).
//
// A synthetic cluster: 20 namespaces, pods spread over 20 nodes (this node holds 1 in 20, in
// 10.1.0.0/16 and fd00:1::/64, both families), labels app=app<i%50>, tier=<front|back>;
// each policy selects one app of one namespace, allows ingress from one app in namespaces with a
// team label (both selectors in one peer) on port 80 and a named port, and egress to an ipBlock
// with an except and to pods of its namespace on UDP 53. For each size one sync is measured in its
// parts: compile (pure), render (nft script), `nft -c` (the kernel parser, no change) and the
// apply (`nft -f`, the whole transaction, in a throw-away namespace), plus the script's size;
// each a median of several runs. Then the reconciler's own path (daemon/reconcilers/policy.ts:
// content-named sets created first, then one transaction swapping the rules, each through `ip netns
// exec nft`): its first sync over that table (every set made anew) and the median sync after one
// policy changes (only the changed sets created).
// Growth is judged by the ratio of time to the table's size in sets elements and rules.
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import type { IPod } from 'kubernetes-models/v1'
import { TestNamespaces } from '../e2e/helpers/index.js'
import { compilePolicies, policyTable } from '../daemon/policy/index.js'
import { namespace, pod, policy } from '../daemon/policy/testing/cluster.js'
import { NftTransaction, type NftExecutor } from '../net/nft.js'
import { createLogger } from '../daemon/log.js'
import type { InputKind } from '../daemon/reconcile/contract.js'
import { PolicyReconciler, type PolicyView } from '../daemon/reconcilers/policy.js'
import { nftIn } from '../daemon/policy/testing/topology.js'
import { benchCleanup, progress } from './measure.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const sizes = process.argv.slice(2).map((a) => a.split(/[x×]/).map(Number) as [number, number])
if (sizes.length === 0) for (const p of [100, 1000, 5000]) for (const q of [10, 100, 1000]) sizes.push([p, q])
if (sizes.length === 0 || !sizes.some(([p, q]) => p === 1000 && q === 200)) sizes.push([1000, 200])

const { teardown, cleanUp } = benchCleanup()

function cluster(pods: number, policies: number) {
  const namespaces = Array.from({ length: 20 }, (_, i) => namespace(`ns${i}`, i % 2 ? { team: `t${i % 4}` } : {}))
  const podList: IPod[] = []
  for (let i = 0; i < pods; i++) {
    const node = i % 20
    const host = Math.floor(i / 20) + 2
    const v4 = `10.${node + 1}.${host >> 8}.${host & 255}`
    const v6 = `fd00:${(node + 1).toString(16)}::${host.toString(16)}`
    podList.push(pod(`ns${i % 20}`, `pod${i}`, [v4, v6], { app: `app${i % 50}`, tier: i % 3 ? 'back' : 'front' }, [{ name: 'http', containerPort: 8000 + (i % 7) }]))
  }
  const policyList: INetworkPolicy[] = Array.from({ length: policies }, (_, k) =>
    policy(`ns${k % 20}`, `p${k}`, {
      podSelector: { matchLabels: { app: `app${k % 50}` } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: `t${k % 4}` } }, podSelector: { matchLabels: { app: `app${(k + 1) % 50}` } } }], ports: [{ port: 80 }, { port: 'http' }] }],
      egress: [{ to: [{ ipBlock: { cidr: '192.0.2.0/24', except: [`192.0.2.${k % 256}/32`] } }, { podSelector: {} }], ports: [{ protocol: 'UDP', port: 53 }] }],
    }),
  )
  return { namespaces, pods: podList, policies: policyList, nodeSubnets: ['10.1.0.0/16', 'fd00:1::/64'] }
}

const ms = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6
/** Median of `n` timed runs (the machine is shared: one run says little). */
function median<T>(n: number, fn: () => T): { ms: number; value: T } {
  const times: number[] = []
  let value!: T
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint()
    value = fn()
    times.push(ms(t0))
  }
  times.sort((a, b) => a - b)
  return { ms: times[Math.floor(n / 2)]!, value }
}

async function main(): Promise<void> {
  const namespaces = new TestNamespaces('polbench')
  teardown.teardown(() => namespaces.removeAll())
  const ns = (await namespaces.create('node')).name
  const rows: Array<Record<string, number>> = []
  for (const [pods, policies] of sizes) {
    const input = cluster(pods, policies)
    const { ms: compileMs, value: plan } = median(5, () => compilePolicies(input))
    const { ms: renderMs, value: script } = median(5, () => new NftTransaction().replaceTable(policyTable(plan)).text())
    const { ms: checkMs, value: check } = median(3, () => spawnSync('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: script }))
    if (check.status !== 0) throw new Error(`nft -c failed at ${pods}×${policies}: ${check.stderr}`)
    const { ms: applyMs, value: apply } = median(3, () => spawnSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: script }))
    if (apply.status !== 0) throw new Error(`nft -f failed at ${pods}×${policies}: ${apply.stderr}`)
    const view: PolicyView = {
      synced: () => true,
      namespaces: () => input.namespaces,
      pods: () => input.pods,
      networkPolicies: () => input.policies,
      self: () => ({ name: 'bench', nodeIP: '10.0.0.1', subnet: input.nodeSubnets[0]!, subnets: input.nodeSubnets, owner: 'bench', updatedAt: new Date(0).toISOString() }),
    }
    // Each nft run the reconciler makes, timed: where a sync's time goes.
    const inner = nftIn(ns)
    let runs: string[] = []
    const timed: NftExecutor = {
      run: async (args, script) => {
        const t0 = process.hrtime.bigint()
        const r = await inner.run(args, script)
        runs.push(
          `${args
            .filter((a) => !a.startsWith('-') || a === '-f')
            .slice(0, 2)
            .join(' ')}${script ? ` (${Math.round(Buffer.byteLength(script) / 1024)} KiB)` : ''} ${ms(t0).toFixed(0)} ms`,
        )
        return r
      },
    }
    const reconciler = new PolicyReconciler(createLogger('fatal'), undefined, timed)
    const sync = async (full: boolean) => {
      const t0 = process.hrtime.bigint()
      const r = await reconciler.sync(view, { full, changed: new Set<InputKind>(['networkpolicies']) })
      if (r.problems.length) throw new Error(`reconciler sync failed at ${pods}×${policies}: ${r.problems.join('; ')}`)
      return ms(t0)
    }
    const reconcilerFirstMs = await sync(true)
    const firstRuns = runs
    const changeRuns: string[][] = []
    const changeTimes: number[] = []
    for (let i = 0; i < 3; i++) {
      // One policy of this node's namespace changes its egress ipBlock: one new interval set, every other set stays.
      const [first, ...rest] = input.policies
      input.policies = [
        { ...first!, spec: { ...first!.spec!, egress: [{ to: [{ ipBlock: { cidr: '192.0.2.0/24', except: [`192.0.2.${200 + i}/32`] } }], ports: [{ protocol: 'UDP', port: 53 }] }] } },
        ...rest,
      ]
      runs = []
      changeTimes.push(await sync(false))
      changeRuns.push(runs)
    }
    const reconcilerChangeMs = [...changeTimes].sort((a, b) => a - b)[1]!
    const elements = [...plan.addressSets, ...plan.portSets, ...plan.namedPortSets].reduce((n, s) => n + s.elements.length, 0)
    const row = {
      pods,
      policies,
      rules: plan.stats.rules,
      elements,
      scriptKiB: Math.round(Buffer.byteLength(script) / 1024),
      compileMs,
      renderMs,
      checkMs,
      applyMs,
      syncMs: compileMs + renderMs + applyMs,
      reconcilerFirstMs,
      reconcilerChangeMs,
    }
    rows.push(row)
    progress(`  nft runs of the first sync: ${firstRuns.join(', ')}; of a sync after one change: ${changeRuns[changeTimes.indexOf(reconcilerChangeMs)]!.join(', ')}`)
    progress(
      `${String(pods).padStart(5)} pods × ${String(policies).padStart(4)} policies: rules ${String(row.rules).padStart(5)}, set elements ${String(elements).padStart(6)}, script ${String(row.scriptKiB).padStart(5)} KiB | compile ${compileMs.toFixed(1)} ms, render ${renderMs.toFixed(1)} ms, nft -c ${checkMs.toFixed(0)} ms, apply ${applyMs.toFixed(0)} ms → sync ${row.syncMs.toFixed(0)} ms | reconciler: first ${reconcilerFirstMs.toFixed(0)} ms, after one policy change ${reconcilerChangeMs.toFixed(0)} ms`,
    )
  }
  mkdirSync(join(root, 'bench', 'results'), { recursive: true })
  const out = join(root, 'bench', 'results', `policy-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(out, JSON.stringify({ rows }, null, 2) + '\n')
  progress(`written ${out}`)
}

main()
  .catch((e) => {
    console.error(e)
    process.exitCode = 1
  })
  .finally(() => cleanUp())
