// What the service proxy programs, reduced from Service objects and their endpoints to plain data:
// the one interface between where endpoints come from (Pods matched by selector on the file and
// etcd datastores, EndpointSlices on kubernetes: ./endpoints.ts) and the nftables table that
// proxies them (./compile.ts, ../reconcilers/services.ts). Headless and ExternalName Services are
// never proxied and have no model; a Service the proxy must skip (another proxy's
// `service.kubernetes.io/service-proxy-name`) has none either.

export type ServiceProtocol = 'TCP' | 'UDP' | 'SCTP'

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer'

/** One backend of one Service port: a pod address and the port number it listens on. */
export interface ServiceEndpoint {
  /** The pod address (same family as the cluster IP it serves). */
  address: string
  /** The target port, resolved on this pod (a named targetPort may map to different numbers per pod). */
  port: number
  /** Ready endpoints take new connections; a Service whose endpoints are all not ready rejects. */
  ready: boolean
  /**
   * Not ready because its pod is terminating, but still serving (EndpointSlice conditions
   * `serving` and `terminating`): used only while no endpoint of the set a traffic policy allows
   * is ready, so a rolling update or a drained node does not drop connections meanwhile
   * (kube-proxy does the same since Kubernetes 1.26).
   */
  servingTerminating?: boolean
  /** The node the pod runs on, when known (externalTrafficPolicy: Local keeps NodePort traffic on it). */
  nodeName?: string
  /** `namespace/name` of the pod, when known: for logs and the lab's check. */
  pod?: string
}

export interface ServicePortModel {
  /** `spec.ports[].name` ('' for a single unnamed port). */
  name: string
  protocol: ServiceProtocol
  port: number
  /** Allocated for NodePort and LoadBalancer Services. */
  nodePort?: number
  /** Every endpoint of this port, ready or not, sorted by address then port. */
  endpoints: readonly ServiceEndpoint[]
}

export interface ServiceModel {
  namespace: string
  name: string
  type: ServiceType
  /** `spec.clusterIPs` (one per family, primary first); never empty in a model. */
  clusterIPs: readonly string[]
  /** `spec.externalIPs`, proxied like cluster IPs. */
  externalIPs: readonly string[]
  /** `status.loadBalancer.ingress[].ip` of a LoadBalancer Service. */
  loadBalancerIPs: readonly string[]
  /** Set when `sessionAffinity: ClientIP`: the affinity's timeout (default 10800 s). */
  sessionAffinityTimeoutSeconds?: number
  /** `externalTrafficPolicy: Local`: NodePort/LoadBalancer traffic only to this node's endpoints, client IP kept. */
  externalTrafficLocal: boolean
  /** `internalTrafficPolicy: Local`: cluster-IP traffic only to the client node's endpoints. */
  internalTrafficLocal: boolean
  ports: readonly ServicePortModel[]
}

/** `namespace/name`: how logs, metrics and the table's chain names refer to a Service. */
export function serviceKey(s: Pick<ServiceModel, 'namespace' | 'name'>): string {
  return `${s.namespace}/${s.name}`
}
