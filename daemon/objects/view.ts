// What a reconciler reads of the cluster objects (Namespaces, Pods, NetworkPolicies, Services, EndpointSlices), whatever
// the datastore: the latest full list of each kind, in Kubernetes JSON shape, sorted by
// namespace then name. A kind is `undefined` until it has been fully listed once (then
// InputSource.synced() of its input kind is true), and the runner never syncs a reconciler that
// needs it before that. The daemon's ObjectView (objectView.ts) implements it; a policy
// reconciler's View is InputSource & ObjectInputs & the node's own identity.
import type { INamespace, IPod, IService } from 'kubernetes-models/v1'
import type { IEndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import type { InputKind } from '../reconcile/contract.js'

export interface ObjectInputs {
  /** Every Namespace (each carries the label `kubernetes.io/metadata.name`); undefined until fully listed. */
  namespaces(): readonly INamespace[] | undefined
  /** Every Pod of the cluster (not only this node's); undefined until fully listed. */
  pods(): readonly IPod[] | undefined
  /** Every NetworkPolicy, with `spec.policyTypes` defaulted; undefined until fully listed. */
  networkPolicies(): readonly INetworkPolicy[] | undefined
  /** Every Service (clusterIPs and nodePorts allocated); undefined until fully listed. */
  services(): readonly IService[] | undefined
  /**
   * Every EndpointSlice: on the kubernetes datastore the control plane's endpoints; on file and etcd
   * only those a user applied for Services without a selector (endpoints of the others are derived
   * from Pods: services/endpoints.ts). Undefined until fully listed.
   */
  endpointSlices(): readonly IEndpointSlice[] | undefined
}

/** The input kinds ObjectInputs serves (reconcile/contract.ts). */
export type ObjectInputKind = Extract<InputKind, 'namespaces' | 'pods' | 'networkpolicies' | 'services' | 'endpointslices'>

export const OBJECT_INPUT_KINDS: readonly ObjectInputKind[] = ['namespaces', 'pods', 'networkpolicies', 'services', 'endpointslices']
