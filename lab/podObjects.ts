// A lab pod is a Kubernetes Pod: this file turns one into the other. The Pod object the lab
// stores says what the API server would hold for a running pod — namespace, labels, node, the
// containerPorts its responder serves, and status.podIP(s) as the plugin assigned them — so
// flatnetd's policy reconciler reads the lab exactly as it reads a real cluster.
import type { IPod } from 'kubernetes-models/v1'
import { DEFAULT_POD_NAMESPACE, checkIdentity, type PodIdentity, type PodPort, type PortProtocol } from './podSpec.js'
import type { LabNode, LabPod } from './state.js'

/** The one container a lab pod runs: its responder (responder.ts). */
export const RESPONDER_CONTAINER = 'responder'

/** The Pod object of a running lab pod (without uid/resourceVersion: the store assigns them). */
export function podObject(pod: LabPod, node: LabNode | undefined): IPod {
  // In the plugin's result order (the conflist's ranges): podIPs[0] is the primary family's, as kubelet orders them.
  const addresses = pod.addresses?.length ? pod.addresses : [pod.address]
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: pod.name,
      namespace: pod.k8sNamespace ?? DEFAULT_POD_NAMESPACE,
      labels: { ...(pod.labels ?? {}) },
    },
    spec: {
      nodeName: pod.node,
      containers: [
        {
          name: RESPONDER_CONTAINER,
          image: 'flatnet-lab/responder',
          ports: (pod.ports ?? []).map((p) => ({ ...(p.name ? { name: p.name } : {}), containerPort: p.port, protocol: p.protocol })),
        },
      ],
    },
    status: {
      phase: 'Running',
      ...(node ? { hostIP: node.address, hostIPs: (node.addresses?.length ? node.addresses : [node.address]).map((ip) => ({ ip })) } : {}),
      podIP: addresses[0],
      podIPs: addresses.map((ip) => ({ ip })),
      ...(pod.createdAt ? { startTime: pod.createdAt } : {}),
    },
  }
}

export class PodObjectError extends Error {
  override readonly name = 'PodObjectError'
}

/** What `lab apply` of a Pod asks for: the pod's identity and, optionally, its node. */
export interface PodRequest extends PodIdentity {
  nodeName?: string
}

/** Reads a Pod object as a lab pod request; what the lab cannot run is refused, naming the field. */
export function podRequest(obj: IPod): PodRequest {
  const namespace = obj.metadata?.namespace ?? DEFAULT_POD_NAMESPACE
  const name = obj.metadata?.name
  const what = `Pod ${namespace}/${name ?? '?'}`
  if (!name) throw new PodObjectError(`${what}: metadata.name is required`)
  if (obj.spec?.hostNetwork) throw new PodObjectError(`${what}: spec.hostNetwork: the lab runs pod-network pods only`)
  const ports: PodPort[] = []
  for (const [i, c] of (obj.spec?.containers ?? []).entries()) {
    for (const [j, p] of (c.ports ?? []).entries()) {
      const protocol = (p.protocol ?? 'TCP') as PortProtocol
      ports.push({ ...(p.name ? { name: p.name } : {}), port: p.containerPort, protocol })
      if (p.hostPort !== undefined) throw new PodObjectError(`${what}: spec.containers[${i}].ports[${j}].hostPort: not supported in the lab`)
    }
  }
  const request: PodRequest = { namespace, name, labels: { ...(obj.metadata?.labels ?? {}) }, ports }
  if (obj.spec?.nodeName) request.nodeName = obj.spec.nodeName
  try {
    checkIdentity(request)
  } catch (err) {
    throw new PodObjectError(`${what}: ${(err as Error).message}`)
  }
  return request
}

/**
 * What a re-apply of a running pod may change: like the API server, only metadata (labels here);
 * its node and ports are immutable (a pod's spec.containers[*].ports and spec.nodeName cannot be
 * updated). Returns why not, or undefined when the change is allowed.
 */
export function immutableChange(pod: LabPod, request: PodRequest): string | undefined {
  if (request.nodeName !== undefined && request.nodeName !== pod.node) return `spec.nodeName is immutable (${pod.node}, asked ${request.nodeName})`
  const text = (ports: readonly PodPort[]) => JSON.stringify(ports.map((p) => [p.name ?? '', p.port, p.protocol]).sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)))
  if (text(pod.ports ?? []) !== text(request.ports)) return 'spec.containers[*].ports is immutable'
  return undefined
}

/** The node a new pod without spec.nodeName goes to: the one with the fewest pods, then the first. */
export function leastLoadedNode(nodes: readonly LabNode[], pods: readonly LabPod[]): LabNode | undefined {
  let best: LabNode | undefined
  let bestCount = Infinity
  for (const n of nodes) {
    const count = pods.filter((p) => p.node === n.name).length
    if (count < bestCount) {
      best = n
      bestCount = count
    }
  }
  return best
}
