// Kubernetes objects for policy tests, in their JSON shape, with only what policy reads.
import type { INamespace, IPod } from 'kubernetes-models/v1'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'

type PodPort = { name?: string; containerPort: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }

export function namespace(name: string, labels: Record<string, string> = {}): INamespace {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels } } }
}

export function pod(
  ns: string,
  name: string,
  addresses: string[],
  labels: Record<string, string> = {},
  ports: PodPort[] = [],
  extra: { hostNetwork?: boolean; phase?: 'Running' | 'Succeeded' } = {},
): IPod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: ns, name, labels },
    spec: { containers: [{ name: 'main', ports }], ...(extra.hostNetwork ? { hostNetwork: true } : {}) },
    status: { phase: extra.phase ?? 'Running', ...(addresses.length ? { podIP: addresses[0], podIPs: addresses.map((ip) => ({ ip })) } : {}) },
  }
}

export function policy(ns: string, name: string, spec: INetworkPolicy['spec']): INetworkPolicy {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: ns, name }, spec }
}
