// deploy/flatnet-fastpath.yaml is deploy/flatnet.yaml with flatnetd serving the CNI fast path,
// rendered from it (scripts/render-manifests.mjs) so the two never drift: same objects, same
// comments, and only these changes to the flatnetd container —
//   - `--cni-socket=/run/flatnet/cni.sock` instead of `--cni-socket=` (serve the socket where the
//     native entry on the host looks for it), on a hostPath /run/flatnet shared with the host;
//   - the pod address store /var/lib/cni writable (the daemon now writes it, as the plugin does);
//   - `privileged: true`: serving a call is doing the plugin's work, which enters the pod's
//     network namespace (setns needs CAP_SYS_ADMIN in the host's user namespace) and writes
//     per-interface sysctls (rp_filter, IPv6 accept_dad/accept_ra) in both namespaces — and a
//     runtime mounts /proc/sys read-only in every container that is not privileged.
// The default manifest stays unprivileged (NET_ADMIN only) and the entry runs the Node plugin.
import { isMap, isSeq, parseAllDocuments, type Document, type YAMLMap, type YAMLSeq } from 'yaml'
import { DEFAULT_CNI_SOCKET } from '../conf/daemonConfig.js'

export const FAST_PATH_HEADER = [
  '# GENERATED from deploy/flatnet.yaml by scripts/render-manifests.mjs — edit that file and re-render.',
  '# flatnet with the CNI fast path: flatnetd answers the CNI calls of the runtime on this node',
  '# (README "Fast path"). Differs from flatnet.yaml only in the flatnetd container: the socket on a',
  '# hostPath /run/flatnet, /var/lib/cni writable, and privileged (see deploy/fastPathManifest.ts).',
].join('\n')

const socketDir = DEFAULT_CNI_SOCKET.slice(0, DEFAULT_CNI_SOCKET.lastIndexOf('/'))

function mapOf(node: unknown, what: string): YAMLMap {
  if (!isMap(node)) throw new Error(`render the fast-path manifest: ${what} is not a mapping in deploy/flatnet.yaml`)
  return node
}
function seqOf(node: unknown, what: string): YAMLSeq {
  if (!isSeq(node)) throw new Error(`render the fast-path manifest: ${what} is not a list in deploy/flatnet.yaml`)
  return node
}

/** The fast-path manifest's text, from the default manifest's. */
export function renderFastPathManifest(base: string): string {
  const docs: Document[] = parseAllDocuments(base) as Document[]
  const ds = docs.find((d) => d.get('kind') === 'DaemonSet')
  if (!ds) throw new Error('render the fast-path manifest: deploy/flatnet.yaml has no DaemonSet')
  const pod = mapOf(ds.getIn(['spec', 'template', 'spec'], true), 'the DaemonSet pod spec')
  const flatnetd = seqOf(pod.get('containers', true), 'containers').items.find((c) => isMap(c) && c.get('name') === 'flatnetd')
  const daemon = mapOf(flatnetd, 'the flatnetd container')

  const args = seqOf(daemon.get('args', true), 'flatnetd args')
  const off = args.items.findIndex((a) => String((a as { value?: unknown }).value ?? a) === '--cni-socket=')
  if (off < 0) throw new Error('render the fast-path manifest: flatnetd has no --cni-socket= argument to replace')
  const socketArg = ds.createNode(`--cni-socket=${DEFAULT_CNI_SOCKET}`)
  socketArg.commentBefore = ` The CNI fast path: the native entry on the host (${DEFAULT_CNI_SOCKET}, the hostPath below)\n forwards every CNI call here; without this pod it runs the Node plugin itself.`
  args.items.splice(off, 1, socketArg)

  const security = ds.createNode({ runAsUser: 0, privileged: true, readOnlyRootFilesystem: true })
  security.commentBefore =
    ' Privileged: serving a CNI call does the plugin’s work — it enters the pod’s network namespace\n' +
    ' (setns: CAP_SYS_ADMIN in the host user namespace) and writes per-interface sysctls, and a\n' +
    ' runtime mounts /proc/sys read-only in any container that is not privileged.'
  daemon.set('securityContext', security)

  const mounts = seqOf(daemon.get('volumeMounts', true), 'flatnetd volumeMounts')
  for (const m of mounts.items) {
    if (isMap(m) && m.get('mountPath') === '/var/lib/cni') {
      m.delete('readOnly')
      m.commentBefore = ' Written on the fast path: the pod address store, as the plugin writes it.'
    }
  }
  const runMount = ds.createNode({ name: 'flatnet-run', mountPath: socketDir })
  runMount.commentBefore = ` The CNI socket, and the per-pod lock files the fallback plugin on the host shares.`
  mounts.items.push(runMount)
  seqOf(pod.get('volumes', true), 'volumes').items.push(ds.createNode({ name: 'flatnet-run', hostPath: { path: socketDir, type: 'DirectoryOrCreate' } }))

  const body = docs.map((d) => d.toString({ lineWidth: 0, flowCollectionPadding: false })).join('')
  return `${FAST_PATH_HEADER}\n${body}`
}
