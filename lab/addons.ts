// The lab's cluster add-ons, one process in the lab's `kube-system/coredns` pod (what CoreDNS and
// cloud-provider-kind are to a kind cluster):
// - the cluster DNS (dns/server.ts) on port 53 of the pod, behind the `kube-system/kube-dns`
//   Service (10.96.0.10): every node's service proxy carries pods' queries to it like any
//   Service's traffic;
// - the LoadBalancer controller (loadBalancer.ts): writes `status.loadBalancer.ingress` of every
//   LoadBalancer Service.
// Both read the lab's object store (a file on the host: a process in a pod's namespace reads it
// like any other), the DNS zone rebuilt on every change of Services or Pods.
// Started by `lab up` as `flatnetctl lab cluster-addons`; it ends with the pod's namespace.
import type { IPod, IService } from 'kubernetes-models/v1'
import type { IpFamily } from '../ipam/cidr.js'
import { isWritable, openObjectStore, type WritableObjectStore } from '../daemon/objects/index.js'
import { startDnsServer } from './dns/server.js'
import { buildZone } from './dns/zone.js'
import { loadBalancerChanges } from './loadBalancer.js'

export interface AddonsOptions {
  /** The lab's file datastore (nodes.json): its objects.json sits beside it. */
  datastore: string
  families: IpFamily[]
  /** The lab's Service ranges: a status write re-applies the Service, validated against them. */
  serviceCidrs: string[]
  dnsPort?: number
  /** Lines for the log (stderr). */
  log?: (line: string) => void
}

export interface RunningAddons {
  stop(): Promise<void>
}

/** Writes what the LoadBalancer controller decided; a conflict (the Service changed meanwhile) waits for the next list. */
async function writeIngress(store: WritableObjectStore, services: readonly IService[], families: IpFamily[], log: (line: string) => void): Promise<void> {
  for (const change of loadBalancerChanges(services, families)) {
    const svc = services.find((s) => s.metadata?.namespace === change.namespace && s.metadata?.name === change.name)
    if (!svc) continue
    try {
      await store.apply({ ...svc, status: { ...svc.status, loadBalancer: change.ingress.length ? { ingress: change.ingress.map((ip) => ({ ip })) } : {} } })
      log(`Service ${change.namespace}/${change.name}: load balancer ingress ${change.ingress.join(', ') || 'none'}`)
    } catch (err) {
      log(`Service ${change.namespace}/${change.name}: write load balancer ingress ${change.ingress.join(', ')}: ${(err as Error).message}`)
    }
  }
}

export async function runClusterAddons(options: AddonsOptions): Promise<RunningAddons> {
  const log = options.log ?? (() => {})
  const store = await openObjectStore({ kind: 'file', path: options.datastore }, { serviceCIDRs: options.serviceCidrs })
  if (!isWritable(store)) throw new Error(`cluster add-ons: the object store of ${options.datastore} is read-only`)
  let services: IService[] | undefined
  let pods: IPod[] | undefined
  const dns = await startDnsServer(buildZone([], []), options.dnsPort ?? 53)
  // One LoadBalancer pass at a time: the next list waits for the writes of the last.
  let lbPass = Promise.resolve()
  const rebuild = () => {
    if (services && pods) dns.setZone(buildZone(services, pods))
  }
  const stops = [
    store.watch(
      'Service',
      (list) => {
        services = list
        rebuild()
        lbPass = lbPass.then(() => writeIngress(store, list, options.families, log))
      },
      (err) => log(`watch Services: ${err.message}`),
    ),
    store.watch(
      'Pod',
      (list) => {
        pods = list
        rebuild()
      },
      (err) => log(`watch Pods: ${err.message}`),
    ),
  ]
  return {
    stop: async () => {
      for (const stop of stops) stop()
      await lbPass
      await dns.close()
      await store.close()
    },
  }
}
