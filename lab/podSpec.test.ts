// `lab pod add --label/--port` and Pod identities: parsed and checked as the API server checks them.
import t from 'tap'
import { checkIdentity, parseLabels, parsePodRef, parsePort, podRef, PodSpecError, portText } from './podSpec.js'

t.test('--port [name:]N[/PROTO]: TCP by default, protocol case-insensitive, name kept', async (t) => {
  t.same(parsePort('80'), { port: 80, protocol: 'TCP' })
  t.same(parsePort('http:8080/udp'), { name: 'http', port: 8080, protocol: 'UDP' })
  t.same(parsePort('assoc:9/SCTP'), { name: 'assoc', port: 9, protocol: 'SCTP' })
  t.equal(portText(parsePort('serve-80-tcp:80')), 'serve-80-tcp:80/TCP')
  for (const bad of ['0', '65536', 'http:', '80/ICMP', 'Http:80', '123:80', 'a-very-long-port-name:80', 'a--b:80', '80/tcp/udp']) {
    t.throws(() => parsePort(bad), PodSpecError, `--port ${bad} is refused`)
  }
})

t.test('--label k=v: keys with a DNS prefix, empty values allowed, a key twice refused', async (t) => {
  t.same(parseLabels(['app=web', 'example.com/tier=', 'v=1.2_a-b']), { app: 'web', 'example.com/tier': '', v: '1.2_a-b' })
  for (const bad of [['app'], ['=web'], ['app=-web'], ['Bad_Prefix/x=1'], [`k=${'v'.repeat(64)}`], ['a=1', 'a=2']]) {
    t.throws(() => parseLabels(bad), PodSpecError, `--label ${bad.join(' ')} is refused`)
  }
})

t.test('a pod identity: DNS names, ports unique by name and by number/protocol', async (t) => {
  const ok = { namespace: 'x', name: 'a.b', labels: { pod: 'a' }, ports: [parsePort('web:80'), parsePort('80/UDP')] }
  t.doesNotThrow(() => checkIdentity(ok))
  t.throws(() => checkIdentity({ ...ok, namespace: 'X' }), /namespace "X"/)
  t.throws(() => checkIdentity({ ...ok, namespace: 'a.b' }), /DNS label/)
  t.throws(() => checkIdentity({ ...ok, name: 'A' }), /pod name/)
  t.throws(() => checkIdentity({ ...ok, ports: [parsePort('web:80'), parsePort('web:81')] }), /port name web given twice/)
  t.throws(() => checkIdentity({ ...ok, ports: [parsePort('80'), parsePort('x:80/TCP')] }), /port 80\/TCP given twice/)
})

t.test('pod refs: the default namespace is left out, others are namespace/name', async (t) => {
  t.equal(podRef({ name: 'pod1a' }), 'pod1a')
  t.equal(podRef({ name: 'a', k8sNamespace: 'default' }), 'a')
  t.equal(podRef({ name: 'a', k8sNamespace: 'x' }), 'x/a')
  t.same(parsePodRef('x/a'), { namespace: 'x', name: 'a' })
  t.same(parsePodRef('pod1a'), { namespace: 'default', name: 'pod1a' })
})
