import t from 'tap'
import { ConfigError, decodeNetConf, validateNetConf, MAX_CONFIG_BYTES } from './netconf.js'

const versions = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']
const good = { cniVersion: '1.1.0', name: 'pods', type: 'flatnet', ranges: ['10.244.1.0/24'] }

function kindOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (e) {
    return e instanceof ConfigError ? e.kind : 'other'
  }
  return undefined
}

t.test('a minimal config gets the documented defaults', async (t) => {
  const c = validateNetConf(good, versions)
  t.equal(c.name, 'pods')
  t.equal(c.dataDir, '/var/lib/cni/flatnet')
  t.equal(c.mtu, undefined)
  t.equal(c.ranges[0].gateway, '10.244.1.1')
  t.equal(c.ranges[0].capacity, 253)
})

t.test('malformed stdin is a decode error', async (t) => {
  t.equal(
    kindOf(() => decodeNetConf('{not json')),
    'decode',
  )
  t.equal(
    kindOf(() => decodeNetConf('')),
    'decode',
  )
  t.equal(
    kindOf(() => decodeNetConf('[1,2]')),
    'decode',
  )
  t.equal(
    kindOf(() => decodeNetConf('"x"')),
    'decode',
  )
  t.equal(
    kindOf(() => decodeNetConf(Buffer.alloc(MAX_CONFIG_BYTES + 1, 32))),
    'decode',
  )
})

t.test('unsupported cniVersion is a version error naming the supported ones', async (t) => {
  try {
    validateNetConf({ ...good, cniVersion: '0.2.0' }, versions)
    t.fail('accepted')
  } catch (e) {
    t.equal((e as ConfigError).kind, 'version')
    t.match((e as Error).message, /0\.2\.0.*1\.1\.0/)
  }
})

t.test('bad keys are invalid-config errors that name the key', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ ...good, ranges: [] }, /"ranges"/],
    [{ ...good, ranges: 'x' }, /"ranges"/],
    [{ ...good, ranges: ['10.244.1.0/33'] }, /ranges.*10\.244\.1\.0\/33/],
    [{ ...good, ranges: ['10.244.1.5/24'] }, /host bits/],
    [{ ...good, ranges: ['10.244.1.0/31'] }, /too small/],
    [{ ...good, ranges: ['10.244.1.0/32'] }, /too small/],
    [{ ...good, ranges: ['10.244.0.0/16', '10.244.1.0/24'] }, /overlap/],
    [{ ...good, ranges: [42] }, /ranges.*\[0\]/],
    [{ ...good, mtu: 10 }, /"mtu"/],
    [{ ...good, mtu: '1500' }, /"mtu"/],
    [{ ...good, dataDir: 'relative' }, /"dataDir"/],
    [{ ...good, name: '../etc' }, /"name"/],
    [{ ...good, name: '' }, /"name"/],
    [{ ...good, type: 'bridge' }, /"type"/],
    [{ ...good, dns: [] }, /"dns"/],
    [{ ...good, runtimeConfig: { ips: ['nope'] } }, /runtimeConfig\.ips/],
    [{ ...good, 'cni.dev/valid-attachments': [{ containerID: 1 }] }, /valid-attachments/],
  ]
  for (const [conf, msg] of cases) {
    try {
      validateNetConf(conf, versions)
      t.fail(`accepted ${JSON.stringify(conf)}`)
    } catch (e) {
      t.equal((e as ConfigError).kind, 'invalid', JSON.stringify(conf))
      t.match((e as Error).message, msg)
    }
  }
})

t.test('GC attachments: the current key and the older one', async (t) => {
  const a = [{ containerID: 'c1', ifname: 'eth0' }]
  t.same(validateNetConf({ ...good, 'cni.dev/valid-attachments': a }, versions).validAttachments, [{ containerId: 'c1', ifname: 'eth0' }])
  t.same(validateNetConf({ ...good, 'cni.dev/attachments': a }, versions).validAttachments, [{ containerId: 'c1', ifname: 'eth0' }])
})

t.test('runtimeConfig.ips accepts IP and IP/prefix', async (t) => {
  t.same(validateNetConf({ ...good, runtimeConfig: { ips: ['10.244.1.9/24'] } }, versions).requestedIps, ['10.244.1.9'])
})
