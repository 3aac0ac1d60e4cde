// deploy/flatnet-services.yaml is deploy/flatnet.yaml with flatnetd also proxying Services (a
// kube-proxy replacement: README "Services"), rendered from it (scripts/render-manifests.mjs) so
// the two never drift. The RBAC the proxy needs — Services and EndpointSlices, get/list/watch,
// read only — exists only in this variant, in a ClusterRole of its own (`flatnet-services`), so a
// cluster that keeps kube-proxy grants flatnet nothing more. Only these changes:
//   - the ClusterRole and ClusterRoleBinding `flatnet-services`, after the `flatnet` binding;
//   - `--proxy-services` on flatnetd's command line (off by default on the kubernetes datastore).
// Run kube-proxy or this proxy, not both: two proxies program the same Service addresses.
import { parseAllDocuments, type Document } from 'yaml'

export const SERVICES_HEADER = [
  '# GENERATED from deploy/flatnet.yaml by scripts/render-manifests.mjs — edit that file and re-render.',
  '# flatnet as the service proxy too (README "Services"): flatnetd --proxy-services, and read access to',
  '# Services and EndpointSlices in a ClusterRole of its own. Replaces kube-proxy: remove kube-proxy',
  '# (or start the cluster without it) before applying this instead of flatnet.yaml.',
].join('\n')

export const SERVICES_RBAC = `# The service proxy's reads, by list + watch: Services (addresses, ports, type, policies) and
# EndpointSlices (the control plane's endpoints). Read only; granted only with --proxy-services.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: flatnet-services
  labels:
    app.kubernetes.io/name: flatnet
rules:
  - apiGroups: [""]
    resources: [services]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: flatnet-services
  labels:
    app.kubernetes.io/name: flatnet
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: flatnet-services
subjects:
  - kind: ServiceAccount
    name: flatnet
    namespace: flatnet
`

/** The services manifest's text, from the default manifest's. */
export function renderServicesManifest(base: string): string {
  const docs: Document[] = parseAllDocuments(base) as Document[]
  const binding = docs.findIndex((d) => d.get('kind') === 'ClusterRoleBinding' && d.getIn(['metadata', 'name']) === 'flatnet')
  if (binding < 0) throw new Error('render the services manifest: deploy/flatnet.yaml has no ClusterRoleBinding flatnet')
  const ds = docs.find((d) => d.get('kind') === 'DaemonSet')
  if (!ds) throw new Error('render the services manifest: deploy/flatnet.yaml has no DaemonSet')
  const containers = ds.getIn(['spec', 'template', 'spec', 'containers']) as { items?: unknown[] } | undefined
  const flatnetd = (containers?.items ?? []).find((c) => (c as { get?: (k: string) => unknown }).get?.('name') === 'flatnetd') as
    { get(k: string, keep: true): { items: unknown[] } | undefined } | undefined
  const args = flatnetd?.get('args', true)
  if (!args?.items) throw new Error('render the services manifest: the flatnetd container has no args')
  const arg = ds.createNode('--proxy-services')
  arg.commentBefore = ' Proxy Services in nftables (kube-proxy replacement; RBAC: ClusterRole flatnet-services).'
  args.items.push(arg)
  const rbac = parseAllDocuments(SERVICES_RBAC) as Document[]
  const all = [...docs.slice(0, binding + 1), ...rbac, ...docs.slice(binding + 1)]
  const text = (d: Document) => d.toString({ lineWidth: 0, flowCollectionPadding: false })
  const body = all.map((d, i) => (i > 0 && !text(d).startsWith('---') ? `---\n${text(d)}` : text(d))).join('')
  return `${SERVICES_HEADER}\n${body}`
}
