// flatnetd under the restrictions deploy/flatnet.yaml gives its container, played on this machine:
// the manifest's command line and environment (downward-API values filled in), inside a
// throw-away namespace playing the node's network (hostNetwork), with exactly the capabilities the
// manifest adds (setpriv: bounding set = NET_ADMIN), no_new_privs (allowPrivilegeEscalation:
// false), a read-only root filesystem (readOnlyRootFilesystem) and a read-only /proc/sys (what a
// runtime gives an unprivileged container). Only two things differ from a node: the file
// datastore stands in for the API server (no kube-apiserver runs here), and the host directories
// the manifest mounts are temp dirs passed by flag (manifests.test.ts checks the mounts map to
// the daemon's default paths).
//
// It proves: NET_ADMIN is enough (ready, masquerade table installed), the probes' paths answer
// on the probed port at the node IP, and what happens without NET_ADMIN or with forwarding off.
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import type { IContainer } from 'kubernetes-models/v1/Container'
import t from 'tap'
import { exactEnvArgv, flatnetBinary, inNetns, runCni, runOk, testDir, testNamespaces, type Netns, type Teardown } from '../e2e/helpers/index.js'
import { LOCK_DIR } from '../plugin/attachmentLock.js'
import { eventually, flatnetdBinary, flatnetdMissingReason, nodeNamespace } from '../daemon/testing/harness.js'
import { repoRoot } from './testing/cniPackage.js'
import { expandKubeVars, readManifest, type KubeObject } from './testing/manifests.js'

const skip = flatnetdMissingReason()
const daemonSetIn = (file: string) => readManifest(join(repoRoot, 'deploy', file)).find((d) => d.kind === 'DaemonSet') as KubeObject & IDaemonSet
const daemonSet = daemonSetIn('flatnet.yaml')
const container = daemonSet.spec!.template.spec!.containers.find((c) => c.name === 'flatnetd')!
/** The flatnetd container of deploy/flatnet-fastpath.yaml (privileged, serving the CNI socket). */
const fastPathContainer = daemonSetIn('flatnet-fastpath.yaml').spec!.template.spec!.containers.find((c) => c.name === 'flatnetd')!
const NODE = { NODE_NAME: 'dctr-node', HOST_IP: '192.168.79.10' }

/** The container's environment as the kubelet builds it (downward API filled in), plus PATH. */
function containerEnv(c: IContainer = container): Record<string, string> {
  const env: Record<string, string> = {}
  for (const e of c.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath
    if (field === 'spec.nodeName') env[e.name] = NODE.NODE_NAME
    else if (field === 'status.hostIP') env[e.name] = NODE.HOST_IP
    else if (field === 'metadata.namespace') env[e.name] = daemonSet.metadata?.namespace ?? 'default'
    else env[e.name] = expandKubeVars(e.value ?? '', env)
  }
  return { ...env, PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }
}

interface Contained {
  pid: number
  logs(): string
  exited: Promise<number>
  stop(): Promise<number>
}

/**
 * Starts the manifest's flatnetd command line in `ns` with only `caps`, no_new_privs, / and
 * /proc/sys read-only, and the `writable` directories (the host mounts) writable. `caps`
 * 'privileged': every capability and a writable /proc/sys, as a runtime gives `privileged: true`
 * (the root stays read-only: readOnlyRootFilesystem).
 */
function startContained(t: Teardown, ns: Netns, caps: string[] | 'privileged', writable: string[], extraArgs: string[], c: IContainer = container): Contained {
  const env = containerEnv(c)
  const [binary, ...args] = [...(c.command ?? []), ...(c.args ?? [])].map((a) => expandKubeVars(a, env))
  if (binary !== '/opt/flatnet/bin/flatnetd') throw new Error(`the manifest runs ${binary}; this test maps /opt/flatnet/bin/flatnetd only`)
  // A flag the test passes (a temp dir for a host path) replaces the manifest's own.
  const flagOf = (a: string) => a.split('=')[0]
  const argv = [flatnetdBinary, ...args.filter((a) => a !== '--datastore=kubernetes' && !extraArgs.some((x) => flagOf(x) === flagOf(a))), ...extraArgs]
  const script = [
    'set -e',
    'n=$1; shift',
    'i=0; while [ $i -lt $n ]; do mount --bind "$1" "$1"; shift; i=$((i+1)); done',
    ...(caps === 'privileged' ? [] : ['mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys']),
    'mount -o remount,bind,ro /',
    'exec "$@"',
  ].join('\n')
  const limits = caps === 'privileged' ? [] : ['setpriv', '--no-new-privs', `--bounding-set=${['-all', ...caps.map((c) => `+${c}`)].join(',')}`, '--inh-caps=-all']
  const child = spawn(
    'ip',
    ['netns', 'exec', ns.name, 'unshare', '--mount', '--propagation', 'private', '/bin/sh', '-c', script, 'sh', String(writable.length), ...writable, ...limits, ...exactEnvArgv(env, argv)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  let code: number | undefined
  const exited = new Promise<number>((resolve) => child.on('close', (c, sig) => resolve((code = c ?? (sig === 'SIGKILL' ? 137 : 143)))))
  t.teardown(async () => {
    if (code === undefined) {
      child.kill('SIGKILL')
      await exited
    }
  })
  return {
    pid: child.pid!,
    logs: () => out,
    exited,
    stop: async () => {
      if (code !== undefined) return code
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      try {
        return await exited
      } finally {
        clearTimeout(timer)
      }
    },
  }
}

/** GET from inside the node namespace, as the kubelet does from the node. */
async function probe(ns: Netns, host: string, port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await inNetns(ns, ['curl', '-sS', '--max-time', '3', '-w', '\n%{http_code}', `http://${host}:${port}${path}`])
  if (r.code !== 0) return { status: 0, body: r.stderr.trim() }
  const i = r.stdout.lastIndexOf('\n')
  return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) }
}

async function node(t: Teardown, tag: string, forwarding: '0' | '1') {
  const { dir } = testDir(t, tag)
  const nss = testNamespaces(t, tag)
  const ns = await nodeNamespace(nss, `${NODE.HOST_IP}/24`)
  await runOk(['ip', 'netns', 'exec', ns.name, 'sysctl', '-qw', `net.ipv4.ip_forward=${forwarding}`])
  const conf = join(dir, 'etc-cni-net.d')
  const state = join(dir, 'var-lib-flatnet')
  mkdirSync(conf)
  mkdirSync(state)
  const flags = [`--cni-conf-dir=${conf}`, `--state-dir=${state}`, '--datastore=file', `--datastore-file=${join(state, 'nodes.json')}`, '--reconcile-interval=1']
  return { ns, conf, state, writable: [conf, state], flags }
}

const portOf = (name: string | number | undefined) => (typeof name === 'number' ? name : container.ports!.find((p) => p.name === name)!.containerPort)

t.test('with NET_ADMIN only, read-only root and /proc/sys: ready, probes answer, masquerade installed', { skip }, async (t) => {
  const n = await node(t, 'dctrok', '1') // 1: kubeadm's preflight requires it on every node
  const d = startContained(t, n.ns, ['net_admin'], n.writable, n.flags)
  const readiness = container.readinessProbe!.httpGet!
  const liveness = container.livenessProbe!.httpGet!
  const ready = await eventually(
    `${readiness.path} 200`,
    () => probe(n.ns, NODE.HOST_IP, portOf(readiness.port), readiness.path!),
    (r) => r.status === 200 || d.logs().includes('"level":60'),
    20_000,
  )
  t.equal(ready.status, 200, `readiness probe ${readiness.path} on ${NODE.HOST_IP}:${portOf(readiness.port)}: ${ready.body} ${ready.status === 200 ? '' : d.logs()}`)
  t.match(JSON.parse(ready.body || '{}'), { ready: true, node: NODE.NODE_NAME }, 'ready, as this node')
  const live = await probe(n.ns, NODE.HOST_IP, portOf(liveness.port), liveness.path!)
  t.equal(live.status, 200, `liveness probe ${liveness.path}: ${live.body}`)
  t.not((await probe(n.ns, '127.0.0.1', portOf(readiness.port), readiness.path!)).status, 200, 'not on loopback: the health server is where the kubelet probes, the node IP')

  const status = readFileSync(`/proc/${d.pid}/status`, 'utf8')
  t.match(status, /^CapEff:\s+0000000000001000$/m, 'the daemon runs with CAP_NET_ADMIN (bit 12) and nothing else')
  t.comment(
    `flatnetd resident memory when ready: ${/^VmRSS:\s+(.*)$/m.exec(status)?.[1]} (the manifest requests ${container.resources?.requests?.memory}, limits ${container.resources?.limits?.memory})`,
  )
  t.match(status, /^NoNewPrivs:\s+1$/m, 'no_new_privs, as allowPrivilegeEscalation: false sets it')
  t.match(readFileSync(join(n.conf, '10-flatnet.conflist'), 'utf8'), /"type": ?"flatnet"/, 'the conflist is written')
  const table = await inNetns(n.ns, ['nft', 'list', 'table', 'inet', 'flatnet'])
  t.equal(table.code, 0, `the masquerade table is installed (nft needs NET_ADMIN only): ${table.stderr}`)
  t.equal(await d.stop(), 0, 'SIGTERM: clean exit')
})

t.test('without NET_ADMIN it cannot program the node, and says so', { skip }, async (t) => {
  const n = await node(t, 'dctrnocap', '1')
  const d = startContained(t, n.ns, [], n.writable, n.flags)
  const logs = await eventually(
    'a permission error in the log',
    () => d.logs(),
    (l) => /EPERM|Operation not permitted|EACCES/.test(l),
    20_000,
  )
  t.match(logs, /EPERM|Operation not permitted|EACCES/, 'the failure names the missing permission')
  t.not((await probe(n.ns, NODE.HOST_IP, portOf(container.readinessProbe!.httpGet!.port), '/readyz')).status, 200, 'not ready')
  t.not((await inNetns(n.ns, ['nft', 'list', 'table', 'inet', 'flatnet'])).code, 0, 'no masquerade table')
  await d.stop()
})

t.test('with forwarding off and /proc/sys read-only (an unprivileged container), the daemon stays up, not ready, naming the sysctl', { skip }, async (t) => {
  const n = await node(t, 'dctrfwd', '0')
  const d = startContained(t, n.ns, ['net_admin'], n.writable, n.flags)
  const readiness = container.readinessProbe!.httpGet!
  const liveness = container.livenessProbe!.httpGet!
  const notReady = await eventually(
    '/readyz names the sysctl',
    () => probe(n.ns, NODE.HOST_IP, portOf(readiness.port), readiness.path!),
    (r) => /ip_forward/.test(r.body),
    20_000,
  )
  t.equal(notReady.status, 503, 'not ready: the kubelet keeps the node out of service')
  t.match(notReady.body, /set sysctl net\.ipv4\.ip_forward=1: EROFS/, 'the reason names the sysctl and the read-only /proc/sys')
  t.equal((await probe(n.ns, NODE.HOST_IP, portOf(liveness.port), liveness.path!)).status, 200, 'alive: no restart loop')
  t.equal(await Promise.race([d.exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('running'), 200))]), 'running', 'still running')
})

t.test('the fast-path manifest (privileged): flatnetd serves the CNI entry on the host, which wires a pod through it', { skip }, async (t) => {
  const n = await node(t, 'dctrfast', '1')
  const { dir } = testDir(t, 'dctrfastrun')
  const socket = join(dir, 'cni.sock')
  const ipam = join(dir, 'var-lib-cni-flatnet')
  mkdirSync(ipam)
  mkdirSync(LOCK_DIR, { recursive: true })
  // The manifest's socket and store paths are host mounts (fastPathManifest.test.ts); here temp dirs by flag.
  const d = startContained(t, n.ns, 'privileged', [...n.writable, dir, LOCK_DIR], [...n.flags, `--cni-socket=${socket}`, `--ipam-data-dir=${ipam}`], fastPathContainer)
  const conflistPath = join(n.conf, '10-flatnet.conflist')
  const ready = await eventually(
    'ready, conflist written',
    () => probe(n.ns, NODE.HOST_IP, 9473, '/readyz'),
    (r) => (r.status === 200 && existsSync(conflistPath)) || d.logs().includes('"level":60'),
    20_000,
  ).catch((e: Error) => ({ status: 0, body: `${e.message}; flatnetd: ${d.logs().slice(-3000)}` }))
  t.equal(ready.status, 200, `ready: ${ready.body} ${ready.status === 200 ? '' : d.logs()}`)
  const conflist = JSON.parse(readFileSync(conflistPath, 'utf8')) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] }
  const conf = { cniVersion: conflist.cniVersion, name: conflist.name, ...conflist.plugins[0] }
  const pods = testNamespaces(t, 'dctrfastpod')
  const pod = await pods.create('pod')
  const env = { CNI_CONTAINERID: 'dctr-fast-1', CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' }
  const add = await runCni(flatnetBinary, 'ADD', { env, config: conf, hostNetns: n.ns.name, hooks: { FLATNET_CNI_SOCKET: socket } })
  t.equal(add.code, 0, `ADD through the entry: ${add.stdout}${add.stderr}`)
  const ip = (add.json as { ips?: { address: string }[] } | undefined)?.ips?.[0]?.address
  t.match(ip, /^10\.244\.\d+\.\d+\/32$/, `the pod got ${ip} from this node's subnet`)
  t.match((await inNetns(pod, ['ip', '-o', 'addr', 'show', 'eth0'])).stdout, ip!.split('/')[0]!, 'the pod has it on eth0')
  const metrics = await probe(n.ns, NODE.HOST_IP, 9473, '/metrics')
  t.match(metrics.body, /^flatnet_cni_calls_total\{verb="ADD",result="ok"\} 1$/m, 'flatnetd in the container served it (the fast path, not the fallback)')
  const del = await runCni(flatnetBinary, 'DEL', { env, config: conf, hostNetns: n.ns.name, hooks: { FLATNET_CNI_SOCKET: socket } })
  t.equal(del.code, 0, `DEL: ${del.stdout}${del.stderr}`)
  t.same((await inNetns(pod, ['ip', '-o', 'link', 'show'])).stdout.split('\n').filter(Boolean).length, 1, 'the pod is left with lo only')
  t.equal(await d.stop(), 0, 'SIGTERM: clean exit')
})
