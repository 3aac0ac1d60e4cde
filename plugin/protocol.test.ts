// The CNI protocol surface without the kernel: environment checks, CNI_ARGS, result encoding.
import t from 'tap'
import { checkIfname, parseCniArgs, parseInvocation } from './environment.js'
import { CniError } from './errors.js'
import { encodeResult, SUPPORTED_VERSIONS, type Result } from './versions.js'

const base = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc123', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' }

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn()
  } catch (e) {
    return e instanceof CniError ? e.code : -1
  }
  return undefined
}

t.test('missing CNI_* variables are code 4 and named in the message', async (t) => {
  try {
    parseInvocation({ CNI_COMMAND: 'ADD', CNI_PATH: '/x' })
    t.fail('accepted')
  } catch (e) {
    t.equal((e as CniError).code, 4)
    t.match((e as Error).message, /CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME are missing/)
  }
  t.equal(
    codeOf(() => parseInvocation({ ...base, CNI_COMMAND: '' })),
    4,
  )
  t.equal(
    codeOf(() => parseInvocation({ ...base, CNI_COMMAND: 'BOOT' })),
    4,
  )
})

t.test('DEL accepts an empty CNI_NETNS, ADD and CHECK do not', async (t) => {
  t.equal(parseInvocation({ ...base, CNI_COMMAND: 'DEL', CNI_NETNS: '' }).netns, '')
  t.equal(
    codeOf(() => parseInvocation({ ...base, CNI_NETNS: '' })),
    4,
  )
  t.equal(
    codeOf(() => parseInvocation({ ...base, CNI_COMMAND: 'CHECK', CNI_NETNS: '' })),
    4,
  )
})

t.test('container ID charset is enforced', async (t) => {
  for (const id of ['../../etc', 'a/b', 'a b', '-lead', 'x;rm', 'a\u0000b']) {
    t.equal(
      codeOf(() => parseInvocation({ ...base, CNI_CONTAINERID: id })),
      4,
      JSON.stringify(id),
    )
  }
  t.equal(parseInvocation({ ...base, CNI_CONTAINERID: 'Abc_1.2-3' }).containerId, 'Abc_1.2-3')
})

t.test('interface names follow the kernel rules', async (t) => {
  for (const name of ['', '.', '..', 'a/b', 'a:b', 'a b', 'sixteen-chars-xx']) {
    t.equal(
      codeOf(() => checkIfname(name)),
      4,
      JSON.stringify(name),
    )
  }
  t.doesNotThrow(() => checkIfname('fifteen-chars-x'))
  t.doesNotThrow(() => checkIfname('eth0'))
})

t.test('relative or NUL-bearing CNI_NETNS is refused', async (t) => {
  t.equal(
    codeOf(() => parseInvocation({ ...base, CNI_NETNS: 'netns/x' })),
    4,
  )
})

t.test('CNI_ARGS: known keys parsed, unknown refused unless IgnoreUnknown', async (t) => {
  t.same(parseCniArgs('K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IP=10.244.1.9'), { podNamespace: 'default', podName: 'web-0', ip: '10.244.1.9' })
  t.equal(
    codeOf(() => parseCniArgs('FOO=bar')),
    4,
  )
  t.same(parseCniArgs('IgnoreUnknown=1;FOO=bar;K8S_POD_NAME=p'), { podName: 'p' })
  t.same(parseCniArgs('IgnoreUnknown=true;FOO=bar'), {})
  t.equal(
    codeOf(() => parseCniArgs('novalue')),
    4,
  )
})

const result: Result = {
  interfaces: [
    { name: 'fnabc', mac: '02:00:00:00:00:01', mtu: 1500 },
    { name: 'eth0', mac: '02:00:00:00:00:02', mtu: 1500, sandbox: '/var/run/netns/x' },
  ],
  ips: [{ address: '10.244.1.2/32', gateway: '10.244.1.1', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }],
  dns: {},
}

t.test('results: 0.3.x/0.4.0 carry ips[].version, 1.x does not; mtu only from 1.1.0', async (t) => {
  t.same(SUPPORTED_VERSIONS, ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'])
  for (const v of ['0.3.0', '0.3.1', '0.4.0'] as const) {
    const r = encodeResult(v, result) as { cniVersion: string; ips: Array<Record<string, unknown>>; interfaces: Array<Record<string, unknown>> }
    t.equal(r.cniVersion, v)
    t.equal(r.ips[0].version, '4', `${v} has version`)
    t.notOk('mtu' in r.interfaces[0])
  }
  const r10 = encodeResult('1.0.0', result) as { ips: Array<Record<string, unknown>>; interfaces: Array<Record<string, unknown>> }
  t.notOk('version' in r10.ips[0])
  t.notOk('mtu' in r10.interfaces[0])
  const r11 = encodeResult('1.1.0', result) as { ips: Array<Record<string, unknown>>; interfaces: Array<Record<string, unknown>> }
  t.notOk('version' in r11.ips[0])
  t.equal(r11.interfaces[1].mtu, 1500)
  t.equal(r11.interfaces[1].sandbox, '/var/run/netns/x')
})
