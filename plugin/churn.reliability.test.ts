// 500 pods churned through the real binary — ADD and DEL interleaved in a seeded random order,
// 16 calls in flight at a time, in a small range so that addresses come round again and again —
// leave nothing behind, and no address was ever held by two pods at once.
//
// "Held at once" is judged from the records, not from luck: a pod certainly holds its address
// from the moment its ADD returned to the moment its DEL was started (the runtime believes so,
// and traffic would flow); two such intervals of one address must never overlap. Each ADD's
// claim is also checked against the store's own record file while the pod is live.
// plugin/churn.dual.reliability.test.ts reruns it dual-stack: every address of a pod is judged.
import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { links, routes, runOk, testDir, testNamespaces, testRanges } from '../e2e/helpers/index.js'
import type { Netns } from '../e2e/helpers/netns.js'
import { cniOnNode, makeNode } from './testing/testHarness.js'
import { runSeed, seededRandom } from './testing/reliabilityHarness.js'
import { rangesFor, testFamilies } from './testing/families.js'

const PODS = Number(process.env.FLATNET_CHURN_PODS ?? 500)
const PARALLEL = 16
/** Namespaces reused across pods: a DEL'd pod's namespace hosts a later ADD. Also the most pods live at once. */
const POOL = 24
const CNI_PATH = '/opt/cni/bin'

interface Tenure {
  address: string
  containerId: string
  addEnd: number
  delStart: number
}

/** Pairs of tenures of one address whose [addEnd, delStart] intervals overlap. */
function overlappingTenures(tenures: Tenure[]): Array<[Tenure, Tenure]> {
  const byAddress = new Map<string, Tenure[]>()
  for (const x of tenures) byAddress.set(x.address, [...(byAddress.get(x.address) ?? []), x])
  const out: Array<[Tenure, Tenure]> = []
  for (const list of byAddress.values()) {
    list.sort((a, b) => a.addEnd - b.addEnd)
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && list[j].addEnd < list[i].delStart; j++) out.push([list[i], list[j]])
    }
  }
  return out
}

t.test('the overlap check itself catches a double hold', async (t) => {
  const a = { address: '10.0.0.2', containerId: 'a', addEnd: 1, delStart: 5 }
  t.equal(overlappingTenures([a, { address: '10.0.0.2', containerId: 'b', addEnd: 4, delStart: 9 }]).length, 1)
  t.equal(overlappingTenures([a, { address: '10.0.0.2', containerId: 'b', addEnd: 5, delStart: 9 }]).length, 0, 'back to back is fine')
  t.equal(overlappingTenures([a, { address: '10.0.0.3', containerId: 'b', addEnd: 2, delStart: 3 }]).length, 0, 'other address')
})

t.test(`${PODS} pods churned ${PARALLEL}-way: nothing left, no address held twice at once`, async (t) => {
  const seed = runSeed()
  t.comment(`churn seed ${seed} (replay with FLATNET_TEST_SEED=${seed})`)
  const random = seededRandom(seed)
  const spaces = testNamespaces(t, 'churn')
  const { dir } = testDir(t, 'churn')
  const node = await spaces.create('node')
  await makeNode(node)
  // A /26: 61 pod addresses for up to 24 live pods, so each address serves several pods in a run
  // (and an IPv6 /122: 62).
  const cidr = testRanges(1)[0].cidr.replace(/\/24$/, '/26')
  const conf = { cniVersion: '1.1.0', name: 'churn', type: 'flatnet', ranges: rangesFor(testFamilies, cidr, 122), dataDir: dir, mtu: 1500 }
  const storeDir = join(dir, 'churn')
  const freeNs: Netns[] = await Promise.all(Array.from({ length: POOL }, (_, i) => spaces.create(`n${i}`)))
  const env = (ns: Netns | undefined, id: string) => ({ CNI_CONTAINERID: id, CNI_NETNS: ns?.path ?? '', CNI_IFNAME: 'eth0', CNI_PATH })

  interface Live {
    id: string
    ns: Netns
    addresses: string[]
    addEnd: number
  }
  const live: Live[] = []
  const tenures: Tenure[] = []
  const failures: string[] = []
  const storeDisagreements: string[] = []
  let started = 0
  let inFlight = 0
  let adds = 0
  let dels = 0
  let maxLive = 0
  let wake: () => void = () => {}
  let changed = new Promise<void>((r) => {
    wake = r
  })
  const signal = () => {
    wake()
    changed = new Promise<void>((r) => {
      wake = r
    })
  }

  const addOne = async (): Promise<void> => {
    const ns = freeNs.splice(Math.floor(random() * freeNs.length), 1)[0]
    const id = `churn-${++started}`
    const add = await cniOnNode(node, 'ADD', { env: env(ns, id), config: conf })
    const addEnd = performance.now()
    adds++
    const addresses = ((add.json as { ips?: Array<{ address: string }> } | undefined)?.ips ?? []).map((ip) => ip.address.split('/')[0])
    if (add.code !== 0 || addresses.length !== conf.ranges.length) {
      failures.push(`ADD ${id}: exit ${add.code}, ${addresses.length} addresses for ${conf.ranges.length} ranges ${add.stdout.trim()} ${add.stderr.trim()}`)
      freeNs.push(ns)
      return
    }
    // While it is live, the store must say the same: the record of each address names this pod.
    for (const address of addresses) {
      try {
        const holder = JSON.parse(readFileSync(join(storeDir, address), 'utf8')).containerId
        if (holder !== id) storeDisagreements.push(`${address}: ADD of ${id} returned it, the store says ${holder}`)
      } catch (e) {
        storeDisagreements.push(`${address}: ADD of ${id} returned it, its record is unreadable: ${(e as Error).message}`)
      }
    }
    live.push({ id, ns, addresses, addEnd })
    maxLive = Math.max(maxLive, live.length)
  }

  const delOne = async (): Promise<void> => {
    const pod = live.splice(Math.floor(random() * live.length), 1)[0]
    const delStart = performance.now()
    for (const address of pod.addresses) tenures.push({ address, containerId: pod.id, addEnd: pod.addEnd, delStart })
    // Now and then the runtime sends DEL with an empty CNI_NETNS (containerd after the task exited).
    const del = await cniOnNode(node, 'DEL', { env: env(random() < 0.2 ? undefined : pod.ns, pod.id), config: conf })
    dels++
    if (del.code !== 0) failures.push(`DEL ${pod.id}: exit ${del.code} ${del.stdout.trim()}`)
    freeNs.push(pod.ns)
  }

  const t0 = performance.now()
  const worker = async (): Promise<void> => {
    for (;;) {
      const canAdd = started < PODS && freeNs.length > 0
      const canDel = live.length > 0
      if (!canAdd && !canDel) {
        if (started >= PODS && inFlight === 0) return
        await changed // something in flight will free a namespace or make a pod live
        continue
      }
      // Lean towards ADD while there is room, so the node fills up and then churns near full.
      const doAdd = canAdd && (!canDel || random() < 0.55)
      inFlight++
      try {
        await (doAdd ? addOne() : delOne())
      } finally {
        inFlight--
        signal()
      }
    }
  }
  await Promise.all(Array.from({ length: PARALLEL }, worker))
  const seconds = (performance.now() - t0) / 1000

  t.same(failures, [], 'every ADD and DEL succeeded')
  t.equal(adds, PODS, `${PODS} ADDs`)
  t.equal(dels, PODS, `${PODS} DELs`)
  t.same(storeDisagreements, [], "each live pod's address was recorded in the store as its own")
  const overlaps = overlappingTenures(tenures)
  t.same(
    overlaps.map(([a, b]) => `${a.address}: ${a.containerId} and ${b.containerId}`),
    [],
    'no address held by two pods at once',
  )
  const perAddress = new Map<string, number>()
  for (const x of tenures) perAddress.set(x.address, (perAddress.get(x.address) ?? 0) + 1)
  t.ok(Math.max(...perAddress.values()) >= 3, 'addresses came round again (the check had something to check)')

  const left = existsSync(storeDir) ? readdirSync(storeDir) : []
  t.same(
    left.filter((f) => !f.startsWith('last_reserved_ip.')),
    [],
    'zero reservations, zero temp files',
  )
  t.same(
    (await links(node)).filter((l) => /^fn[0-9a-f]{13}$/.test(l.ifname)).map((l) => l.ifname),
    [],
    'zero host veths',
  )
  t.same(
    [...(await routes(node, 4)), ...(await routes(node, 6))].filter((r) => r.protocol === '201'),
    [],
    'zero proto-201 routes',
  )
  for (const ns of freeNs.slice(0, 3)) {
    t.same(
      (await runOk(['ip', '-n', ns.name, '-o', 'link', 'show'])).stdout
        .trim()
        .split('\n')
        .filter((l) => !/: lo:/.test(l)),
      [],
      `${ns.name}: only lo`,
    )
  }
  t.comment(
    `churn (${testFamilies}): ${PODS} pods, ${adds} ADD + ${dels} DEL, ${PARALLEL}-way, at most ${maxLive} live at once, ${perAddress.size} addresses used, up to ${Math.max(...perAddress.values())} pods per address, ${seconds.toFixed(1)} s`,
  )
})
