// The helpers other tests stand on: if these lie, every test above them lies too.
import t from 'tap'
import { chmodSync, existsSync, readFileSync } from 'node:fs'
import { inNetns, inNetnsOk, ipv4Of, link, routeGet, routes, run, runCni, sysctl, testNamespaces } from './index.js'

t.test('runCni gives the plugin only CNI_* and PATH, like a runtime', async (t) => {
  const call = await runCni('/usr/bin/env', 'ADD', {
    env: { CNI_CONTAINERID: 'c1', CNI_NETNS: '', CNI_IFNAME: 'eth0' },
    config: {},
  })
  t.equal(call.code, 0)
  const names = call.stdout
    .trim()
    .split('\n')
    .map((line) => line.split('=')[0])
    .sort()
  t.same(names, ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_NETNS', 'PATH'])
  t.match(call.stdout, /^CNI_COMMAND=ADD$/m)
  t.match(call.stdout, /^CNI_NETNS=$/m, 'an empty value is passed as empty, not dropped')
  t.notMatch(call.stdout, /NODE_EXTRA_CA_CERTS|NODE_OPTIONS/, 'nothing of the caller or of tap leaks in')
  t.equal(call.json, undefined, 'non-JSON stdout gives json undefined')
})

t.test('runCni sends the config as JSON on stdin and parses stdout', async (t) => {
  const config = { cniVersion: '1.1.0', name: 'n1', type: 'x', ranges: ['10.0.0.0/24'] }
  const call = await runCni('/bin/cat', 'VERSION', { config })
  t.equal(call.stdout, JSON.stringify(config))
  t.same(call.json, config)
  const raw = await runCni('/bin/cat', 'ADD', { config: '{"not json' })
  t.equal(raw.stdout, '{"not json', 'a string config is sent byte for byte')
})

t.test('runCni reports the exit code and kills a hung plugin', async (t) => {
  const failed = await runCni('/bin/false', 'DEL', { config: {} })
  t.equal(failed.code, 1)
  const dir = t.testdir({ 'hung-plugin': '#!/bin/sh\nexec sleep 30\n' })
  chmodSync(`${dir}/hung-plugin`, 0o755)
  const hung = await runCni(`${dir}/hung-plugin`, 'ADD', { config: {}, timeoutMs: 300 })
  t.equal(hung.code, 137, 'SIGKILL after the timeout')
})

t.test('test namespaces are removed when their test ends, with the processes inside', async (t) => {
  let names: string[] = []
  let sleeperPid = 0
  await t.test('a test that makes namespaces', async (tt) => {
    const nss = testNamespaces(tt, 'helpers')
    const a = await nss.create()
    const b = await nss.create('b')
    names = [a.name, b.name]
    t.ok(existsSync(a.path), `${a.path} exists while the test runs`)
    t.match(b.name, /^fnt-helpers-[0-9a-f]{6}-b$/)
    // A process left running inside must not keep the namespace alive.
    const sleeper = await run(['ip', 'netns', 'exec', a.name, 'sh', '-c', 'sleep 60 >/dev/null 2>&1 & echo $!'])
    sleeperPid = Number(sleeper.stdout.trim())
    tt.ok(sleeperPid > 0 && existsSync(`/proc/${sleeperPid}`), 'a process runs inside')
  })
  const list = await run(['ip', 'netns', 'list'])
  for (const name of names) t.notMatch(list.stdout, name, `${name} is gone`)
  t.notOk(runsSleep(sleeperPid), 'the process inside was ended')
})

t.test('kernel observation reads a namespace, not the host', async (t) => {
  const nss = testNamespaces(t, 'helpers')
  const ns = await nss.create()
  const lo = await link('lo', ns)
  t.ok(lo, 'lo exists in a fresh namespace')
  t.notOk(lo?.flags.includes('UP'), 'and is down')
  await inNetnsOk(ns, ['ip', 'link', 'add', 'fnt-a', 'type', 'veth', 'peer', 'name', 'fnt-b'])
  await inNetnsOk(ns, ['ip', 'addr', 'add', '192.0.2.7/32', 'dev', 'fnt-a'])
  await inNetnsOk(ns, ['ip', 'link', 'set', 'fnt-a', 'up'])
  await inNetnsOk(ns, ['ip', 'link', 'set', 'fnt-b', 'up'])
  await inNetnsOk(ns, ['ip', 'route', 'add', '192.0.2.1', 'dev', 'fnt-a', 'scope', 'link'])
  await inNetnsOk(ns, ['ip', 'route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'fnt-a'])
  t.same(await ipv4Of('fnt-a', ns), ['192.0.2.7/32'])
  t.equal((await link('fnt-a', ns))?.kind, 'veth')
  t.equal(await link('fnt-a'), undefined, 'the host does not see it')
  const r = await routes(ns)
  t.same(r.map((x) => [x.dst, x.gateway, x.dev, x.scope]).sort(), [
    ['0.0.0.0/0', '192.0.2.1', 'fnt-a', undefined],
    ['192.0.2.1/32', undefined, 'fnt-a', 'link'],
  ])
  const lookup = await routeGet('198.51.100.1', ns)
  t.same([lookup.gateway, lookup.dev, lookup.prefsrc], ['192.0.2.1', 'fnt-a', '192.0.2.7'])
  await inNetnsOk(ns, ['sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'])
  t.equal(await sysctl('net.ipv4.ip_forward', ns), '1')
  const failing = await inNetns(ns, ['ip', 'link', 'show', 'nope'])
  t.not(failing.code, 0, 'inNetns reports failure as a code')
  await t.rejects(inNetnsOk(ns, ['ip', 'link', 'show', 'nope']), /ip netns exec fnt-helpers-.* ip link show nope: exit 1/)
})

/** Whether `pid` is a live `sleep` (a reaped or zombie process has no command line). */
function runsSleep(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep')
  } catch {
    return false
  }
}
