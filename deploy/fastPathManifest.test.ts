// deploy/flatnet-fastpath.yaml, checked offline: rendered from deploy/flatnet.yaml and up to date,
// schema-valid with no unknown field, different from the default manifest in exactly the places
// deploy/fastPathManifest.ts names, and a command line the daemon accepts with the socket where
// the native entry on the host looks for it, on a host directory shared with the host.
// (deploy/daemonContainer.test.ts runs it: a privileged container serving the entry.)
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import type { IContainer } from 'kubernetes-models/v1/Container'
import t from 'tap'
import { DEFAULT_CNI_SOCKET } from '../conf/daemonConfig.js'
import { loadDaemonConfig } from '../conf/daemonFlags.js'
import { renderFastPathManifest } from './fastPathManifest.js'
import { repoRoot } from './testing/cniPackage.js'
import { describeObject, expandKubeVars, parseManifest, readManifest, unknownFields, validateSchema, type KubeObject } from './testing/manifests.js'

const basePath = join(repoRoot, 'deploy/flatnet.yaml')
const variantPath = join(repoRoot, 'deploy/flatnet-fastpath.yaml')
const base = readManifest(basePath)
const variant = readManifest(variantPath)
const daemonSetOf = (docs: KubeObject[]) => docs.find((d) => d.kind === 'DaemonSet') as KubeObject & IDaemonSet
const flatnetdOf = (docs: KubeObject[]) => daemonSetOf(docs).spec!.template.spec!.containers.find((c) => c.name === 'flatnetd')!

t.test('the rendered file is up to date with deploy/flatnet.yaml', async (t) => {
  t.equal(readFileSync(variantPath, 'utf8'), renderFastPathManifest(readFileSync(basePath, 'utf8')), 'stale: run node scripts/render-manifests.mjs')
  t.same(parseManifest(renderFastPathManifest(readFileSync(basePath, 'utf8')), 'rendered'), variant, 'what it renders parses to the committed objects')
})

t.test('every document validates against the schema of its kind and has no field the API does not know', async (t) => {
  for (const o of variant) {
    t.doesNotThrow(() => validateSchema(o), `${describeObject(o)}: schema`)
    t.same(unknownFields(o), [], `${describeObject(o)}: no unknown field`)
  }
})

t.test('it differs from the default manifest only in the flatnetd container: socket, mounts, privileged', async (t) => {
  t.same(
    variant.filter((d) => d.kind !== 'DaemonSet'),
    base.filter((d) => d.kind !== 'DaemonSet'),
    'every other object is the same',
  )
  const v = structuredClone(daemonSetOf(variant))
  const b = daemonSetOf(base)
  const vd = v.spec!.template.spec!.containers.find((c) => c.name === 'flatnetd')! as IContainer
  t.same(vd.securityContext, { runAsUser: 0, privileged: true, readOnlyRootFilesystem: true }, 'privileged, still with a read-only root')
  t.ok(vd.args!.includes(`--cni-socket=${DEFAULT_CNI_SOCKET}`), 'serves the socket where the entry looks')
  // Undo the documented changes: what remains must be the default DaemonSet exactly.
  vd.securityContext = flatnetdOf(base).securityContext
  vd.args = vd.args!.map((a) => (a === `--cni-socket=${DEFAULT_CNI_SOCKET}` ? '--cni-socket=' : a))
  vd.volumeMounts = vd.volumeMounts!.filter((m) => m.name !== 'flatnet-run').map((m) => (m.mountPath === '/var/lib/cni' ? { ...m, readOnly: true } : m))
  v.spec!.template.spec!.volumes = v.spec!.template.spec!.volumes!.filter((x) => x.name !== 'flatnet-run')
  t.same(v, b, 'nothing else differs')
})

t.test('the daemon accepts the command line; the socket and the stores are the host paths the entry and the plugin use', async (t) => {
  const ds = daemonSetOf(variant)
  const c = flatnetdOf(variant)
  const env: Record<string, string> = {}
  for (const e of c.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath
    env[e.name] = field === 'spec.nodeName' ? 'node-a' : field === 'status.hostIP' ? '172.18.0.3' : field === 'metadata.namespace' ? (ds.metadata?.namespace ?? '') : expandKubeVars(e.value ?? '', env)
  }
  const argv = (c.args ?? []).map((a) => expandKubeVars(a, env))
  const loaded = await loadDaemonConfig(
    argv.map((a) => (a === '--datastore=kubernetes' ? '--datastore=file' : a)),
    env,
  )
  if (loaded.kind !== 'run') throw new Error('the command line asks for help')
  const cfg = loaded.config
  t.equal(cfg.cniSocket, DEFAULT_CNI_SOCKET, 'flatnetd serves the CNI socket at the entry’s default path')
  const volumes = ds.spec!.template.spec!.volumes ?? []
  const hostPathOf = (path: string) => {
    const m = (c.volumeMounts ?? []).filter((x) => path === x.mountPath || path.startsWith(`${x.mountPath}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0]
    const vol = m && volumes.find((x) => x.name === m.name)
    return m && vol?.hostPath ? { hostPath: vol.hostPath.path + path.slice(m.mountPath.length), readOnly: m.readOnly === true } : undefined
  }
  t.same(hostPathOf(cfg.cniSocket!), { hostPath: DEFAULT_CNI_SOCKET, readOnly: false }, 'the socket is the host’s /run/flatnet/cni.sock')
  t.same(hostPathOf('/run/flatnet/locks'), { hostPath: '/run/flatnet/locks', readOnly: false }, 'per-pod locks shared with the fallback plugin on the host')
  t.same(hostPathOf(cfg.ipamDataDir), { hostPath: cfg.ipamDataDir, readOnly: false }, 'the pod address store is the host’s, writable')
})
