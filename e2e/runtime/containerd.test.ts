// A real runtime uses the plugin unmodified: Debian's containerd + runc, `ctr run --cni`, a
// container from an offline busybox rootfs. The same scenario runs for the reference
// (ptp + host-local) and for flatnet:
//   ctr run → the runtime's ADD wires the container; inside it, `ip addr` shows its address and it
//   reaches the gateway on the host; the container is killed → ctr's own DEL (with an EMPTY
//   CNI_NETNS, since the task is gone) releases the address and the host side disappears.
import t from 'tap'
import { once } from 'node:events'
import { chmodSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  REFERENCE_CNI_DIR,
  flatnetBinary,
  flatnetConflist,
  flatnetMissingReason,
  ipv4Of,
  link,
  referenceConflist,
  routeGet,
  routes,
  testRanges,
  type Conflist,
  type NetworkSpec,
  type TestRange,
} from '../helpers/index.js'
import { startCniTestServer } from '../../daemon/testing/cniServerProcess.js'
import { busyboxRootfs } from './busybox.js'
import { PrivateContainerd } from './containerd.js'
import { ensureCniMountPoints, makeCniView, recordedCalls, spawnWithCniView } from './cniView.js'

interface NetworkUnderTest {
  label: string
  skip?: string
  conflist(spec: NetworkSpec): Conflist
  /** binary name in /opt/cni/bin → real file */
  plugins: Record<string, string>
  /** the plugin the runtime calls (the first of the list), wrapped by the recording spy */
  main: string
  /** prefix length of the pod's own address */
  podPrefixLen: number
  /** Served by flatnetd's CNI socket only: the entry has no Node plugin beside it to fall back to. */
  fastPath?: boolean
}

const networks: NetworkUnderTest[] = [
  {
    label: 'ptp + host-local (reference)',
    conflist: referenceConflist,
    plugins: { ptp: join(REFERENCE_CNI_DIR, 'ptp'), 'host-local': join(REFERENCE_CNI_DIR, 'host-local') },
    main: 'ptp',
    podPrefixLen: 24, // ptp keeps host-local's /24 and deletes the subnet route (see peer.test.ts)
  },
  {
    label: 'flatnet',
    skip: flatnetMissingReason(),
    conflist: flatnetConflist,
    plugins: { flatnet: flatnetBinary },
    main: 'flatnet',
    podPrefixLen: 32,
  },
  {
    // ctr names the task's namespace /proc/<pid>/ns/net: the entry opens it and passes it over.
    label: "flatnet through flatnetd's CNI socket",
    skip: flatnetMissingReason(),
    conflist: flatnetConflist,
    plugins: { flatnet: flatnetBinary },
    main: 'flatnet',
    podPrefixLen: 32,
    fastPath: true,
  },
]

const [rangeA, rangeB, rangeC] = testRanges(3) as [TestRange, TestRange, TestRange]
const rangeFor = new Map([
  [networks[0]!.label, rangeA],
  [networks[1]!.label, rangeB],
  [networks[2]!.label, rangeC],
])

for (const net of networks) {
  t.test(`containerd runs a container on ${net.label}; its own DEL releases the address`, { skip: net.skip }, async (t) => {
    const range = rangeFor.get(net.label)!
    ensureCniMountPoints(t)
    const ctrd = await PrivateContainerd.start(t)
    const spec: NetworkSpec = { name: ctrd.prefix, range, dataDir: join(ctrd.dir, 'ipam') }
    let plugins = net.plugins
    if (net.fastPath) {
      const socket = join(ctrd.dir, 'cni.sock')
      const server = await startCniTestServer(undefined, socket)
      t.teardown(() => server.stop())
      // A copy of the entry alone in its directory: no flatnet-node beside it, so a call the
      // daemon did not serve would fail rather than pass through the fallback unnoticed.
      const entryDir = join(ctrd.dir, 'entry')
      mkdirSync(entryDir)
      copyFileSync(flatnetBinary, join(entryDir, 'flatnet'))
      chmodSync(join(entryDir, 'flatnet'), 0o755)
      writeFileSync(join(entryDir, 'flatnet-fast'), `#!/bin/sh\nFLATNET_CNI_SOCKET='${socket}' exec '${join(entryDir, 'flatnet')}' "$@"\n`, { mode: 0o755 })
      plugins = { flatnet: join(entryDir, 'flatnet-fast') }
    }
    const view = makeCniView(join(ctrd.dir, 'cni'), net.conflist(spec), plugins, net.main)
    const rootfs = busyboxRootfs(join(ctrd.dir, 'rootfs'))
    const id = 'pod1'

    // Foreground `ctr run`: it sends ADD before starting the task and DEL once the task exits.
    const ctrRun = spawnWithCniView(view, ctrd.ctrArgv(['run', '--cni', ...ctrd.runFlags(), '--rootfs', rootfs, id, '/bin/sleep', '600']))
    ctrd.track(ctrRun)
    let ctrOutput = ''
    ctrRun.stdout?.on('data', (d: Buffer) => (ctrOutput += d.toString()))
    ctrRun.stderr?.on('data', (d: Buffer) => (ctrOutput += d.toString()))
    const ctrExit = once(ctrRun, 'exit') as Promise<[number | null, NodeJS.Signals | null]>

    // ADD happens before the task starts, so RUNNING means the network is wired.
    const deadline = Date.now() + 20_000
    while ((await ctrd.tasks())[id] !== 'RUNNING') {
      if (ctrRun.exitCode !== null) t.fail(`ctr run exited early (${ctrRun.exitCode}): ${ctrOutput}\n${recordedCallsText(view)}`)
      if (ctrRun.exitCode !== null || Date.now() > deadline) {
        if (Date.now() > deadline) t.fail(`task ${id} not RUNNING after 20 s: ${ctrOutput}`)
        return
      }
      await new Promise((r) => setTimeout(r, 100))
    }

    const add = recordedCalls(view)
    t.equal(add.length, 1, 'the runtime called the plugin once')
    t.equal(add[0]?.command, 'ADD')
    t.match(add[0]?.netns, /^\/proc\/\d+\/ns\/net$/, "ADD got the task's namespace path")
    t.equal(add[0]?.containerId, `${ctrd.namespace}-${id}`, 'container ID is <namespace>-<id> (ctr FullID)')
    t.equal(add[0]?.ifname, 'eth0')

    // Inside the container.
    const ipAddr = await ctrd.ctrOk(['task', 'exec', '--exec-id', 'ipaddr', id, '/bin/ip', '-4', 'addr', 'show', 'dev', 'eth0'])
    const inet = /inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(ipAddr.stdout)
    t.ok(inet, `the container sees an IPv4 address on eth0: ${ipAddr.stdout.trim()}`)
    if (!inet) return
    const podIp = inet[1]!
    t.equal(podIp, `${range.base}2`, 'the first free address of the range')
    t.equal(Number(inet[2]), net.podPrefixLen, `prefix /${net.podPrefixLen}`)
    const ping = await ctrd.ctr(['task', 'exec', '--exec-id', 'ping', id, '/bin/ping', '-c', '1', '-W', '3', range.gateway])
    t.equal(ping.code, 0, `the container reaches the gateway ${range.gateway} on the host`)
    t.match(ping.stdout, /1 packets received/)

    // On the host: the reservation, the host veth with the gateway, the route back to the pod.
    const reservation = join(spec.dataDir, spec.name, podIp)
    t.ok(existsSync(reservation), `reservation ${reservation} exists`)
    const toPod = await routeGet(podIp)
    const hostVeth = toPod.dev
    t.equal((await link(hostVeth))?.kind, 'veth', `the host reaches ${podIp} through veth ${hostVeth}`)
    t.same(await ipv4Of(hostVeth), [`${range.gateway}/32`], 'the host veth carries the gateway /32')

    // Stop the task: ctr sees it exit, sends DEL, deletes the task.
    await ctrd.ctrOk(['task', 'kill', '--signal', 'SIGKILL', id])
    const timer = setTimeout(() => ctrRun.kill('SIGKILL'), 20_000)
    const [code] = await ctrExit
    clearTimeout(timer)
    t.equal(code, 137, 'ctr run reports the SIGKILLed task')
    const calls = recordedCalls(view)
    t.same(
      calls.map((c) => [c.command, c.netns, c.containerId, c.ifname]),
      [
        ['ADD', add[0]?.netns, `${ctrd.namespace}-${id}`, 'eth0'],
        ['DEL', '', `${ctrd.namespace}-${id}`, 'eth0'],
      ],
      'then exactly one DEL, with an empty CNI_NETNS',
    )
    t.notOk(ctrOutput.includes('network review'), `ctr logged no DEL failure: ${ctrOutput.trim()}`)
    t.notOk(existsSync(reservation), 'DEL released the address')
    t.equal(await link(hostVeth), undefined, `host veth ${hostVeth} is gone`)
    t.notOk(
      (await routes()).some((r) => r.dst === `${podIp}/32`),
      `no host route to ${podIp} is left`,
    )
    t.same(await ctrd.tasks(), {}, 'no task is left')
    await ctrd.ctrOk(['container', 'delete', id])
  })
}

function recordedCallsText(view: { callLog: string }): string {
  try {
    return `plugin calls: ${JSON.stringify(recordedCalls(view as Parameters<typeof recordedCalls>[0]))}`
  } catch {
    return ''
  }
}
