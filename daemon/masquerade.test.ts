// The masquerade table as text (no kernel here; flatnetd.masquerade.test.ts checks nft's view).
import t from 'tap'
import { parseCidr } from '../ipam/index.js'
import { masqueradeInstallScript, masqueradeRemoveScript, renderMasqueradeTable } from './masquerade.js'

t.test('the table masquerades cluster → outside only', async (t) => {
  const text = renderMasqueradeTable(parseCidr('10.244.0.0/16'))
  t.match(text, /^table ip flatnet \{\n\tchain postrouting \{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n/)
  t.match(text, /\t\tip saddr 10\.244\.0\.0\/16 ip daddr != 10\.244\.0\.0\/16 masquerade\n/)
  t.equal(text.match(/masquerade/g)?.length, 1, 'one rule, nothing else NATed')
})

t.test('install replaces the whole table in one transaction, also when none exists yet', async (t) => {
  const script = masqueradeInstallScript(parseCidr('10.32.0.0/12'))
  t.match(script, /^add table ip flatnet\ndelete table ip flatnet\ntable ip flatnet \{/)
  t.match(script, /ip saddr 10\.32\.0\.0\/12 ip daddr != 10\.32\.0\.0\/12 masquerade/)
  t.equal(masqueradeRemoveScript(4), 'add table ip flatnet\ndelete table ip flatnet\n')
})
