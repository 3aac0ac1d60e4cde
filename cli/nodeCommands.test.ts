// `flatnetctl node list|show`, through the real binary against a file datastore holding a
// dual-stack node, a node written as the previous version wrote them (IPv4 only), and a
// dual-stack node without an IPv6 address: every family of every node is shown.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { openSeedingDatastore } from '../daemon/datastore/testing/seeding.js'
import { repoRoot } from '../deploy/testing/cniPackage.js'
import { formatNodeTable } from './nodeCommands.js'

const flatnetctl = join(repoRoot, 'dist/bin/flatnetctl')
const v6 = { clusterCidr: 'fd00:10:244::/56', prefixLength: 64 }

t.test('node list and node show print the subnet and address of each family', { skip: existsSync(flatnetctl) ? false : 'dist/bin/flatnetctl not built (./build.sh)' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fnt-nodecli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'nodes.json')
  const store = await openSeedingDatastore({ kind: 'file', path })
  t.teardown(() => store.close())
  const base = { clusterCidr: '10.244.0.0/16', prefixLength: 24 }
  await store.claim({ name: 'dual', nodeIP: '192.168.1.2', nodeIPs: ['192.168.1.2', 'fd00::2'], owner: 'o1', ...base, moreRanges: [v6] })
  await store.claim({ name: 'old', nodeIP: '192.168.1.3', owner: 'o2', ...base })
  await store.claim({ name: 'half', nodeIP: '192.168.1.4', owner: 'o3', ...base, moreRanges: [v6] })
  const ctl = (...args: string[]) => spawnSync(process.execPath, [flatnetctl, 'node', ...args, '--datastore-file', path], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } })

  const list = ctl('list')
  t.equal(list.status, 0, list.stderr)
  const lines = list.stdout.trimEnd().split('\n')
  t.match(lines[0], /^NAME\s+FAMILY\s+SUBNET\s+NODE IP\s+OWNER\s+UPDATED$/)
  t.match(lines[1], /^dual\s+IPv4\s+10\.244\.0\.0\/24\s+192\.168\.1\.2\s+o1\s+\S+$/)
  t.match(lines[2], /^\s+IPv6\s+fd00:10:244::\/64\s+fd00::2$/)
  t.match(lines[3], /^half\s+IPv4\s+10\.244\.2\.0\/24\s+192\.168\.1\.4\s+o3/)
  t.match(lines[4], /^\s+IPv6\s+fd00:10:244:1::\/64\s+- \(none: peers get no route of this family\)$/, 'a family without an address says so')
  t.match(lines[5], /^old\s+IPv4\s+10\.244\.1\.0\/24\s+192\.168\.1\.3\s+o2/, 'a previous-version record: one IPv4 row')
  t.equal(lines.length, 6)

  const shown = ctl('show', 'dual')
  t.equal(shown.status, 0, shown.stderr)
  t.match(JSON.parse(shown.stdout), {
    name: 'dual',
    subnets: ['10.244.0.0/24', 'fd00:10:244::/64'],
    families: [
      { family: 4, subnet: '10.244.0.0/24', nodeIP: '192.168.1.2' },
      { family: 6, subnet: 'fd00:10:244::/64', nodeIP: 'fd00::2' },
    ],
  })
  const json = JSON.parse(ctl('list', '--json').stdout) as Array<{ name: string; families: unknown[] }>
  t.same(
    json.map((n) => [n.name, n.families.length]),
    [
      ['dual', 2],
      ['half', 2],
      ['old', 1],
    ],
  )
  const missing = ctl('show', 'nope')
  t.not(missing.status, 0)
  t.match(missing.stderr, /show node nope: not found in the file datastore/)
})

t.test('formatNodeTable: an empty datastore is the header alone', async (t) => {
  t.equal(formatNodeTable([]), 'NAME  FAMILY  SUBNET  NODE IP  OWNER  UPDATED')
})
