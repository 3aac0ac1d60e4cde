// The daemon's attack surface: its HTTP endpoints are read-only and bound only where --listen
// says; the state it creates is private (0600 files, 0700 directories) even under umask 000; and
// no shell ever runs: every tool is spawned with an argument array.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { inNetns, testNamespaces } from '../e2e/helpers/index.js'
import { openDatastore } from './datastore/index.js'
import { eventually, flatnetdMissingReason, nodeNamespace, routeLines, startFlatnetd, tempDir } from './testing/harness.js'

const skip = flatnetdMissingReason()
const LISTEN = '192.168.89.1:9480'
// umask 000, and --listen replaced by the node address (the harness's own --listen dropped).
const wrapper = ['sh', '-c', `umask 000; b=$1; shift 3; exec "$b" --listen ${LISTEN} "$@"`, 'sh']

t.test('read-only endpoints, bound only to --listen, private state files under umask 000', { skip }, async (t) => {
  const dir = tempDir(t, 'dsec')
  const ns = await nodeNamespace(testNamespaces(t, 'dsec'), '192.168.89.1/24')
  const dsDir = join(dir, 'ds') // created by the daemon
  const storePath = join(dsDir, 'nodes.json')
  const stateDir = join(dir, 'state')
  const confDir = join(dir, 'net.d')
  const d = startFlatnetd(
    t,
    ns,
    ['--node-name', 'me', '--node-ip', '192.168.89.1', '--datastore-file', storePath, '--state-dir', stateDir, '--cni-conf-dir', confDir, '--reconcile-interval', '0.5'],
    9473,
    wrapper,
  )
  const get = async (method: string, path: string, host = LISTEN) => {
    const r = await inNetns(ns, ['curl', '-sS', '--max-time', '5', '-X', method, '-d', '{"ready":true}', '-w', '\n%{http_code}', `http://${host}${path}`])
    if (r.code !== 0) return { status: 0, body: r.stderr.trim() }
    const i = r.stdout.lastIndexOf('\n')
    return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) }
  }
  await eventually(
    '/readyz 200 on the node address',
    () => get('GET', '/readyz'),
    (r) => r.status === 200,
    20_000,
  )
  const store = await openDatastore({ kind: 'file', path: storePath })
  t.teardown(() => store.close())
  await store.claim({ name: 'peer', nodeIP: '192.168.89.2', owner: 'test-peer', clusterCidr: '10.244.0.0/16', prefixLength: 24 })
  await eventually(
    'peer route',
    () => routeLines(ns),
    (r) => r.length === 1,
  )

  // Bound where --listen says, and nowhere else.
  // The kernel's own socket of the VXLAN device (--backend auto: UDP 8472, no process) is the
  // tunnel's, not the daemon's: it is named in the README's threat model.
  const sockets = (await inNetns(ns, ['ss', '-Hltunp'])).stdout.trim().split('\n').filter(Boolean)
  t.same(
    sockets.filter((l) => /^udp\s/.test(l)),
    sockets.filter((l) => /^udp\s+UNCONN\s+\d+\s+\d+\s+(0\.0\.0\.0|\[::\]|\*):8472\s/.test(l) && !/users:/.test(l)),
    "the only UDP sockets are the VXLAN device's",
  )
  const listening = sockets.filter((l) => !/^udp\s/.test(l))
  t.equal(listening.length, 1, `one listening socket in the node namespace: ${listening.join(' | ')}`)
  t.match(listening[0], new RegExp(`^tcp\\s+LISTEN\\s+\\d+\\s+\\d+\\s+${LISTEN.replace(/\./g, '\\.')}\\s.*pid=${d.pid},`), "it is the daemon's, on the --listen address")
  t.equal((await get('GET', '/healthz', '127.0.0.1:9480')).status, 0, 'nothing answers on loopback')

  // No write operations: every method but GET/HEAD is refused, and nothing changes.
  const snapshot = async () => ({
    readyz: (await get('GET', '/readyz')).body,
    routes: await routeLines(ns),
    conflist: statSync(join(confDir, '10-flatnet.conflist')).ino,
    store: readFileSync(storePath, 'utf8'),
    owner: readFileSync(join(stateDir, 'owner-id'), 'utf8'),
    nft: (await inNetns(ns, ['nft', 'list', 'ruleset'])).stdout,
  })
  const before = await snapshot()
  let tried = 0
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE']) {
    for (const path of ['/healthz', '/readyz', '/metrics', '/', '/admin', '/../etc/passwd']) {
      const r = await get(method, path)
      tried++
      t.ok(r.status === 405 || r.status === 404, `${method} ${path} → ${r.status}`)
    }
  }
  t.same(await snapshot(), before, `after ${tried} write attempts: readiness, routes, conflist, datastore, owner id and nftables unchanged`)

  // Private state, whatever the umask.
  const mode = (p: string) => (statSync(p).mode & 0o777).toString(8)
  t.equal(mode(stateDir), '700', 'state dir 0700')
  t.equal(mode(join(stateDir, 'owner-id')), '600', 'owner-id 0600')
  t.equal(mode(dsDir), '700', 'file datastore dir 0700')
  for (const f of readdirSync(dsDir)) t.equal(mode(join(dsDir, f)), '600', `datastore file ${f} 0600`)
  t.equal(mode(join(confDir, '10-flatnet.conflist')), '644', 'the conflist is 0644: the runtime reads it, it holds no secret')
  t.equal(await d.stop(), 0)
})

t.test('no shell: every spawned tool gets an argument array, never a command string', async (t) => {
  const root = fileURLToPath(new URL('.', import.meta.url))
  const sources: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory() && e.name !== 'testing' && e.name !== 'node_modules') walk(join(d, e.name))
      else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !/^fakeApiServer|TestServer/.test(e.name)) sources.push(join(d, e.name))
    }
  }
  walk(root)
  // The daemon's nft calls live in the nft layer (net/nft.ts) since the daemon's shape change.
  sources.push(fileURLToPath(new URL('../net/nft.ts', import.meta.url)))
  let spawns = 0
  for (const file of sources) {
    const text = readFileSync(file, 'utf8')
    const rel = file.slice(root.length)
    t.notMatch(text, /\b(execSync|spawnSync|execFileSync)\s*\(|\bexec\s*\(\s*[`'"]|child_process'\)\.exec\b|\{\s*exec\s*[,}]/, `${rel}: no exec()/sync spawns`)
    t.notMatch(text, /shell\s*:\s*true/, `${rel}: no shell: true`)
    t.notMatch(text, /['"`](\/bin\/)?(ba)?sh['"`]\s*,\s*\[?\s*['"`]-c/, `${rel}: no sh -c`)
    for (const m of text.matchAll(/\b(spawn|execFile)\(\s*([^,]+),\s*(\S)/g)) {
      spawns++
      t.equal(m[3], '[', `${rel}: ${m[1]}(${m[2]}, …) takes an argument array`)
    }
  }
  t.comment(`daemon sources checked: ${sources.length}, spawn/execFile calls: ${spawns}`)
  t.ok(spawns >= 2, 'the known spawns (nft, the chained plugin probe) were found, so the check looks at the right code')
})
