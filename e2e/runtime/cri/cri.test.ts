// The kubelet's own path: containerd's CRI plugin, driven over gRPC as a kubelet drives it, with
// the conflist the real flatnetd wrote into containerd's CNI conf dir. On a node with Debian's
// portmap and on one without it:
//   the runtime reports its network not ready until flatnetd writes the conflist, then ready;
//   pods get addresses, reach each other and the node; the store records their Kubernetes
//   identity; hostPort works through the chained portmap; pods survive a containerd restart;
//   StopPodSandbox releases the address, veth, route and port mapping, RemovePodSandbox the rest.
// Dual-stack: with both cluster ranges, CRI reports each pod's IPv4 address as its IP and its
// IPv6 one in additional_ips (what the kubelet turns into podIPs), and both work.
// And the failure this guards against: a 1.1.0 list (flatnetd --cni-version 1.1.0) fails every
// pod on containerd 1.6 while its CRI status still says the network is ready.
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { eventually, flatnetdMissingReason } from '../../../daemon/testing/harness.js'
import { flatnetMissingReason, run } from '../../helpers/index.js'
import { CriCallError, type PodSandboxConfig } from './client.js'
import { CriNode, NODE_ADDRESS } from './node.js'

const skip = flatnetMissingReason() ?? flatnetdMissingReason() ?? (existsSync('/usr/bin/containerd') ? undefined : 'containerd not installed (scripts/install-deps.sh)')

const POD_NAMESPACE = 'flatnet-cri'
const HOST_PORT = 18080
const CONTAINER_PORT = 8080

interface RunningPod {
  id: string
  name: string
  ip: string
  /** Every address CRI reports: `ip` (the primary family's), then `additional_ips` (kubelet's podIPs). */
  ips: string[]
  /** The pod's network namespace (bind mount of the CRI plugin). */
  netns: string
}

function podConfig(node: CriNode, name: string, portMappings: boolean): PodSandboxConfig {
  return {
    metadata: { name, uid: randomUUID(), namespace: POD_NAMESPACE, attempt: 0 },
    hostname: name,
    port_mappings: portMappings ? [{ protocol: 'TCP', container_port: CONTAINER_PORT, host_port: HOST_PORT }] : [],
    labels: { app: name },
    linux: { cgroup_parent: node.containerd.podCgroupParent },
  }
}

/** RunPodSandbox, then what PodSandboxStatus says of it: ready, its IP, its network namespace. */
async function runPod(t: Test, node: CriNode, name: string, portMappings = false): Promise<RunningPod> {
  const id = await node.cri.runPodSandbox(podConfig(node, name, portMappings))
  const { status, info } = await node.cri.podSandboxStatus(id)
  t.equal(status.state, 'SANDBOX_READY', `${name}: sandbox ready`)
  t.same(status.metadata && { name: status.metadata.name, namespace: status.metadata.namespace }, { name, namespace: POD_NAMESPACE }, `${name}: its metadata as the kubelet gave it`)
  const netns = networkNamespaceOf(info)
  const ip = status.network?.ip ?? ''
  return { id, name, ip, ips: [ip, ...(status.network?.additional_ips ?? []).map((a) => a.ip)].filter(Boolean), netns }
}

/** The sandbox's network namespace path from containerd's verbose info (its OCI runtime spec). */
function networkNamespaceOf(info: Record<string, string>): string {
  const doc = JSON.parse(info.info ?? '{}') as { runtimeSpec?: { linux?: { namespaces?: Array<{ type: string; path?: string }> } } }
  const path = doc.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network')?.path
  if (!path) throw new Error(`pod sandbox status: no network namespace in the verbose info: ${JSON.stringify(info).slice(0, 500)}`)
  return path
}

function inPod(pod: RunningPod, argv: readonly string[], input = '') {
  return run(['nsenter', `--net=${pod.netns}`, ...argv], { input, timeoutMs: 15_000 })
}

function ping(from: RunningPod, to: string) {
  return inPod(from, ['/bin/busybox', 'ping', '-c', '1', '-W', '3', to])
}

function reservations(node: CriNode): string[] {
  const dir = join(node.ipamDataDir, 'flatnet')
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
        .sort()
    : []
}

async function hostVeths(node: CriNode): Promise<string[]> {
  const r = await node.inNode(['ip', '-o', 'link', 'show', 'type', 'veth'])
  return r.stdout
    .split('\n')
    .map((l) => /^\d+: ([^@:]+)/.exec(l)?.[1])
    .filter((n): n is string => !!n && n !== 'lan0' && n !== 'lan1')
}

async function natRulesFor(node: CriNode, port: number): Promise<string[]> {
  const r = await node.inNode(['iptables-save', '-t', 'nat'])
  return r.stdout.split('\n').filter((l) => l.includes(`--dport ${port}`))
}

/** Connects to NODE_ADDRESS:HOST_PORT from `from` and returns what the server sent. */
async function viaHostPort(from: RunningPod): Promise<string> {
  const r = await inPod(from, ['/bin/busybox', 'nc', '-w', '3', NODE_ADDRESS, String(HOST_PORT)])
  return r.stdout.trim()
}

/** The conflist of the README's "Install on a host by hand" recipe. */
function readmeConflist(): { cniVersion: string; plugins: Array<{ type: string; ranges?: string[]; dataDir?: string }> } {
  const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8')
  const m = /cat > \/etc\/cni\/net\.d\/10-flatnet\.conflist <<'EOF'\n([\s\S]*?)\nEOF\n/.exec(readme)
  if (!m) throw new Error("README.md: no by-hand conflist (cat > /etc/cni/net.d/10-flatnet.conflist <<'EOF' … EOF)")
  return JSON.parse(m[1]!)
}

for (const portmap of [true, false]) {
  const label = portmap ? 'with portmap on the node' : 'without portmap on the node'
  t.test(`containerd's CRI runs pods on the conflist flatnetd writes, ${label}`, { skip, timeout: 240_000 }, async (t) => {
    const node = await CriNode.create(t, { portmap })
    const version = await node.cri.version()
    t.equal(version.runtime_name, 'containerd')
    t.equal((await node.cri.status()).RuntimeReady?.status, true, 'runtime ready')
    t.equal((await node.cri.status()).NetworkReady?.status, false, 'network not ready before a conflist exists (the kubelet keeps the node NotReady)')

    node.startFlatnetd()
    const conflist = await eventually(
      'flatnetd writes the conflist',
      () => existsSync(node.conflistPath),
      (ok) => ok,
      30_000,
    ).then(() => node.readConflist())
    t.equal(conflist.cniVersion, '1.0.0', 'a version containerd 1.6 reads')
    t.same(
      conflist.plugins.map((p) => p.type),
      portmap ? ['flatnet', 'portmap'] : ['flatnet'],
    )
    const subnet = conflist.plugins[0]?.ranges?.[0] ?? ''
    const base = subnet.replace(/\.0\/24$/, '.')
    await eventually(
      'CRI reports the network ready',
      () => node.cri.status(),
      (s) => s.NetworkReady?.status === true,
      30_000,
    )

    const web = await runPod(t, node, 'web', portmap)
    const client = await runPod(t, node, 'client')
    t.ok(web.ip.startsWith(base) && client.ip.startsWith(base) && web.ip !== client.ip, `two addresses of the node's subnet ${subnet}: ${web.ip}, ${client.ip}`)
    const eth0 = await inPod(web, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])
    t.match(eth0.stdout, new RegExp(`inet ${web.ip.replaceAll('.', '\\.')}/32 `), 'the pod sees the address CRI reports, /32 on eth0')

    // The store records who holds each address, as the runtime named the pod.
    t.same(reservations(node), [client.ip, web.ip].sort(), 'one reservation per pod')
    const record = JSON.parse(readFileSync(join(node.ipamDataDir, 'flatnet', web.ip), 'utf8')) as Record<string, string>
    t.same(
      { containerId: record.containerId, ifname: record.ifname, podNamespace: record.podNamespace, podName: record.podName },
      { containerId: web.id, ifname: 'eth0', podNamespace: POD_NAMESPACE, podName: 'web' },
      "the reservation carries the pod's Kubernetes identity",
    )

    t.equal((await ping(web, client.ip)).code, 0, 'pod → pod')
    t.equal((await ping(client, web.ip)).code, 0, 'pod → pod, the other way')
    t.equal((await ping(web, NODE_ADDRESS)).code, 0, 'pod → node')
    t.equal((await node.inNode(['/bin/busybox', 'ping', '-c', '1', '-W', '3', web.ip])).code, 0, 'node → pod')

    if (portmap) {
      node.serveInPod(web.netns, CONTAINER_PORT, 'hello-from-web')
      const answer = await eventually(
        'hostPort answers',
        () => viaHostPort(client),
        (a) => a === 'hello-from-web',
        15_000,
      )
      t.equal(answer, 'hello-from-web', `${NODE_ADDRESS}:${HOST_PORT} reaches the pod through the chained portmap`)
      t.ok((await natRulesFor(node, HOST_PORT)).length > 0, "portmap's DNAT rule is in place")
    }

    // containerd restarts (an upgrade): the pods keep running, their network and their status.
    await node.containerd.restart()
    await eventually(
      'CRI answers after the restart',
      () => node.cri.status().catch(() => ({})),
      (s: Record<string, { status: boolean }>) => s.NetworkReady?.status === true,
      30_000,
    )
    const after = await node.cri.podSandboxStatus(web.id)
    t.equal(after.status.state, 'SANDBOX_READY', 'the pod is still ready after a containerd restart')
    t.equal(after.status.network?.ip, web.ip, 'with the same address')
    t.equal((await ping(web, client.ip)).code, 0, 'and still reaches the other pod')
    if (portmap) t.equal(await viaHostPort(client), 'hello-from-web', 'and still answers on its hostPort')

    // Stop releases the network (CNI DEL through containerd, after its restart); remove the rest.
    const vethsBefore = await hostVeths(node)
    t.equal(vethsBefore.length, 2, 'one host veth per pod')
    await node.cri.stopPodSandbox(web.id)
    t.equal((await node.cri.podSandboxStatus(web.id)).status.state, 'SANDBOX_NOTREADY', 'stopped')
    t.same(reservations(node), [client.ip], 'StopPodSandbox released the address')
    t.equal((await hostVeths(node)).length, 1, 'and its host veth')
    const route = await node.inNode(['ip', 'route', 'show', `${web.ip}/32`])
    t.equal(route.stdout.trim(), '', 'and its host route')
    if (portmap) t.same(await natRulesFor(node, HOST_PORT), [], 'and its port mapping')
    t.equal((await ping(client, web.ip)).code === 0, false, 'the stopped pod is unreachable')
    await node.cri.removePodSandbox(web.id)
    const gone = await node.cri.podSandboxStatus(web.id).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(gone instanceof CriCallError && gone.code === 5, `RemovePodSandbox: the sandbox is gone (NOT_FOUND): ${String(gone)}`)
    t.notOk(existsSync(web.netns), 'its network namespace mount is gone')

    await node.cri.stopPodSandbox(client.id)
    await node.cri.removePodSandbox(client.id)
    await node.cri.stopPodSandbox(client.id).catch(() => undefined)
    t.same(reservations(node), [], 'no reservation left')
    t.same(await hostVeths(node), [], 'no host veth left')

    if (portmap) {
      // The README's by-hand conflist, as printed there, on the same runtime; only its store is
      // moved into this test's directory (the example leaves dataDir at the system default).
      await node.stopFlatnetd()
      const byHand = readmeConflist()
      t.equal(byHand.cniVersion, conflist.cniVersion, "the README's example is in the version flatnetd writes")
      byHand.plugins[0]!.dataDir = node.ipamDataDir
      writeFileSync(node.conflistPath, JSON.stringify(byHand, null, 2))
      const range = byHand.plugins[0]!.ranges![0]!
      // containerd reloads its conf dir on a file event; until then a pod may still get the old list.
      const onByHandList = async () => {
        const p = await runPod(t, node, 'by-hand')
        if (p.ip.startsWith(range.replace(/\.0\/24$/, '.'))) return p
        await node.cri.stopPodSandbox(p.id)
        await node.cri.removePodSandbox(p.id)
        return `pod got ${p.ip}, not an address of ${range}`
      }
      const pod = await eventually(
        "containerd runs a pod on the README's conflist",
        () => onByHandList().catch((e: unknown) => String(e)),
        (p) => typeof p !== 'string',
        30_000,
      )
      if (typeof pod !== 'string') {
        t.pass(`the README's conflist gives the pod ${pod.ip} from ${range}`)
        t.equal((await ping(pod, NODE_ADDRESS)).code, 0, 'and it reaches the node')
        await node.cri.stopPodSandbox(pod.id)
        await node.cri.removePodSandbox(pod.id)
        t.same(reservations(node), [], 'released on stop')
      }
    }

    if (!portmap) {
      // What this default prevents: a 1.1.0 list. containerd 1.6 runs the plugin, cannot read its
      // result, tears the pod down — and its CRI status still reports the network ready.
      await node.stopFlatnetd()
      node.startFlatnetd(['--cni-version', '1.1.0'])
      await eventually(
        'flatnetd rewrites the conflist at 1.1.0',
        () => node.readConflist().cniVersion,
        (v) => v === '1.1.0',
        30_000,
      )
      const failed = await eventually(
        'containerd loads the 1.1.0 list',
        async () =>
          node.cri.runPodSandbox(podConfig(node, 'doomed', false)).then(
            (id) => ({ id, error: '' }),
            (e: unknown) => ({ id: '', error: String(e) }),
          ),
        (r) => r.error.includes('1.1.0') || r.id !== '',
        30_000,
      )
      t.match(failed.error, /unsupported CNI result version "1\.1\.0"/, 'RunPodSandbox fails on a 1.1.0 list')
      t.equal((await node.cri.status()).NetworkReady?.status, true, 'while CRI status still reports the network ready')
      t.same(reservations(node), [], 'the failed pod holds no address')
      t.same(await hostVeths(node), [], 'and no host veth')
    }
  })
}

t.test("containerd's CRI runs dual-stack pods: IPv4 as the pod IP, IPv6 in additional_ips, both reachable", { skip, timeout: 240_000 }, async (t) => {
  const node = await CriNode.create(t, { portmap: false })
  const NODE_ADDRESS6 = 'fd00:79::1'
  // A node namespace starts with IPv6 defaults (DAD on): the address is added without DAD.
  await node.inNode(['ip', 'addr', 'add', `${NODE_ADDRESS6}/64`, 'dev', 'lan0', 'nodad'])
  node.startFlatnetd(['--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56', '--node-ip', `${NODE_ADDRESS},${NODE_ADDRESS6}`])
  const conflist = await eventually(
    'flatnetd writes the dual-stack conflist',
    () => (existsSync(node.conflistPath) ? node.readConflist() : undefined),
    (c) => (c?.plugins[0]?.ranges?.length ?? 0) === 2,
    30_000,
  )
  const [range4, range6] = conflist!.plugins[0]!.ranges!
  t.match(range4, /^10\.244\.\d+\.0\/24$/, `the IPv4 subnet first: ${range4}`)
  t.ok(range6?.startsWith('fd00:10:244:') && range6.endsWith('::/64'), `then the IPv6 one, a /64 of fd00:10:244::/56: ${range6}`)
  await eventually(
    'CRI reports the network ready',
    () => node.cri.status(),
    (s) => s.NetworkReady?.status === true,
    30_000,
  )
  const web = await runPod(t, node, 'web6')
  const client = await runPod(t, node, 'client6')
  for (const pod of [web, client]) {
    t.equal(pod.ips.length, 2, `${pod.name}: two addresses, ${pod.ips.join(', ')}`)
    t.ok(pod.ips[0]!.startsWith(range4!.replace(/0\/24$/, '')), `${pod.name}: the pod IP is IPv4, of ${range4}`)
    t.ok(pod.ips[1]!.startsWith(range6!.replace(/::\/64$/, ':')), `${pod.name}: additional_ips holds the IPv6 address, of ${range6}`)
    const eth0 = await inPod(pod, ['ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'global'])
    t.match(eth0.stdout, `inet6 ${pod.ips[1]}/128`, `${pod.name}: eth0 carries it as /128`)
    t.notMatch(eth0.stdout, /tentative/, `${pod.name}: not waiting on DAD`)
  }
  t.equal((await ping(web, client.ips[1]!)).code, 0, 'pod → pod over IPv6')
  t.equal((await ping(web, client.ip)).code, 0, 'pod → pod over IPv4')
  t.equal((await ping(web, NODE_ADDRESS6)).code, 0, 'pod → node over IPv6')
  t.equal((await node.inNode(['/bin/busybox', 'ping', '-c', '1', '-W', '3', web.ips[1]!])).code, 0, 'node → pod over IPv6')
  for (const pod of [web, client]) {
    await node.cri.stopPodSandbox(pod.id)
    await node.cri.removePodSandbox(pod.id)
  }
  t.same(await hostVeths(node), [], 'no host veth left')
  const left = await node.inNode(['ip', '-6', 'route', 'show', 'proto', '201'])
  t.equal(left.stdout.trim(), '', 'no IPv6 pod route left')
})
