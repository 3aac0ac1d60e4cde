// Issue 11's reliability sentence "flatnetd restarted under load → established connections
// through a ClusterIP survive, new ones succeed within one pass", end to end in a lab: the Service
// proxy lives in the kernel's nftables tables, not in the daemon, so a crashed flatnetd leaves
// every Service working as last programmed; its restart finds the tables in place (nothing is
// flushed on start), replaces them in one transaction, and applies what changed while it was down.
//
// Two nodes; Service svc/web over web-1 (node1) and web-2 (node2), the client pod on node1. For the
// whole test the client holds one connection through the ClusterIP to each endpoint, exchanging a
// checked ping and pong every 50 ms (lab/testing/streams.ts), while the client pod and node1 itself
// open new connections to the ClusterIP one after another. node1's flatnetd is SIGKILLed; while
// it is down a new endpoint web-3 (node2) and a second Service svc/extra are applied; then it is
// started again. Pings and new connections are counted per phase — while down, while starting (up
// to the new daemon's readiness, which waits for its first sync), after the restart — and none may
// fail in any of them.
import t from 'tap'
import type { ClusterObject } from '../../daemon/objects/index.js'
import { readManifests } from '../../daemon/objects/manifests.js'
import { controlSocketPath, labNodeStart, labNodeStop, labUp, layoutOf, podRef, PodProber, ProbeAgent, readLabState, type LabState } from '../../lab/index.js'
import { run, sleep } from '../../lab/exec.js'
import { labApply } from '../../lab/objects.js'
import { openLabObjects } from '../../lab/objectStore.js'
import { HeldConnection, StreamServer, type HoldReport } from '../../lab/testing/streams.js'
import { labForTest, labSkipReason, pollUntil } from '../../lab/testing/testLabs.js'

const HTTP = 80 // the responders' port (lab/responder.ts): one JSON answer per connection
const STREAM = 7400 // the stream servers' port: pings answered for as long as a connection stays
const EXTRA = 8080
const PING_MS = 50
const NODE_AGENT_PORT = 7310 // the node's probe agent listens here; it only dials out in this test

const pod = (name: string, node: string, labels = '{app: web}') => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: svc, labels: ${labels}}
spec:
  nodeName: ${node}
  containers: [{name: c, image: any, ports: [{name: http, containerPort: ${HTTP}}]}]
`
const WEB = `apiVersion: v1
kind: Namespace
metadata: {name: svc}
---
${pod('web-1', 'node1')}---
${pod('web-2', 'node2')}---
${pod('client', 'node1', '{role: client}')}---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: svc}
spec:
  selector: {app: web}
  ports: [{name: http, port: ${HTTP}, targetPort: http}, {name: stream, port: ${STREAM}, targetPort: ${STREAM}}]
`
const EXTRA_SERVICE = `apiVersion: v1
kind: Service
metadata: {name: extra, namespace: svc}
spec:
  selector: {app: web}
  ports: [{name: http, port: ${EXTRA}, targetPort: http}]
`

const objects = (yaml: string): ClusterObject[] => readManifests(yaml, 'services-reliability.test.ts').map((m) => m.object)

/** New connections made by one client, by phase, with every failure and the endpoints that answered. */
class NewConnections {
  phase = 'before the kill'
  readonly counts = new Map<string, number>()
  readonly failures: string[] = []
  readonly answeredBy = new Set<string>()
  private running = true
  private readonly loop: Promise<void>

  constructor(
    readonly who: string,
    probe: () => Promise<{ ok: true; pod: string } | { ok: false; error: string }>,
  ) {
    this.loop = (async () => {
      while (this.running) {
        const phase = this.phase
        const r = await probe()
        this.counts.set(phase, (this.counts.get(phase) ?? 0) + 1)
        if (r.ok) this.answeredBy.add(r.pod)
        else this.failures.push(`${new Date().toISOString()} (${phase}) ${r.error}`)
        await sleep(20)
      }
    })()
  }

  async stop(): Promise<void> {
    this.running = false
    await this.loop
  }

  summary(): string {
    const answered = [...this.answeredBy].sort().join(', ')
    return `${this.who}: ${[...this.counts].map(([p, n]) => `${n} ${p}`).join(', ')}; answered by ${answered}; ${this.failures.length} failed${this.failures.length ? `, first ${this.failures[0]}` : ''}`
  }
}

t.test(
  'flatnetd SIGKILLed and restarted under load: established connections through a ClusterIP survive, new ones never fail, changes made while it was down apply at once',
  { skip: labSkipReason() },
  async (t) => {
    const name = labForTest(t, 'svcrel')
    const ref = { name }
    const lab = layoutOf(ref)
    await labUp({ name, nodes: 2, podsPerNode: 0, datastore: 'file' })
    await labApply(ref, objects(WEB))
    let state: LabState = await readLabState(lab)
    const labPod = (r: string) => state.pods.find((p) => podRef(p) === r)!
    const node1 = state.nodes.find((n) => n.name === 'node1')!
    const clusterIP = async (svc: string) => {
      const store = await openLabObjects(state)
      try {
        const ip = (await store.get({ kind: 'Service', namespace: 'svc', name: svc }))?.spec?.clusterIP
        if (!ip) throw new Error(`Service svc/${svc} has no cluster IP`)
        return ip
      } finally {
        await store.close()
      }
    }
    const webIP = await clusterIP('web')

    const stoppers: Array<() => unknown> = []
    t.teardown(() => stoppers.forEach((stop) => stop()))
    const serveStream = async (r: string) => {
      const server = await StreamServer.start(labPod(r).netns, r, STREAM)
      stoppers.push(() => server.stop())
    }
    await Promise.all(['svc/web-1', 'svc/web-2'].map(serveStream))
    const client = await PodProber.open('svc/client', controlSocketPath(lab, labPod('svc/client').containerId))
    stoppers.push(() => client.close())
    const nodeAgent = await ProbeAgent.start(node1.netns, NODE_AGENT_PORT)
    stoppers.push(() => nodeAgent.stop())
    const fromClient = async (host: string, port: number) => {
      // Generous timeouts: a loaded machine may delay a handshake (never drop it) by hundreds of ms.
      const r = await client.probe({ host, port, protocol: 'TCP', connectTimeoutMs: 2000, replyTimeoutMs: 3000 })
      return r.ok ? { ok: true as const, pod: r.reply.pod } : { ok: false as const, error: `svc/client → ${host}:${port}: ${r.error}` }
    }
    const fromNode = async (host: string, port: number) => {
      const r = await nodeAgent.probe(host, port, 3000)
      return r.ok ? { ok: true as const, pod: String((r.reply as unknown as { pod?: string }).pod) } : { ok: false as const, error: `node1 → ${host}:${port}: ${r.error}` }
    }
    t.ok(await pollUntil(async () => (await fromClient(webIP, HTTP)).ok, 10_000), `svc/client reaches svc/web at ${webIP}:${HTTP}`)

    // One held connection to each endpoint: connections go to a random endpoint, so open until both answered.
    const held = new Map<string, HeldConnection>()
    for (let i = 0; i < 24 && held.size < 2; i++) {
      const c = await HeldConnection.open(labPod('svc/client').netns, webIP, STREAM, PING_MS)
      if (held.has(c.backend)) c.kill()
      else (held.set(c.backend, c), stoppers.push(() => c.kill()))
    }
    t.same([...held.keys()].sort(), ['svc/web-1', 'svc/web-2'], `svc/client holds a connection through ${webIP}:${STREAM} to each endpoint`)
    const reports = async () => new Map(await Promise.all([...held].map(async ([b, c]) => [b, await c.report()] as const)))

    const loops = [new NewConnections('svc/client → ClusterIP', () => fromClient(webIP, HTTP)), new NewConnections('node1 → ClusterIP', () => fromNode(webIP, HTTP))]
    const setPhase = (p: string) => loops.forEach((l) => (l.phase = p))
    await sleep(500)

    // The crash, and what changes while nobody programs node1.
    const killedAt = performance.now()
    t.equal(await labNodeStop({ ...ref, node: 'node1', kill: true }), 'killed', "node1's flatnetd killed with SIGKILL")
    setPhase('while down')
    const atKill = await reports()
    await labApply(ref, objects(pod('web-3', 'node2') + '---\n' + EXTRA_SERVICE))
    state = await readLabState(lab)
    await serveStream('svc/web-3')
    const web3 = labPod('svc/web-3').address
    const extraIP = await clusterIP('extra')
    const node1Table = async () => (await run(['ip', 'netns', 'exec', node1.netns, 'nft', 'list', 'table', 'ip', 'flatnet-services'])).stdout
    await sleep(Math.max(0, 1500 - (performance.now() - killedAt)))
    const whileDown = await node1Table()
    t.ok(whileDown.includes(webIP), `while down, node1 still holds its services table (with svc/web's ${webIP}): nothing removed it`)
    t.notOk(whileDown.includes(web3) || whileDown.includes(extraIP), `while down, node1's table has neither the new endpoint ${web3} nor svc/extra's ${extraIP}`)
    const beforeStart = await reports()
    const downMs = Math.round(performance.now() - killedAt)

    // Started again: until its first sync the new daemon must leave the tables as they are.
    setPhase('while starting')
    await labNodeStart({ ...ref, node: 'node1' })
    const readyMs = Math.round(performance.now() - killedAt)
    setPhase('after the restart')
    const atReady = await reports()
    // Applied by the restarted daemon's first sync, which its readiness waits for: the deadline
    // only bounds a failure, it times nothing.
    const spread = new Set<string>()
    const applied = await pollUntil(async () => {
      const extra = await fromClient(extraIP, EXTRA)
      for (let i = 0; i < 6; i++) {
        const r = await fromClient(webIP, HTTP)
        if (r.ok) spread.add(r.pod)
      }
      return extra.ok && spread.has('svc/web-3')
    }, 5000)
    t.ok(applied, `after the restart, svc/extra (${extraIP}:${EXTRA}) answers and svc/web reaches the new endpoint svc/web-3 (seen: ${[...spread].sort().join(', ')})`)
    // A long-lived connection to the endpoint added while the daemon was down, kept to the end.
    let late: HeldConnection | undefined
    for (let i = 0; i < 24 && !late; i++) {
      const c = await HeldConnection.open(labPod('svc/client').netns, webIP, STREAM, PING_MS)
      stoppers.push(() => c.kill())
      if (c.backend === 'svc/web-3') late = c
      else c.kill()
    }
    t.ok(late, `after the restart, a new held connection through ${webIP}:${STREAM} reaches svc/web-3`)
    await sleep(1000)

    await Promise.all(loops.map((l) => l.stop()))
    const line = (b: string, r: HoldReport) =>
      `${b}: ${r.answered}/${r.sent} pings answered, slowest ${r.maxReplyMs} ms, ${r.open ? 'open' : 'closed'}, ${r.faults.length} faults${r.faults.length ? ` (first: ${r.faults[0]})` : ''}`
    const final = new Map(await Promise.all([...held].map(async ([b, c]) => [b, await c.close()] as const)))
    if (late) {
      const r = await late.close()
      t.ok(r.faults.length === 0 && r.answered === r.sent && r.sent >= 5, `the held connection to svc/web-3: ${line('svc/web-3', r)}`)
    }
    const phases = ['while down', 'while starting', 'after the restart']
    for (const [b, r] of final) {
      const answered = [beforeStart.get(b)!.answered - atKill.get(b)!.answered, atReady.get(b)!.answered - beforeStart.get(b)!.answered, r.answered - atReady.get(b)!.answered]
      t.same(r.faults, [], `held connection to ${b}: ${line(b, r)}`)
      t.ok(r.answered === r.sent && r.backend === b, `held connection to ${b}: every ping answered by ${b} (${r.answered}/${r.sent}, ${r.inFlight} in flight)`)
      t.ok(
        answered.every((n) => n >= 5),
        `held connection to ${b}: pings answered ${answered.map((n, i) => `${phases[i]}: ${n}`).join(', ')}`,
      )
    }
    for (const l of loops) {
      t.same(l.failures, [], `new connections ${l.summary()}`)
      t.ok(
        phases.every((p) => (l.counts.get(p) ?? 0) >= 1),
        `new connections ${l.who} were made in every phase (${l.summary()})`,
      )
    }
    t.comment(`down ${downMs} ms before the start, ready ${readyMs} ms after the kill; ${loops.map((l) => l.summary()).join('; ')}; ${[...final].map(([b, r]) => line(b, r)).join('; ')}`)
  },
)
