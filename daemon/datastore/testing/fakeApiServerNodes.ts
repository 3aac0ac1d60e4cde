// Test-only: Node objects shaped like the ones kubelet registers on a kind cluster, for the FAKE
// API server's tests. Only the data; the fake assigns uid, resourceVersion and creationTimestamp.
import type { NodeCondition, NodeJson } from '../kubernetesNodes.js'

export interface FakeNodeShape {
  /** spec.podCIDRs (and spec.podCIDR = the first), as kube-controller-manager assigns them. */
  podCIDRs?: string[]
  internalIPs?: string[]
  externalIPs?: string[]
  /** Extra conditions (e.g. NetworkUnavailable=True, as cloud node controllers set on new nodes). */
  conditions?: NodeCondition[]
}

const at = '2025-01-01T00:00:00Z'

function condition(type: string, status: NodeCondition['status'], reason: string, message: string): NodeCondition {
  return { type, status, reason, message, lastHeartbeatTime: at, lastTransitionTime: at }
}

export function fakeNode(name: string, shape: FakeNodeShape = {}): NodeJson & { status: Record<string, unknown> } {
  const addresses = [...(shape.internalIPs ?? []).map((address) => ({ type: 'InternalIP', address })), ...(shape.externalIPs ?? []).map((address) => ({ type: 'ExternalIP', address }))]
  if (addresses.length > 0) addresses.push({ type: 'Hostname', address: name })
  const spec: NodeJson['spec'] = { providerID: `kind://docker/kind/${name}` }
  if (shape.podCIDRs) {
    spec.podCIDR = shape.podCIDRs[0]
    spec.podCIDRs = [...shape.podCIDRs]
  }
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      labels: { 'beta.kubernetes.io/arch': 'amd64', 'beta.kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' },
      annotations: {
        'kubeadm.alpha.kubernetes.io/cri-socket': 'unix:///run/containerd/containerd.sock',
        'node.alpha.kubernetes.io/ttl': '0',
        'volumes.kubernetes.io/controller-managed-attach-detach': 'true',
      },
    },
    spec,
    status: {
      // Registered but not yet reporting addresses (as right after kubelet registers): no addresses key at all.
      ...(addresses.length > 0 ? { addresses } : {}),
      allocatable: { cpu: '2', 'ephemeral-storage': '61202244Ki', memory: '8029524Ki', pods: '110' },
      capacity: { cpu: '2', 'ephemeral-storage': '61202244Ki', memory: '8029524Ki', pods: '110' },
      conditions: [
        condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        condition('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status'),
        ...(shape.conditions ?? []),
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        architecture: 'amd64',
        bootID: '00000000-0000-0000-0000-000000000000',
        containerRuntimeVersion: 'containerd://1.7.18',
        kernelVersion: '6.1.0',
        kubeProxyVersion: 'v1.31.0',
        kubeletVersion: 'v1.31.0',
        machineID: '0',
        operatingSystem: 'linux',
        osImage: 'Debian GNU/Linux 12 (bookworm)',
        systemUUID: '0',
      },
    },
  }
}
