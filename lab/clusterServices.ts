// The Services a lab starts with, as a kind cluster has them: the cluster DNS (`kube-system/kube-dns`
// at 10.96.0.10, served by the lab's add-ons pod `kube-system/coredns`), and two demo Services over
// the pods `lab up` makes (`default/demo`, ClusterIP; `default/demo-nodeport`, NodePort) — so the
// first `lab check` shows Services working. Plus the outside's route to the LoadBalancer pool.
// Cluster objects need the file datastore (objectStore.ts): an etcd lab has none of this.
import type { IService } from 'kubernetes-models/v1'
import type { WritableObjectStore } from '../daemon/objects/index.js'
import { flatnetBinary } from './binaries.js'
import { errorText, runOk } from './exec.js'
import { LOAD_BALANCER_POOL, familiesOf, serviceCidrsOf, type LabLayout } from './layout.js'
import { addPod } from './pods.js'
import type { PodPort } from './podSpec.js'
import { startPodProcess } from './responder.js'
import type { LabNode, LabPod, LabState } from './state.js'

/** The cluster DNS Service's addresses: kubeadm's and kind's `.10` of each service range. */
export const CLUSTER_DNS_IPS = { 4: '10.96.0.10', 6: 'fd00:10:96::a' } as const

export const ADDONS_POD = {
  namespace: 'kube-system',
  name: 'coredns',
  labels: { 'k8s-app': 'kube-dns' },
  ports: [
    { name: 'dns', port: 53, protocol: 'UDP' },
    { name: 'dns-tcp', port: 53, protocol: 'TCP' },
  ] as PodPort[],
}

/** What the pods `lab up` and `lab node add --pods` make carry: the demo Services select them. */
export const DEMO_LABELS: Readonly<Record<string, string>> = { app: 'demo' }
export const DEMO_PORTS: readonly PodPort[] = [
  { name: 'http', port: 80, protocol: 'TCP' },
  { name: 'dns', port: 53, protocol: 'UDP' },
]

export const DEMO_SERVICES = { clusterIP: 'demo', nodePort: 'demo-nodeport' } as const

/** `kube-system/kube-dns`, as kubeadm creates it (selector k8s-app=kube-dns, 53/UDP and 53/TCP). */
export function kubeDnsService(state: Pick<LabState, 'ipFamily'>): IService {
  const families = familiesOf(state.ipFamily)
  const ips = families.map((f) => CLUSTER_DNS_IPS[f])
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'kube-system', name: 'kube-dns', labels: { 'k8s-app': 'kube-dns', 'kubernetes.io/name': 'CoreDNS' } },
    spec: {
      selector: { 'k8s-app': 'kube-dns' },
      clusterIP: ips[0],
      clusterIPs: ips,
      ipFamilies: families.map((f) => (f === 6 ? 'IPv6' : 'IPv4')),
      ipFamilyPolicy: families.length > 1 ? 'RequireDualStack' : 'SingleStack',
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns' },
        { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 'dns-tcp' },
      ],
    },
  }
}

/** The two demo Services over the `app=demo` pods: port 80 → the pods' `http` port. */
export function demoServices(state: Pick<LabState, 'ipFamily'>): IService[] {
  const families = familiesOf(state.ipFamily)
  const spec = (type: 'ClusterIP' | 'NodePort'): IService['spec'] => ({
    type,
    selector: { ...DEMO_LABELS },
    ...(families.length > 1 ? { ipFamilyPolicy: 'PreferDualStack' as const } : {}),
    ports: [
      { name: 'http', port: 80, protocol: 'TCP', targetPort: 'http' },
      { name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns' },
    ],
  })
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name: DEMO_SERVICES.clusterIP }, spec: spec('ClusterIP') },
    { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name: DEMO_SERVICES.nodePort }, spec: spec('NodePort') },
  ]
}

/** Applies kube-dns and returns its cluster IPs as stored (the nameservers of every pod's resolv.conf). */
export async function applyKubeDns(store: WritableObjectStore, state: LabState): Promise<string[]> {
  const wanted = kubeDnsService(state)
  const { object } = await store.apply(wanted)
  const ips = object.spec?.clusterIPs?.length ? object.spec.clusterIPs : object.spec?.clusterIP ? [object.spec.clusterIP] : []
  return ips.length ? [...ips] : [...wanted.spec!.clusterIPs!]
}

/** Starts the add-ons pod (cluster DNS + LoadBalancer controller, addons.ts) on `node`. */
export async function startAddonsPod(lab: LabLayout, state: LabState, node: LabNode): Promise<LabPod> {
  if (state.datastore.kind !== 'file') throw new Error(`lab ${state.name}: the cluster add-ons need the file datastore`)
  const datastore = state.datastore.path
  const families = familiesOf(state.ipFamily).join(',')
  return addPod(lab, node, ADDONS_POD.name, {
    namespace: ADDONS_POD.namespace,
    labels: { ...ADDONS_POD.labels },
    ports: ADDONS_POD.ports,
    start: (pod) =>
      startPodProcess(
        lab,
        pod,
        [flatnetBinary('flatnetctl'), 'lab', 'cluster-addons', '--datastore', datastore, '--families', families, '--service-cidr', serviceCidrsOf(state.ipFamily).join(',')],
        'cluster add-ons',
      ),
  })
}

/**
 * The outside's route to the LoadBalancer pool: through every node at once (a multipath route, as
 * a cloud load balancer spreads over the nodes), each node's service proxy DNATs the address. In
 * a routed lab the route is the router's.
 * Replaced whole whenever nodes come or go; no route at all when the lab has no node.
 */
export async function routeLoadBalancerPool(state: LabState): Promise<void> {
  for (const family of familiesOf(state.ipFamily)) {
    const pool = LOAD_BALANCER_POOL.cidrs[family]
    const vias = state.nodes.map((n) => n.addresses.find((a) => a.includes(':') === (family === 6))).filter((a): a is string => !!a)
    // A routed lab's outside sits behind the router, which reaches every node on its segment: the
    // outside already sends the node address space (the pool is part of it) to the router, so the
    // multipath route belongs there.
    const via = state.topology === 'routed' && state.network.routerNetns ? state.network.routerNetns : state.network.outsideNetns
    const argv = ['ip', '-n', via, `-${family}`, 'route']
    try {
      if (vias.length === 0) await runOk([...argv, 'del', pool]).catch(() => undefined)
      else await runOk([...argv, 'replace', pool, ...vias.flatMap((v) => ['nexthop', 'via', v])], { what: `route the LoadBalancer pool ${pool} from ${via} via ${vias.join(', ')}` })
    } catch (err) {
      throw new Error(`lab ${state.name}: ${errorText(err)}`)
    }
  }
}
