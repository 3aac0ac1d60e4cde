// The conflist flatnetd writes: the contract's exact shape, deterministic bytes, MTU only when set.
import t from 'tap'
import { validateNetConf } from './netconf.js'
import { chainPlan, CONFLIST_FILE_NAME, renderConflist } from './conflist.js'
import { validateDaemonConfig } from './daemonConfig.js'

// The result versions the CNI library of Debian 12's containerd 1.6 (libcni 1.1) decodes; a list in
// any other version fails every pod there (`unsupported CNI result version "1.1.0"`).
const CONTAINERD_1_6_READS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0']

t.test("renders flatnet with this node's range and dataDir, then portmap", async (t) => {
  const text = renderConflist({ ranges: ['10.244.3.0/24'], dataDir: '/var/lib/cni/flatnet' })
  t.same(JSON.parse(text), {
    cniVersion: '1.0.0',
    name: 'flatnet',
    plugins: [
      { type: 'flatnet', ranges: ['10.244.3.0/24'], dataDir: '/var/lib/cni/flatnet' },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  })
  t.ok(text.endsWith('}\n'), 'one trailing newline')
  t.equal(CONFLIST_FILE_NAME, '10-flatnet.conflist')
})

t.test('the MTU appears only when set', async (t) => {
  t.notOk('mtu' in JSON.parse(renderConflist({ ranges: ['10.244.3.0/24'], dataDir: '/d' })).plugins[0])
  t.equal(JSON.parse(renderConflist({ ranges: ['10.244.3.0/24'], dataDir: '/d', mtu: 1400 })).plugins[0].mtu, 1400)
})

t.test('same input, same bytes; a different subnet or MTU, different bytes', async (t) => {
  const a = renderConflist({ ranges: ['10.244.3.0/24'], dataDir: '/d', mtu: 1400 })
  t.equal(renderConflist({ mtu: 1400, dataDir: '/d', ranges: ['10.244.3.0/24'] }), a)
  t.not(renderConflist({ ranges: ['10.244.4.0/24'], dataDir: '/d', mtu: 1400 }), a)
  t.not(renderConflist({ ranges: ['10.244.3.0/24'], dataDir: '/d', mtu: 1450 }), a)
})

t.test('what it renders is a configuration the plugin accepts', async (t) => {
  const list = JSON.parse(renderConflist({ ranges: ['10.244.3.0/24'], dataDir: '/var/lib/cni/flatnet', mtu: 1450 }))
  // A runtime hands each plugin its object with cniVersion and name copied in (SPEC.md).
  const c = validateNetConf({ cniVersion: list.cniVersion, name: list.name, ...list.plugins[0] }, ['1.0.0'])
  t.equal(c.ranges[0]!.cidr.text, '10.244.3.0/24')
  t.equal(c.mtu, 1450)
  t.equal(c.dataDir, '/var/lib/cni/flatnet')
})

t.test('invalid input is refused rather than written', async (t) => {
  t.throws(() => renderConflist({ ranges: [], dataDir: '/d' }), /no pod range/)
  t.throws(() => renderConflist({ ranges: ['10.244.3.1/24'], dataDir: '/d' }), /host bits/)
  t.throws(() => renderConflist({ ranges: ['10.244.3.0/24'], dataDir: '/d', mtu: 10 }), /MTU 10/)
})

t.test('by default the list speaks a version containerd 1.6 reads, with portmap, without it, or with a newer one', async (t) => {
  const version = (portmap?: readonly string[] | 'absent') => JSON.parse(renderConflist({ ranges: ['10.244.1.0/24'], dataDir: '/d', portmap })).cniVersion as string
  const cases: Array<[string, readonly string[] | 'absent' | undefined]> = [
    ['portmap not asked', undefined],
    ['no portmap on the node', 'absent'],
    ["Debian 12's portmap (up to 1.0.0)", ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0']],
    ['a portmap that speaks 1.1.0', ['0.3.1', '0.4.0', '1.0.0', '1.1.0']],
  ]
  for (const [what, portmap] of cases) {
    const v = version(portmap)
    t.ok(CONTAINERD_1_6_READS.includes(v), `${what}: ${v} is one containerd 1.6 reads`)
    t.equal(v, '1.0.0', `${what}: the newest of those`)
  }
  t.same(chainPlan('absent'), { cniVersion: '1.0.0', withPortmap: false })
})

t.test('--cni-version 1.1.0 selects 1.1.0 where every plugin of the chain speaks it', async (t) => {
  const config = validateDaemonConfig({ 'node-name': { value: 'n1', from: '--node-name' }, 'cni-version': { value: '1.1.0', from: '--cni-version' } })
  t.equal(config.cniVersion, '1.1.0')
  const render = (portmap?: readonly string[] | 'absent') => JSON.parse(renderConflist({ ranges: ['10.244.1.0/24'], dataDir: '/d', portmap, cniVersion: config.cniVersion }))
  t.equal(render().cniVersion, '1.1.0', 'portmap not asked')
  t.equal(render('absent').cniVersion, '1.1.0', 'flatnet alone')
  t.equal(render(['0.4.0', '1.0.0', '1.1.0']).cniVersion, '1.1.0', 'a portmap that speaks it')
  const debian = render(['0.3.1', '0.4.0', '1.0.0'])
  t.equal(debian.cniVersion, '1.0.0', 'a portmap that stops at 1.0.0 lowers the list: it would fail every ADD at 1.1.0')
  t.same(
    debian.plugins.map((p: { type: string }) => p.type),
    ['flatnet', 'portmap'],
  )
  t.equal(validateDaemonConfig({ 'node-name': { value: 'n1', from: '--node-name' } }).cniVersion, '1.0.0', "the flag's default")
  t.equal(JSON.parse(renderConflist({ ranges: ['10.244.1.0/24'], dataDir: '/d', cniVersion: '0.4.0' })).cniVersion, '0.4.0', 'an older runtime can be served too')
  t.throws(
    () => validateDaemonConfig({ 'node-name': { value: 'n1', from: '--node-name' }, 'cni-version': { value: '1.2.0', from: 'FLATNETD_CNI_VERSION' } }),
    /--cni-version \(from FLATNETD_CNI_VERSION\): expected one of 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0, got "1\.2\.0"/,
  )
})

t.test('the list speaks the newest version its chained portmap speaks too', async (t) => {
  const render = (portmap?: readonly string[] | 'absent') => JSON.parse(renderConflist({ ranges: ['10.244.1.0/24'], dataDir: '/d', portmap }))
  t.equal(render().cniVersion, '1.0.0', 'portmap unknown: assume it speaks the default version')
  const debian = render(['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0'])
  t.equal(debian.cniVersion, '1.0.0', "Debian 12's portmap stops at 1.0.0")
  t.same(
    debian.plugins.map((p: { type: string }) => p.type),
    ['flatnet', 'portmap'],
  )
  t.equal(render(['0.3.1', '0.4.0', '1.0.0', '1.1.0']).cniVersion, '1.0.0', 'never newer than the runtime reads')
  t.equal(render(['0.3.1', '0.4.0']).cniVersion, '0.4.0', 'an older portmap lowers the list')
  const absent = render('absent')
  t.equal(absent.cniVersion, '1.0.0')
  t.same(
    absent.plugins.map((p: { type: string }) => p.type),
    ['flatnet'],
    'no portmap on the node: flatnet alone',
  )
  const ancient = render(['0.1.0', '0.2.0'])
  t.same(
    ancient.plugins.map((p: { type: string }) => p.type),
    ['flatnet'],
    'no version in common: flatnet alone',
  )
  t.same(chainPlan(['0.2.0']), { cniVersion: '1.0.0', withPortmap: false })
})
