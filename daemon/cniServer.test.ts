// flatnetd's CNI socket with the real native entry (dist/bin/flatnet) in front of it: the same
// bytes as the Node plugin, the peer and namespace checks, a daemon killed mid-call, and a
// stalled caller that holds nobody up. The server runs as its own process in a throw-away node
// namespace (daemon/testing/cniServerProcess.ts), the entry is called as a runtime calls it.
import t, { type Test } from 'tap'
import { chmodSync, readdirSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { flatnetBinary, flatnetMissingReason, inNetns, links, run, runCni, testDir, testNamespaces, testRanges, type CniCall, type CniCommand, type CniEnv } from '../e2e/helpers/index.js'
import type { Netns } from '../e2e/helpers/netns.js'
import { makeNode } from '../plugin/testing/testHarness.js'
import { pino } from 'pino'
import { startCniServer } from './cniServer.js'
import { decodeCniResponse } from './cniWire.js'
import { DaemonMetrics } from './metrics.js'
import { startCniTestServer, type CniTestServer } from './testing/cniServerProcess.js'

const skip = flatnetMissingReason()
const CNI_PATH = '/opt/cni/bin'

interface Bed {
  node: Netns
  dir: string
  socket: string
  server: CniTestServer
  conf: Record<string, unknown>
  pod(): Promise<Netns>
  /** The entry, in the node namespace, through the server (fast) or with no socket (fallback). */
  call(path: 'fast' | 'fallback', verb: CniCommand, env: CniEnv, config: object | string): Promise<CniCall>
}

async function bed(t: Test, tag: string, serverEnv: Record<string, string> = {}): Promise<Bed> {
  const spaces = testNamespaces(t, tag)
  const { dir } = testDir(t, tag)
  const node = await spaces.create('node')
  await makeNode(node)
  const socket = join(dir, 'cni.sock')
  const server = await startCniTestServer(node.name, socket, serverEnv)
  t.teardown(() => server.stop())
  const [range] = testRanges(1)
  let n = 0
  return {
    node,
    dir,
    socket,
    server,
    conf: { cniVersion: '1.1.0', name: 'net1', type: 'flatnet', ranges: [range!.cidr], dataDir: join(dir, 'store'), mtu: 1450 },
    pod: () => spaces.create(`pod${++n}`),
    call: (path, verb, env, config) =>
      runCni(flatnetBinary, verb, { env, config, hostNetns: node.name, hooks: { FLATNET_CNI_SOCKET: path === 'fast' ? socket : join(dir, 'absent.sock') }, timeoutMs: 60_000 }),
  }
}

/** What differs between two ADDs of the same kind by nature: the MAC addresses and the pod address. */
function normalizeAdd(stdout: string): string {
  return stdout
    .replace(/"mac":"[0-9a-f:]+"/g, '"mac":"M"')
    .replace(/\d+\.\d+\.\d+\.\d+\/32/g, 'A/32')
    .replace(/fnt-[a-z0-9-]+/g, 'NS')
    .replace(/"name":"fn[0-9a-f]+"/g, '"name":"V"')
}

t.test('fast path and fallback answer the same bytes and exit code, for every verb and for errors', { skip }, async (t) => {
  const b = await bed(t, 'cfsame')
  const podEnv = (pod: Netns, id: string): CniEnv => ({ CNI_CONTAINERID: id, CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH })
  const notNetns = join(b.dir, 'plain-file')
  writeFileSync(notNetns, 'x')
  const p1 = await b.pod()
  const cases: Array<[string, CniCommand, CniEnv, object | string]> = [
    ['VERSION without config', 'VERSION', {}, ''],
    ['VERSION 0.4.0', 'VERSION', {}, { cniVersion: '0.4.0' }],
    ['STATUS', 'STATUS', { CNI_PATH }, b.conf],
    ['GC with nothing', 'GC', { CNI_PATH }, { ...b.conf, 'cni.dev/valid-attachments': [] }],
    ['malformed JSON', 'ADD', podEnv(p1, 'x1'), '{"cniVersion": '],
    ['missing CNI_CONTAINERID', 'ADD', { CNI_NETNS: p1.path, CNI_IFNAME: 'eth0', CNI_PATH }, b.conf],
    ['CNI_NETNS that does not exist', 'ADD', podEnv({ name: 'gone', path: '/run/netns/fnt-does-not-exist' }, 'x2'), b.conf],
    ['CNI_NETNS a regular file', 'ADD', podEnv({ name: 'file', path: notNetns }, 'x3'), b.conf],
    ['CNI_NETNS relative', 'ADD', podEnv({ name: 'rel', path: 'netns/x' }, 'x4'), b.conf],
    ['CNI_NETNS the node itself', 'ADD', podEnv({ name: 'self', path: '/proc/self/ns/net' }, 'x5'), b.conf],
    ['unsupported cniVersion', 'ADD', podEnv(p1, 'x6'), { ...b.conf, cniVersion: '9.9.9' }],
    ['CHECK on 0.3.1', 'CHECK', podEnv(p1, 'x7'), { ...b.conf, cniVersion: '0.3.1' }],
    ['CHECK of nothing added', 'CHECK', podEnv(p1, 'x8'), b.conf],
    ['DEL of nothing added', 'DEL', podEnv(p1, 'x9'), b.conf],
    ['unknown verb', 'NOPE' as CniCommand, {}, b.conf],
  ]
  for (const [what, verb, env, config] of cases) {
    const fast = await b.call('fast', verb, env, config)
    const slow = await b.call('fallback', verb, env, config)
    t.equal(fast.stdout, slow.stdout, `${what}: same stdout (${slow.stdout.trim().slice(0, 120)})`)
    t.equal(fast.code, slow.code, `${what}: same exit code ${slow.code}`)
    // Runtimes copy a plugin's stderr into their logs: flatnetd sends each call's back with it.
    t.equal(fast.stderr, slow.stderr, `${what}: same stderr (${JSON.stringify(slow.stderr.trim().slice(0, 120))})`)
  }

  // ADD, CHECK, DEL of one pod on each path: the same bytes but for what every ADD makes anew.
  const out: Record<string, string[]> = { fast: [], fallback: [] }
  for (const path of ['fast', 'fallback'] as const) {
    const pod = await b.pod()
    const add = await b.call(path, 'ADD', podEnv(pod, `c-${path}`), b.conf)
    t.equal(add.code, 0, `${path} ADD: ${add.stdout}${add.stderr}`)
    const check = await b.call(path, 'CHECK', podEnv(pod, `c-${path}`), { ...b.conf, prevResult: add.json })
    const again = await b.call(path, 'ADD', podEnv(pod, `c-${path}`), b.conf)
    const del = await b.call(path, 'DEL', podEnv(pod, `c-${path}`), b.conf)
    out[path] = [normalizeAdd(add.stdout), String(add.code), check.stdout, String(check.code), normalizeAdd(again.stdout), String(again.code), del.stdout, String(del.code)]
    t.same(
      (await links(pod)).map((l) => l.ifname),
      ['lo'],
      `${path}: DEL left the pod with lo only`,
    )
  }
  t.same(out.fast, out.fallback, 'ADD, CHECK, a second ADD (interface exists), DEL: same answers on both paths')
  t.equal(out.fast[1], '0')
})

t.test('the pod namespace is the one the caller opened: /proc/<pid>/ns/net of a process only the caller sees', { skip }, async (t) => {
  const b = await bed(t, 'cfproc')
  const pod = await b.pod()
  // The "runtime" lives in pid and mount namespaces of its own, as a containerized runtime or a
  // daemon in a pod would see each other: its /proc/<pid> names a process the server's /proc does
  // not (or names another one). Only a descriptor opened by the entry carries the right namespace.
  const entry = (verb: string) =>
    `ip netns exec ${b.node.name} /usr/bin/env -i CNI_COMMAND=${verb} CNI_CONTAINERID=proc1 CNI_NETNS=/proc/$pid/ns/net CNI_IFNAME=eth0 CNI_PATH=${CNI_PATH} FLATNET_CNI_SOCKET=${b.socket} ${flatnetBinary}`
  const script = `ip netns exec ${pod.name} sleep 30 & pid=$!; sleep 0.2; echo "pid $pid"; ${entry('ADD')}; echo " exit $?"; kill $pid`
  const r = await run(['unshare', '--pid', '--fork', '--mount-proc', 'sh', '-c', script], { input: JSON.stringify(b.conf), timeoutMs: 60_000 })
  t.match(r.stdout, /^pid \d+\n/, 'the holder has a pid of the inner pid namespace')
  t.match(r.stdout, /"interfaces":.* exit 0\n$/s, `ADD succeeded: ${r.stdout}${r.stderr}`)
  t.same((await links(pod)).map((l) => l.ifname).sort(), ['eth0', 'lo'], 'eth0 is in the namespace the runtime named')
  const del = await b.call('fast', 'DEL', { CNI_CONTAINERID: 'proc1', CNI_IFNAME: 'eth0', CNI_PATH }, b.conf)
  t.equal(del.code, 0, del.stdout)
})

t.test('flatnetd killed in the middle of an ADD: error 11 for the runtime to retry, no second attempt by the fallback', { skip }, async (t) => {
  const b = await bed(t, 'cfkill', { FLATNET_TEST_CRASH_AT: 'after-veth' })
  const pod = await b.pod()
  const env = { CNI_CONTAINERID: 'k1', CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH }
  const add = await b.call('fast', 'ADD', env, b.conf)
  t.equal(add.code, 1)
  t.match(add.json, { cniVersion: '1.1.0', code: 11, msg: /try again later/ }, add.stdout)
  await b.server.exited
  t.notOk(b.server.alive(), 'the server died at the kill point')
  const store = readdirSync(join(b.dir, 'store', 'net1')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
  t.equal(store.length, 1, `exactly one address reserved, by the one attempt (${store.join(' ')})`)
  t.same((await links(pod)).map((l) => l.ifname).sort(), ['eth0', 'lo'], 'the one attempt got as far as the veth, and nothing added a second')
  // The runtime's retry: DEL, now through the fallback (the socket refuses: nobody listens).
  const del = await b.call('fast', 'DEL', env, b.conf)
  t.equal(del.code, 0, del.stdout)
  t.same(
    (await links(pod)).map((l) => l.ifname),
    ['lo'],
    'DEL after the crash cleaned the pod',
  )
  t.same(
    readdirSync(join(b.dir, 'store', 'net1')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)),
    [],
    'and the store',
  )
})

t.test('a caller in another network namespace is declined and served by the fallback', { skip }, async (t) => {
  const b = await bed(t, 'cfdecl')
  const spaces = testNamespaces(t, 'cfdecl2')
  const other = await spaces.create('node2')
  await makeNode(other)
  const pod = await b.pod()
  const env = { CNI_CONTAINERID: 'd1', CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH }
  const add = await runCni(flatnetBinary, 'ADD', { env, config: b.conf, hostNetns: other.name, hooks: { FLATNET_CNI_SOCKET: b.socket }, timeoutMs: 60_000 })
  t.equal(add.code, 0, add.stdout + add.stderr)
  const hostVeths = async (ns: Netns) => (await links(ns)).filter((l) => l.ifname !== 'lo').length
  t.equal(await hostVeths(other), 1, "the host end is in the caller's namespace")
  t.equal(await hostVeths(b.node), 0, "not in the server's")
  const stdin = JSON.stringify(b.conf)
  const del = await run(
    [
      'ip',
      'netns',
      'exec',
      other.name,
      '/usr/bin/env',
      '-i',
      'CNI_COMMAND=DEL',
      'CNI_CONTAINERID=d1',
      'CNI_IFNAME=eth0',
      `CNI_PATH=${CNI_PATH}`,
      `FLATNET_CNI_SOCKET=${b.socket}`,
      `PATH=${process.env.PATH}`,
      flatnetBinary,
    ],
    { input: stdin },
  )
  t.equal(del.code, 0, del.stdout)
})

t.test("only root is served: another uid's connection is closed unanswered", { skip }, async (t) => {
  const b = await bed(t, 'cfuid')
  // Let the kernel's file checks pass, so the peer check is what refuses.
  chmodSync(b.dir, 0o755)
  chmodSync(b.socket, 0o666)
  const r = await run(
    ['ip', 'netns', 'exec', b.node.name, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/env', '-i', 'CNI_COMMAND=VERSION', `FLATNET_CNI_SOCKET=${b.socket}`, flatnetBinary],
    { input: '' },
  )
  t.equal(r.code, 1)
  t.match(JSON.parse(r.stdout), { code: 11 }, 'the entry reports the connection lost; nothing was served')
})

t.test('a caller that stalls mid-request holds up no other call; a request over the size limit is refused', { skip }, async (t) => {
  const b = await bed(t, 'cfstall')
  // The node namespace's socket path is a file: a stalled client can connect from here, but the
  // server declines callers of other namespaces only after reading; it reads nothing from this one.
  const stalled = await inNetnsConnect(b.node, b.socket)
  stalled.write(Buffer.from([0xff, 0x00])) // half a length prefix, then nothing
  const v = await b.call('fast', 'VERSION', {}, '')
  t.equal(v.code, 0, 'VERSION answered while another connection stalls')
  t.match(v.json, { supportedVersions: Array })
  stalled.destroy()

  // A configuration over the socket's limit: the entry sends nothing and runs the Node plugin.
  const env = { CNI_CONTAINERID: 'big', CNI_NETNS: '/run/netns/fnt-none', CNI_IFNAME: 'eth0', CNI_PATH }
  const huge = JSON.stringify({ ...b.conf, pad: 'x'.repeat(5 << 20) })
  const [fast, slow] = [await b.call('fast', 'ADD', env, huge), await b.call('fallback', 'ADD', env, huge)]
  t.equal(fast.stdout, slow.stdout, `a 5 MiB configuration: the same answer (${slow.stdout.trim().slice(0, 100)})`)
  t.equal(fast.code, slow.code)

  // A client announcing more than the limit gets an error, not an allocation of its size.
  const raw = await inNetnsConnect(b.node, b.socket)
  const answer = new Promise<Buffer>((resolve) => {
    const parts: Buffer[] = []
    raw.on('data', (d: Buffer) => parts.push(d))
    raw.on('close', () => resolve(Buffer.concat(parts)))
  })
  raw.write(Buffer.from([0, 0, 0x50, 0])) // 5 MiB
  const { exitCode, document } = decodeCniResponse(await answer)
  t.equal(exitCode, 1)
  t.match(JSON.parse(document.toString()), { code: 5, msg: /exceeds the limit/ })
})

/** A raw connection to the socket (same mount namespace: the path is reachable from here). */
function inNetnsConnect(_ns: Netns, path: string): Promise<import('node:net').Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path, () => resolve(s))
    s.on('error', reject)
  })
}

void inNetns

t.test('metrics: calls by verb and result, the latency histogram, none in flight after', { skip }, async (t) => {
  // In this process, so its DaemonMetrics can be read; VERSION and a config error touch no kernel.
  const { dir } = testDir(t, 'cfmet')
  const metrics = new DaemonMetrics()
  const server = await startCniServer({ socketPath: join(dir, 'cni.sock'), log: pino({ level: 'silent' }), metrics })
  t.teardown(() => server.close())
  const call = (verb: CniCommand, config: string) => runCni(flatnetBinary, verb, { config, hooks: { FLATNET_CNI_SOCKET: server.socketPath } })
  t.equal((await call('VERSION', '')).code, 0)
  t.equal((await call('VERSION', '')).code, 0)
  t.equal((await call('ADD', '{')).code, 1)
  const text = metrics.render()
  t.match(text, /^flatnet_cni_calls_total\{verb="VERSION",result="ok"\} 2$/m)
  t.match(text, /^flatnet_cni_calls_total\{verb="ADD",result="error"\} 1$/m)
  t.match(text, /^flatnet_cni_call_duration_seconds_count 3$/m)
  t.match(text, /^flatnet_cni_calls_in_flight 0$/m)
})
