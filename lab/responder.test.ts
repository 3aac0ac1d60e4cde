// The pod responder's protocols, on a real namespace's loopback: the JSON line and datagram the
// lab's probes read, HTTP for curl (the docs' `curl http://<node>:<nodePort>/`), and the echo and
// sized answers the upstream "large requests" Service tests need.
import t from 'tap'
import { inNetns, testDir, testNamespaces } from '../e2e/helpers/index.js'
import { labLayout } from './layout.js'
import { controlSocketPath, PodProber, startResponder } from './responder.js'

const POD = 'web/front'
const containerId = 'c0ffee'.padEnd(64, '0')

t.test('responder', async (t) => {
  const { dir } = testDir(t, 'svclab')
  const lab = { ...labLayout('x', dir), dir }
  const ns = await testNamespaces(t, 'svclab').create('pod')
  await inNetns(ns, ['ip', 'link', 'set', 'lo', 'up'])
  await startResponder(lab, {
    ref: POD,
    netns: ns.name,
    containerId,
    ports: [
      { port: 80, protocol: 'TCP' },
      { port: 53, protocol: 'UDP' },
    ],
  })
  const prober = await PodProber.open(POD, controlSocketPath(lab, containerId))
  t.teardown(() => prober.close())
  const curl = async (...args: string[]) => {
    const r = await inNetns(ns, ['curl', '-sS', '--max-time', '5', ...args])
    t.equal(r.code, 0, `curl ${args.join(' ')}: ${r.stderr}`)
    return r.stdout
  }

  t.test('a lab probe (it speaks first) gets the JSON facts at once', async (t) => {
    for (const protocol of ['TCP', 'UDP'] as const) {
      const port = protocol === 'TCP' ? 80 : 53
      const r = await prober.probe({ host: '127.0.0.1', port, protocol })
      t.same(r.ok && r.reply, { pod: POD, peer: '127.0.0.1', port, protocol }, protocol)
    }
  })

  t.test('a client that sends nothing still gets the JSON line', async (t) => {
    const got = await inNetns(ns, [process.execPath, '-e', "require('net').connect(80, '127.0.0.1').on('data', (d) => process.stdout.write(d))"])
    t.same(JSON.parse(got.stdout), { pod: POD, peer: '127.0.0.1', port: 80, protocol: 'TCP' })
  })

  t.test('a 2 kB payload comes back whole over TCP and UDP', async (t) => {
    const payload = 'p'.repeat(2048)
    for (const protocol of ['TCP', 'UDP'] as const) {
      const r = await prober.probe({ host: '127.0.0.1', port: protocol === 'TCP' ? 80 : 53, protocol, payload })
      t.equal(r.ok && r.reply.echo, payload, protocol)
    }
  })

  t.test('HTTP: curl gets a 200 with the facts, and the agnhost-style paths', async (t) => {
    const head = await curl('-i', 'http://127.0.0.1/')
    t.match(head, /^HTTP\/1\.1 200 OK\r\n/)
    t.match(head, /\r\nContent-Type: application\/json\r\n/)
    t.same(JSON.parse(head.slice(head.indexOf('\r\n\r\n') + 4)), { pod: POD, peer: '127.0.0.1', port: 80, protocol: 'TCP' })
    t.equal(await curl('http://127.0.0.1/hostname'), 'front')
    t.match(await curl('http://127.0.0.1/clientip'), /^127\.0\.0\.1:\d+$/)
    const msg = 'm'.repeat(2048)
    t.equal(await curl(`http://127.0.0.1/echo?msg=${msg}`), msg, 'GET /echo?msg= (2 kB)')
    t.equal(await curl('--data-binary', msg, 'http://127.0.0.1/echo'), msg, 'POST /echo (2 kB body)')
    t.equal((await curl('http://127.0.0.1/bytes/100000')).length, 100000, '/bytes/N')
    t.match(await curl('-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1/nothing'), /^404$/)
  })

  t.test('a non-HTTP first line is not mistaken for HTTP', async (t) => {
    // The responder's port is inside the namespace: reach it from a node child there.
    const got = await inNetns(ns, [process.execPath, '-e', "const s=require('net').connect(80,'127.0.0.1',()=>s.write('GET / please\\n'));s.on('data',(d)=>process.stdout.write(d))"])
    const reply = got.stdout
    t.same(JSON.parse(reply), { pod: POD, peer: '127.0.0.1', port: 80, protocol: 'TCP' })
  })
})
