// The masquerade table as text (no kernel here; flatnetd.masquerade.test.ts checks nft's view and
// the packets).
import t from 'tap'
import { parseCidr } from '../ipam/index.js'
import { masqueradeInstallScript, masqueradeRemoveScript, masqueradeState, renderMasqueradeTable } from './masquerade.js'

t.test('the table masquerades cluster → outside only', async (t) => {
  const text = renderMasqueradeTable([parseCidr('10.244.0.0/16')])
  t.match(text, /^table inet flatnet \{\n\tchain postrouting \{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n/)
  t.match(text, /\t\tip saddr 10\.244\.0\.0\/16 ip daddr != 10\.244\.0\.0\/16 meta mark set 0x00000000 masquerade\n/)
  t.equal(text.match(/masquerade/g)?.length, 1, 'one rule, nothing else NATed')
})

t.test('dual stack: one rule per cluster range, each matched in its own family, in configuration order', async (t) => {
  const text = renderMasqueradeTable([parseCidr('fd00:10:244::/56'), parseCidr('10.244.0.0/16')])
  t.match(
    text,
    /\t\tip6 saddr fd00:10:244::\/56 ip6 daddr != fd00:10:244::\/56 meta mark set 0x00000000 masquerade\n\t\tip saddr 10\.244\.0\.0\/16 ip daddr != 10\.244\.0\.0\/16 meta mark set 0x00000000 masquerade\n/,
  )
  t.equal(text.match(/masquerade/g)?.length, 2)
  t.same(
    masqueradeState([parseCidr('fd00:10:244::/56')]).rules[0]!.expr[0],
    { match: { op: '==', left: { payload: { protocol: 'ip6', field: 'saddr' } }, right: { prefix: { addr: 'fd00:10:244::', len: 56 } } } },
    'the read-back state names the range as nft prints an IPv6 prefix',
  )
})

t.test('install replaces the whole table and drops the IPv4-only table of earlier versions, in one transaction, also when neither exists', async (t) => {
  const script = masqueradeInstallScript([parseCidr('10.32.0.0/12')])
  t.match(script, /^add table ip flatnet\ndelete table ip flatnet\nadd table inet flatnet\ndelete table inet flatnet\ntable inet flatnet \{/)
  t.match(script, /ip saddr 10\.32\.0\.0\/12 ip daddr != 10\.32\.0\.0\/12 meta mark set 0x00000000 masquerade/)
  t.equal(masqueradeRemoveScript(), 'add table ip flatnet\ndelete table ip flatnet\nadd table inet flatnet\ndelete table inet flatnet\n')
})
