// deploy/flatnet-services.yaml, checked offline: rendered from deploy/flatnet.yaml and up to date,
// schema-valid with no unknown field, different from the default manifest in exactly the places
// deploy/servicesManifest.ts names (read-only RBAC for Services and EndpointSlices in a role of its
// own, --proxy-services), and a command line the daemon accepts with the proxy on.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import type { IClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole'
import t from 'tap'
import { loadDaemonConfig } from '../conf/daemonFlags.js'
import { renderServicesManifest } from './servicesManifest.js'
import { repoRoot } from './testing/cniPackage.js'
import { describeObject, expandKubeVars, parseManifest, readManifest, unknownFields, validateSchema, type KubeObject } from './testing/manifests.js'

const basePath = join(repoRoot, 'deploy/flatnet.yaml')
const variantPath = join(repoRoot, 'deploy/flatnet-services.yaml')
const base = readManifest(basePath)
const variant = readManifest(variantPath)
const daemonSetOf = (docs: KubeObject[]) => docs.find((d) => d.kind === 'DaemonSet') as KubeObject & IDaemonSet
const flatnetdOf = (docs: KubeObject[]) => daemonSetOf(docs).spec!.template.spec!.containers.find((c) => c.name === 'flatnetd')!
const isServicesRbac = (d: KubeObject) => d.metadata?.name === 'flatnet-services'

t.test('the rendered file is up to date with deploy/flatnet.yaml', async (t) => {
  t.equal(readFileSync(variantPath, 'utf8'), renderServicesManifest(readFileSync(basePath, 'utf8')), 'stale: run node scripts/render-manifests.mjs')
  t.same(parseManifest(renderServicesManifest(readFileSync(basePath, 'utf8')), 'rendered'), variant, 'what it renders parses to the committed objects')
})

t.test('every document validates against the schema of its kind and has no field the API does not know', async (t) => {
  for (const o of variant) {
    t.doesNotThrow(() => validateSchema(o), `${describeObject(o)}: schema`)
    t.same(unknownFields(o), [], `${describeObject(o)}: no unknown field`)
  }
})

t.test('only this variant grants Services and EndpointSlices, read only, to flatnet; nothing else differs but --proxy-services', async (t) => {
  const role = variant.find((d) => d.kind === 'ClusterRole' && isServicesRbac(d)) as KubeObject & IClusterRole
  t.same(
    role.rules!.map((r) => ({ apiGroups: r.apiGroups, resources: r.resources, verbs: r.verbs })),
    [
      { apiGroups: [''], resources: ['services'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
    ],
  )
  const binding = variant.find((d) => d.kind === 'ClusterRoleBinding' && isServicesRbac(d)) as unknown as { roleRef: unknown; subjects: unknown }
  t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'flatnet-services' })
  t.same(binding.subjects, [{ kind: 'ServiceAccount', name: 'flatnet', namespace: 'flatnet' }])
  const granted = (docs: KubeObject[]) =>
    docs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role').flatMap((d) => ((d as unknown as IClusterRole).rules ?? []).flatMap((r) => r.resources ?? []))
  t.notOk(granted(base).includes('services') || granted(base).includes('endpointslices'), 'the default manifest grants neither')
  t.same(
    variant.filter((d) => d.kind !== 'DaemonSet' && !isServicesRbac(d)),
    base.filter((d) => d.kind !== 'DaemonSet'),
    'every other object is the same',
  )
  const v = structuredClone(daemonSetOf(variant))
  const vd = v.spec!.template.spec!.containers.find((c) => c.name === 'flatnetd')!
  t.equal(vd.args!.at(-1), '--proxy-services')
  vd.args = vd.args!.slice(0, -1)
  t.same(v, daemonSetOf(base), 'the DaemonSet differs by that one argument')
})

t.test('the daemon accepts the command line, with the service proxy on the kubernetes datastore', async (t) => {
  const c = flatnetdOf(variant)
  const env: Record<string, string> = {}
  for (const e of c.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath
    env[e.name] = field === 'spec.nodeName' ? 'node-a' : field === 'status.hostIP' ? '172.18.0.3' : field === 'metadata.namespace' ? 'flatnet' : expandKubeVars(e.value ?? '', env)
  }
  const loaded = await loadDaemonConfig(
    (c.args ?? []).map((a) => expandKubeVars(a, env)),
    env,
  )
  if (loaded.kind !== 'run') throw new Error('the command line asks for help')
  t.equal(loaded.config.datastore.kind, 'kubernetes')
  t.equal(loaded.config.proxyServices, true)
  const baseLoaded = await loadDaemonConfig(
    (flatnetdOf(base).args ?? []).map((a) => expandKubeVars(a, env)),
    env,
  )
  t.equal(baseLoaded.kind === 'run' && baseLoaded.config.proxyServices, false, 'the default manifest leaves Services to kube-proxy')
})
