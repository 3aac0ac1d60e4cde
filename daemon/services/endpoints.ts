// From Service objects and their backends to the ServiceModels the proxy programs (./model.ts),
// as a pure function. Where the backends come from depends on who runs the control plane:
// - file and etcd datastores (source 'pods'): flatnet is the API server, nothing writes
//   EndpointSlices for it, so the endpoints of a Service with a selector are derived here from the
//   Pods it selects, by the rules of the upstream EndpointSlice controller
//   (pkg/controller/endpointslice): a pod with an address, not finished (Succeeded/Failed);
//   ready when Running, its Ready condition not False and not terminating (deletionTimestamp),
//   or always when the Service publishes not-ready addresses (a terminating pod still Ready is
//   serving-terminating: the fallback when nothing is ready); a named targetPort resolved on each
//   pod from its containers' ports of the same protocol (a pod without that name is no endpoint
//   of that port). A Service without a selector takes the EndpointSlices a user applied for it,
//   as upstream lets one do for selectorless Services.
// - kubernetes (source 'endpointslices'): the control plane's EndpointSlices, grouped by the label
//   `kubernetes.io/service-name`, matched to Service ports by name and protocol; kube-proxy reads
//   only an endpoint's first address and a missing `ready` condition means ready (discovery/v1).
// Skipped as kube-proxy skips them: headless (`clusterIP: None`, or the label
// `service.kubernetes.io/headless`), ExternalName, a Service not allocated yet, and one labelled
// `service.kubernetes.io/service-proxy-name` for another proxy than `proxyName`.
import type { IPod, IService, IServicePort } from 'kubernetes-models/v1'
import type { IEndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1'
import { familyOf, ipToBytes } from '../../net/ipbytes.js'
import type { IpFamily } from '../../ipam/index.js'
import type { ServiceEndpoint, ServiceModel, ServicePortModel, ServiceProtocol, ServiceType } from './model.js'

/** The label an EndpointSlice names its Service by (discovery.k8s.io/v1). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'
/** A Service carrying this label belongs to the proxy it names; kube-proxy skips every Service that has it. */
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name'
/** A Service carrying this label (any value) is headless for the proxy. */
export const HEADLESS_LABEL = 'service.kubernetes.io/headless'

export interface ServiceModelInput {
  services: readonly IService[]
  pods?: readonly IPod[]
  endpointSlices?: readonly IEndpointSlice[]
  /** 'pods' on file and etcd (endpoints derived from selected Pods), 'endpointslices' on kubernetes. */
  source: 'pods' | 'endpointslices'
  /** This proxy's name for `service.kubernetes.io/service-proxy-name`; unset: every labelled Service is another proxy's. */
  proxyName?: string
}

/** Every Service this proxy programs, sorted by namespace then name. */
export function serviceModels(input: ServiceModelInput): ServiceModel[] {
  return new ServiceModelMemo().models(input)
}

/**
 * serviceModels across syncs: a Service whose object, and whose inputs (its EndpointSlices, or the
 * pods of its namespace carrying its selector's first label), are the very objects of the last
 * call keeps its model, not rebuilt. A datastore that keeps unchanged objects as they are (the
 * kubernetes watch) then costs a sync of 10 000 Services a pass of identity checks instead of
 * building 10 000 models (~100 ms here); one that parses everything anew (the file store) simply
 * rebuilds them all.
 */
export class ServiceModelMemo {
  private memo = new Map<IService, { inputs: readonly object[]; model: ServiceModel | undefined }>()

  models(input: ServiceModelInput): ServiceModel[] {
    let pods: PodIndex | undefined
    const slicesByService = new Map<string, IEndpointSlice[]>()
    for (const s of input.endpointSlices ?? []) {
      const service = s.metadata?.labels?.[SERVICE_NAME_LABEL]
      if (!service) continue
      const key = `${s.metadata?.namespace ?? 'default'}/${service}`
      const list = slicesByService.get(key)
      if (list) list.push(s)
      else slicesByService.set(key, [s])
    }
    const memo = new Map<IService, { inputs: readonly object[]; model: ServiceModel | undefined }>()
    const out: ServiceModel[] = []
    for (const svc of input.services) {
      const namespace = svc.metadata?.namespace ?? 'default'
      const selector = svc.spec?.selector
      const fromPods = input.source === 'pods' && selector !== undefined && Object.keys(selector).length > 0
      const inputs = fromPods ? (pods ??= new PodIndex(input.pods ?? [])).candidates(namespace, selector) : (slicesByService.get(`${namespace}/${svc.metadata?.name ?? ''}`) ?? [])
      const known = this.memo.get(svc)
      const same = known !== undefined && known.inputs.length === inputs.length && known.inputs.every((x, k) => x === inputs[k])
      const entry = same ? known : { inputs, model: proxied(svc, input.proxyName) ? modelOf(svc, fromPods, inputs) : undefined }
      memo.set(svc, entry)
      if (entry.model) out.push(entry.model)
    }
    this.memo = memo
    return out.sort((a, b) => cmp(a.namespace, b.namespace) || cmp(a.name, b.name))
  }
}

/** One Service's model from its object and its inputs: the candidate pods of its selector, or its EndpointSlices. */
function modelOf(svc: IService, fromPods: boolean, inputs: readonly IPod[] | readonly IEndpointSlice[]): ServiceModel {
  const namespace = svc.metadata?.namespace ?? 'default'
  const name = svc.metadata?.name ?? ''
  const clusterIPs = serviceClusterIPs(svc)
  const families = new Set(clusterIPs.map(familyOrUndefined).filter((f): f is IpFamily => f !== undefined))
  const endpointsOf: (port: IServicePort) => ServiceEndpoint[] = fromPods
    ? (port) => podEndpoints(svc, port, inputs as readonly IPod[], families)
    : (port) => sliceEndpoints(port, inputs as readonly IEndpointSlice[], families)
  const type = (svc.spec?.type ?? 'ClusterIP') as ServiceType
  const external = type === 'NodePort' || type === 'LoadBalancer'
  const ports: ServicePortModel[] = (svc.spec?.ports ?? []).map((p) => ({
    name: p.name ?? '',
    protocol: protocolOf(p.protocol),
    port: p.port,
    ...(external && p.nodePort ? { nodePort: p.nodePort } : {}),
    endpoints: sortEndpoints(endpointsOf(p)),
  }))
  const affinity = svc.spec?.sessionAffinity === 'ClientIP'
  return {
    namespace,
    name,
    type,
    clusterIPs,
    externalIPs: [...(svc.spec?.externalIPs ?? [])],
    loadBalancerIPs: type === 'LoadBalancer' ? (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip).filter((ip): ip is string => !!ip) : [],
    ...(affinity ? { sessionAffinityTimeoutSeconds: svc.spec?.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800 } : {}),
    externalTrafficLocal: external && svc.spec?.externalTrafficPolicy === 'Local',
    internalTrafficLocal: svc.spec?.internalTrafficPolicy === 'Local',
    ports,
  }
}

/** `spec.clusterIPs` (or the older single `spec.clusterIP`), without `None` and empty entries. */
export function serviceClusterIPs(svc: IService): string[] {
  const ips = svc.spec?.clusterIPs?.length ? svc.spec.clusterIPs : svc.spec?.clusterIP ? [svc.spec.clusterIP] : []
  return ips.filter((ip) => ip && ip !== 'None')
}

function proxied(svc: IService, proxyName: string | undefined): boolean {
  const labels = svc.metadata?.labels ?? {}
  if (Object.hasOwn(labels, HEADLESS_LABEL)) return false
  if (Object.hasOwn(labels, SERVICE_PROXY_NAME_LABEL) && (proxyName === undefined || labels[SERVICE_PROXY_NAME_LABEL] !== proxyName)) return false
  if (svc.spec?.type === 'ExternalName') return false
  if (svc.spec?.clusterIP === 'None') return false
  return serviceClusterIPs(svc).length > 0
}

function protocolOf(p: string | undefined): ServiceProtocol {
  return p === 'UDP' || p === 'SCTP' ? p : 'TCP'
}

/**
 * Pods by namespace and by each `key=value` label, so a Service's selector looks at the pods with
 * its first label only: a scan of every pod per Service made 10 000 Services over 100 000 pods
 * cost 10^9 label look-ups (bench/serviceobjects.ts).
 */
class PodIndex {
  private readonly byLabel = new Map<string, IPod[]>()

  constructor(pods: readonly IPod[]) {
    for (const pod of pods) {
      const ns = pod.metadata?.namespace ?? 'default'
      for (const [k, v] of Object.entries(pod.metadata?.labels ?? {})) {
        const key = `${ns}\n${k}=${v}`
        const list = this.byLabel.get(key)
        if (list) list.push(pod)
        else this.byLabel.set(key, [pod])
      }
    }
  }

  /** The pods of `namespace` carrying the selector's first label (the caller checks the rest). */
  candidates(namespace: string, selector: Readonly<Record<string, string>>): readonly IPod[] {
    const [first] = Object.entries(selector)
    return first ? (this.byLabel.get(`${namespace}\n${first[0]}=${first[1]}`) ?? []) : []
  }
}

function podEndpoints(svc: IService, port: IServicePort, pods: readonly IPod[], families: ReadonlySet<IpFamily>): ServiceEndpoint[] {
  const selector = svc.spec!.selector!
  const protocol = protocolOf(port.protocol)
  const out: ServiceEndpoint[] = []
  for (const pod of pods) {
    const labels = pod.metadata?.labels ?? {}
    if (!Object.entries(selector).every(([k, v]) => labels[k] === v)) continue
    // A finished pod's address may already belong to a new pod.
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue
    const target = targetPortOn(pod, port.targetPort ?? port.port, protocol)
    if (target === undefined) continue
    const terminating = !!pod.metadata?.deletionTimestamp
    const podReady = pod.status?.phase === 'Running' && pod.status.conditions?.find((c) => c.type === 'Ready')?.status !== 'False'
    const ready = svc.spec?.publishNotReadyAddresses === true || (podReady && !terminating)
    const key = `${pod.metadata?.namespace ?? 'default'}/${pod.metadata?.name ?? ''}`
    for (const address of podAddresses(pod)) {
      const family = familyOrUndefined(address)
      if (family === undefined || !families.has(family)) continue
      out.push({ address, port: target, ready, ...(!ready && terminating && podReady ? { servingTerminating: true } : {}), ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}), pod: key })
    }
  }
  return out
}

/** A numeric targetPort as is; a named one from the pod's container ports of that protocol (upstream FindPort). */
function targetPortOn(pod: IPod, target: number | string, protocol: ServiceProtocol): number | undefined {
  if (typeof target === 'number') return target
  if (/^\d+$/.test(target)) return Number(target)
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name === target && protocolOf(p.protocol) === protocol) return p.containerPort
  }
  return undefined
}

function podAddresses(pod: IPod): string[] {
  const ips = pod.status?.podIPs?.map((x) => x.ip).filter((x): x is string => !!x) ?? []
  if (ips.length) return ips
  return pod.status?.podIP ? [pod.status.podIP] : []
}

function sliceEndpoints(port: IServicePort, slices: readonly IEndpointSlice[], families: ReadonlySet<IpFamily>): ServiceEndpoint[] {
  const name = port.name ?? ''
  const protocol = protocolOf(port.protocol)
  const seen = new Map<string, ServiceEndpoint>()
  for (const slice of slices) {
    const family = slice.addressType === 'IPv4' ? 4 : slice.addressType === 'IPv6' ? 6 : undefined
    if (family === undefined || !families.has(family)) continue
    const slicePort = (slice.ports ?? []).find((p) => (p.name ?? '') === name && protocolOf(p.protocol) === protocol)
    if (slicePort?.port === undefined) continue
    for (const e of slice.endpoints ?? []) {
      const address = e.addresses?.[0]
      if (!address) continue
      // The API server refuses an address of another family; one flatnet cannot read serves nothing.
      if (familyOrUndefined(address) !== family) continue
      const endpoint: ServiceEndpoint = {
        address,
        port: slicePort.port,
        ready: e.conditions?.ready !== false,
        // discovery/v1: a missing `serving` means as `ready`; `terminating` must be said.
        ...(e.conditions?.ready === false && e.conditions.terminating === true && e.conditions.serving === true ? { servingTerminating: true } : {}),
        ...(e.nodeName ? { nodeName: e.nodeName } : {}),
        ...(e.targetRef?.kind === 'Pod' && e.targetRef.name ? { pod: `${e.targetRef.namespace ?? slice.metadata?.namespace ?? 'default'}/${e.targetRef.name}` } : {}),
      }
      // The same endpoint may sit in two slices while the controller moves it; kube-proxy keeps one.
      const key = `${address}|${slicePort.port}`
      const had = seen.get(key)
      if (!had || (!had.ready && endpoint.ready)) seen.set(key, endpoint)
    }
  }
  return [...seen.values()]
}

function sortEndpoints(endpoints: ServiceEndpoint[]): ServiceEndpoint[] {
  if (endpoints.length < 2) return endpoints
  // IPv4 as a number, IPv6 after every IPv4 by its bytes: the order of the addresses' values,
  // without a Buffer per IPv4 endpoint (100 000 endpoints per sync at 10 000 Services).
  const keyed = endpoints.map((e) => ({ e, v4: ipv4Value(e.address), bytes: undefined as Buffer | undefined }))
  for (const k of keyed) if (k.v4 < 0) k.bytes = ipToBytes(k.e.address)
  keyed.sort((a, b) => {
    if (a.v4 >= 0 && b.v4 >= 0) return a.v4 - b.v4 || a.e.port - b.e.port
    if (a.v4 >= 0 || b.v4 >= 0) return a.v4 >= 0 ? -1 : 1
    return Buffer.compare(a.bytes!, b.bytes!) || a.e.port - b.e.port
  })
  return keyed.map((k) => k.e)
}

/** An IPv4 address as a number; -1 for anything else. */
function ipv4Value(ip: string): number {
  const parts = ip.split('.')
  if (parts.length !== 4) return -1
  let v = 0
  for (const p of parts) v = v * 256 + Number(p)
  return Number.isFinite(v) ? v : -1
}

function familyOrUndefined(ip: string): IpFamily | undefined {
  try {
    return familyOf(ip)
  } catch {
    return undefined
  }
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)
