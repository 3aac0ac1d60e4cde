// Deleting conntrack entries by filter (conntrack.ts) against a real kernel, in a throw-away
// namespace: UDP flows DNATed by a small nftables table to two local "endpoints", then deleted by
// Service address, port and endpoint. Only the matching entries go; the kernel's own listing
// (/proc/net/nf_conntrack in the namespace) tells.
import { spawn } from 'node:child_process'
import t from 'tap'
import { runOk, testNamespaces } from '../e2e/helpers/index.js'
import { ConntrackSocket, conntrackDeleteMessage } from './conntrack.js'
import { openNetns, warmThreadPool, withNetns } from './netns.js'

t.test('filtered delete: only the entries of that address, port, protocol and endpoint go', async (t) => {
  await warmThreadPool()
  const ns = await testNamespaces(t, 'ctdel').create()
  const inNs = (...args: string[]) => runOk(['ip', 'netns', 'exec', ns.name, ...args])
  await inNs('ip', 'link', 'set', 'lo', 'up')
  await inNs('ip', 'link', 'add', 'ep0', 'type', 'veth', 'peer', 'name', 'ep1')
  await inNs('ip', 'link', 'set', 'ep0', 'up')
  await inNs('ip', 'link', 'set', 'ep1', 'up')
  for (const a of ['10.244.1.2/24', '10.244.1.3/24']) await inNs('ip', 'addr', 'add', a, 'dev', 'ep0')
  await inNs('ip', 'route', 'add', '10.96.0.0/16', 'dev', 'ep0')
  await runOk(['ip', 'netns', 'exec', ns.name, 'nft', '-f', '-'], {
    input: `table ip t {
      chain out { type nat hook output priority -100;
        ip daddr 10.96.0.1 udp dport 53 dnat to 10.244.1.2:8053
        ip daddr 10.96.0.1 udp dport 54 dnat to 10.244.1.2:8054
        ip daddr 10.96.0.2 udp dport 53 dnat to 10.244.1.3:8053
        ip daddr 10.96.0.1 tcp dport 53 dnat to 10.244.1.2:8053
      }
    }`,
  })
  // A TCP listener behind the TCP rule, so its flow is a connection the kernel keeps tracking.
  const listener = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e', "require('net').createServer(()=>{}).listen(8053,'10.244.1.2',()=>console.log('up'))"])
  t.teardown(() => listener.kill('SIGKILL'))
  await new Promise((resolve) => listener.stdout.once('data', resolve))
  // One datagram (or connection) per flow, each from its own source port: one entry each.
  const send = (proto: 'udp' | 'tcp', ip: string, port: number, sport: number) =>
    inNs(
      process.execPath,
      '-e',
      proto === 'udp'
        ? `const s=require('dgram').createSocket('udp4');s.bind(${sport},()=>s.send('x',${port},'${ip}',()=>s.close()))`
        : `const c=require('net').connect({host:'${ip}',port:${port},localPort:${sport}});c.on('error',()=>{});setTimeout(()=>process.exit(0),200)`,
    )
  await send('udp', '10.96.0.1', 53, 40001)
  await send('udp', '10.96.0.1', 53, 40002)
  await send('udp', '10.96.0.1', 54, 40003)
  await send('udp', '10.96.0.2', 53, 40004)
  await send('tcp', '10.96.0.1', 53, 40005)
  const sports = async () =>
    (await inNs('cat', '/proc/net/nf_conntrack')).stdout
      .split('\n')
      .map((l) => /sport=(4000\d)/.exec(l)?.[1])
      .filter((p): p is string => p !== undefined)
      .sort()
  t.same(await sports(), ['40001', '40002', '40003', '40004', '40005'], 'five flows tracked')

  const handle = openNetns(ns.path)
  const ct = withNetns(handle, () => new ConntrackSocket())
  t.teardown(() => {
    ct.close()
    handle.close()
  })
  await ct.delete({ protocol: 'udp', origDst: '10.96.0.1', origDstPort: 53, replySrc: '10.244.1.2' })
  t.same(await sports(), ['40003', '40004', '40005'], 'both UDP flows to 10.96.0.1:53 via 10.244.1.2 deleted; another port, another address and TCP kept')
  await ct.delete({ protocol: 'udp', origDst: '10.96.0.1', origDstPort: 53, replySrc: '10.244.1.2' })
  t.pass('deleting what is no longer there is no error')
  await ct.delete({ protocol: 'udp', origDstPort: 54, replySrc: '10.244.1.3' })
  t.same(await sports(), ['40003', '40004', '40005'], 'another endpoint: nothing deleted')
  await ct.delete({ protocol: 'udp', origDstPort: 54, replySrc: '10.244.1.2' })
  t.same(await sports(), ['40004', '40005'], 'by port alone (a node port, any address): deleted')
})

t.test('the message names one family', async (t) => {
  t.throws(() => conntrackDeleteMessage({ protocol: 'udp', origDst: '10.96.0.1', replySrc: 'fd00::1' }), /not one family/)
  const m = conntrackDeleteMessage({ protocol: 'udp', origDst: 'fd00:96::a', origDstPort: 53, replySrc: 'fd00:10::2' })
  t.equal(m[0], 10, 'nfgenmsg family AF_INET6')
})
