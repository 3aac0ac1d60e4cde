// The nft layer without a kernel: what the transaction builder writes, and how apply and read-back
// talk to nft (through the recording fake of net/testing/). flatnetd.masquerade.test.ts runs the
// same transactions against the real nft.
import t from 'tap'
import { NftError, NftTransaction, applyNft, readNftTable, renderNftTable, sameNftState, type NftTable } from './nft.js'
import { RecordingNft } from './testing/nftRecorder.js'

const policyTable: NftTable = {
  family: 'inet',
  name: 'flatnet-policy',
  sets: [{ name: 'isolated', type: 'ipv4_addr', flags: ['interval'], elements: ['10.244.1.5', '10.244.2.0/24'] }],
  maps: [{ name: 'ingress', type: 'ipv4_addr', valueType: 'verdict', elements: ['10.244.1.5 : jump allow-web'] }],
  chains: [
    { name: 'forward', base: { type: 'filter', hook: 'forward', priority: 0, policy: 'accept' }, rules: ['ip daddr vmap @ingress'] },
    { name: 'allow-web', rules: ['tcp dport 80 accept'] },
  ],
}

t.test("a table renders in nft's listing layout: sets, maps, then chains with their hook", async (t) => {
  t.equal(
    renderNftTable(policyTable),
    [
      'table inet flatnet-policy {',
      '\tset isolated {',
      '\t\ttype ipv4_addr',
      '\t\tflags interval',
      '\t\telements = { 10.244.1.5, 10.244.2.0/24 }',
      '\t}',
      '\tmap ingress {',
      '\t\ttype ipv4_addr : verdict',
      '\t\telements = { 10.244.1.5 : jump allow-web }',
      '\t}',
      '\tchain forward {',
      '\t\ttype filter hook forward priority 0; policy accept;',
      '\t\tip daddr vmap @ingress',
      '\t}',
      '\tchain allow-web {',
      '\t\ttcp dport 80 accept',
      '\t}',
      '}',
      '',
    ].join('\n'),
  )
})

t.test('replaceTable is create-if-missing, delete, create whole: one transaction, no flush', async (t) => {
  const text = new NftTransaction().replaceTable(policyTable).text()
  t.match(text, /^add table inet flatnet-policy\ndelete table inet flatnet-policy\ntable inet flatnet-policy \{\n/)
  t.notMatch(text, /flush/)
})

t.test('partial updates: elements added and deleted, empty element lists left out', async (t) => {
  const tx = new NftTransaction()
    .addElements('inet', 'flatnet-policy', 'isolated', ['10.244.3.7'])
    .deleteElements('inet', 'flatnet-policy', 'isolated', ['10.244.1.5'])
    .addElements('inet', 'flatnet-policy', 'isolated', [])
  t.equal(tx.text(), 'add element inet flatnet-policy isolated { 10.244.3.7 }\ndelete element inet flatnet-policy isolated { 10.244.1.5 }\n')
  t.equal(new NftTransaction().addElements('ip', 'x', 's', []).empty, true)
})

t.test('apply hands the whole script to one nft -f -; an empty transaction runs nothing', async (t) => {
  const nft = new RecordingNft()
  await applyNft(new NftTransaction().removeTable('ip', 'flatnet'), 'remove nftables table ip flatnet', nft)
  await applyNft(new NftTransaction(), 'nothing', nft)
  t.same(nft.calls, [{ args: ['-f', '-'], script: 'add table ip flatnet\ndelete table ip flatnet\n' }])
})

t.test("a failed apply is an NftError naming the operation and nft's words", async (t) => {
  const nft = new RecordingNft()
  nft.failApply = 'Error: Could not process rule: Operation not permitted\n'
  const err = await applyNft(new NftTransaction().removeTable('ip', 'flatnet'), 'remove nftables table ip flatnet', nft).catch((e: unknown) => e)
  t.ok(err instanceof NftError)
  t.equal((err as Error).message, 'remove nftables table ip flatnet: Error: Could not process rule: Operation not permitted')
})

t.test('read-back: nft -j list table becomes chains, sets, maps and rules without handles; a missing table is undefined', async (t) => {
  const nft = new RecordingNft()
  t.equal(await readNftTable('ip', 'flatnet', nft), undefined)
  nft.tables.set('ip flatnet', {
    nftables: [
      { metainfo: { version: '1.0.6' } },
      { table: { family: 'ip', name: 'flatnet', handle: 1 } },
      { chain: { family: 'ip', table: 'flatnet', name: 'postrouting', handle: 1, type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } },
      { set: { family: 'ip', table: 'flatnet', name: 'peers', handle: 3, type: 'ipv4_addr' } },
      { rule: { family: 'ip', table: 'flatnet', chain: 'postrouting', handle: 2, expr: [{ masquerade: null }] } },
    ],
  })
  t.same(await readNftTable('ip', 'flatnet', nft), {
    chains: [{ name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' }],
    sets: [{ name: 'peers', type: 'ipv4_addr' }],
    maps: [],
    rules: [{ chain: 'postrouting', expr: [{ masquerade: null }] }],
  })
  t.same(
    nft.calls.map((c) => c.args),
    [
      ['-j', 'list', 'table', 'ip', 'flatnet'],
      ['-j', 'list', 'table', 'ip', 'flatnet'],
    ],
  )
})

t.test('structured comparison ignores key order, not values', async (t) => {
  t.ok(sameNftState({ a: 1, b: [{ x: 1, y: 2 }] }, { b: [{ y: 2, x: 1 }], a: 1 }))
  t.notOk(sameNftState({ a: 1, b: [1, 2] }, { a: 1, b: [2, 1] }))
})
