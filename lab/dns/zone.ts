// What the lab's cluster DNS answers, from the cluster objects alone: the records of Kubernetes'
// DNS specification for Services (the schema CoreDNS's kubernetes plugin serves), as plain data
// and pure functions so they are tested without a server or a lab.
//   <svc>.<ns>.svc.<domain>        A/AAAA: the Service's cluster IPs (one per family)
//                                  headless (clusterIP None): the ready pods' IPs it selects
//                                  ExternalName: a CNAME to spec.externalName
//   <hostname>.<svc>.<ns>.svc.<domain>   headless: the one pod whose name (or spec.hostname) that is
// A name of the zone that exists but has no record of the asked type is NODATA (NOERROR, no
// answer), never NXDOMAIN: a resolver asking A and AAAA for a single-stack Service must not
// conclude from the AAAA answer that the name does not exist (RFC 2308 section 2.2).
import type { IPod, IService } from 'kubernetes-models/v1'

export const CLUSTER_DOMAIN = 'cluster.local'
/** CoreDNS's kubernetes plugin answers with a 5 s TTL: Services change, caches must follow. */
export const RECORD_TTL_SECONDS = 5

export type AddressRecordType = 'A' | 'AAAA'

/** One name of the zone and its records. */
export interface ZoneEntry {
  addresses: string[]
  cname?: string
}

/** The zone: lower-case absolute names (no trailing dot) to their records. */
export interface Zone {
  domain: string
  names: ReadonlyMap<string, ZoneEntry>
}

export type Answer =
  | { rcode: 'NOERROR'; records: Array<{ name: string; type: AddressRecordType | 'CNAME'; data: string }> }
  /** The name is in the zone and does not exist. */
  | { rcode: 'NXDOMAIN' }
  /** Not this server's zone: it forwards nowhere (the lab sends nothing to the real network). */
  | { rcode: 'REFUSED' }

function familyOf(address: string): AddressRecordType {
  return address.includes(':') ? 'AAAA' : 'A'
}

/** `spec.selector` matches when every key/value is on the pod (a Service selector is equality only). */
function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false // no selector: endpoints are managed by hand
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v)
}

/**
 * A pod that a headless Service publishes: running, not being deleted, with an address, and ready
 * when it says so (the lab's pods carry no Ready condition: running is ready there).
 */
function publishable(pod: IPod): boolean {
  if (pod.metadata?.deletionTimestamp) return false
  if (pod.status?.phase !== 'Running') return false
  const ready = pod.status?.conditions?.find((c) => c.type === 'Ready')
  return !ready || ready.status === 'True'
}

function podAddresses(pod: IPod): string[] {
  const list = pod.status?.podIPs?.map((p) => p.ip).filter((ip): ip is string => !!ip) ?? []
  return list.length ? list : pod.status?.podIP ? [pod.status.podIP] : []
}

function isHeadless(svc: IService): boolean {
  return svc.spec?.clusterIP === 'None'
}

/** Builds the zone from every Service and Pod of the cluster. */
export function buildZone(services: readonly IService[], pods: readonly IPod[], domain = CLUSTER_DOMAIN): Zone {
  const names = new Map<string, ZoneEntry>()
  const add = (name: string, entry: ZoneEntry) => {
    const key = name.toLowerCase()
    const have = names.get(key)
    names.set(key, have ? { ...have, addresses: [...have.addresses, ...entry.addresses] } : entry)
  }
  for (const svc of services) {
    const ns = svc.metadata?.namespace ?? 'default'
    const svcName = `${svc.metadata?.name}.${ns}.svc.${domain}`
    if (svc.spec?.type === 'ExternalName') {
      if (svc.spec.externalName) add(svcName, { addresses: [], cname: svc.spec.externalName.replace(/\.$/, '').toLowerCase() })
      continue
    }
    if (!isHeadless(svc)) {
      const ips = svc.spec?.clusterIPs?.length ? svc.spec.clusterIPs : svc.spec?.clusterIP ? [svc.spec.clusterIP] : []
      add(svcName, { addresses: [...ips] })
      continue
    }
    // Headless: the name exists even with no ready pod (NODATA, not NXDOMAIN, as CoreDNS answers).
    add(svcName, { addresses: [] })
    for (const pod of pods) {
      if ((pod.metadata?.namespace ?? 'default') !== ns || !publishable(pod) || !selects(svc.spec?.selector, pod.metadata?.labels)) continue
      const addresses = podAddresses(pod)
      add(svcName, { addresses })
      const host = pod.spec?.hostname ?? pod.metadata?.name
      if (host) add(`${host}.${svcName}`, { addresses })
    }
  }
  for (const entry of names.values()) entry.addresses = [...new Set(entry.addresses)].sort()
  return { domain: domain.toLowerCase(), names }
}

function inZone(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`)
}

/**
 * The answer to one question. Follows a CNAME inside the zone (an ExternalName pointing at
 * another Service) as an authoritative server does; a CNAME leaving the zone is answered alone:
 * the client's resolver follows it.
 */
export function answer(zone: Zone, qname: string, qtype: string): Answer {
  let name = qname.replace(/\.$/, '').toLowerCase()
  if (!inZone(name, zone.domain)) return { rcode: 'REFUSED' }
  const records: Array<{ name: string; type: AddressRecordType | 'CNAME'; data: string }> = []
  for (let hops = 0; hops < 8; hops++) {
    const entry = zone.names.get(name)
    if (!entry) {
      // Empty non-terminals (`svc.cluster.local`, `<ns>.svc.cluster.local`) exist: NODATA.
      const parent = [...zone.names.keys()].some((n) => n.endsWith(`.${name}`)) || name === zone.domain
      if (records.length || parent) return { rcode: 'NOERROR', records }
      return { rcode: 'NXDOMAIN' }
    }
    if (entry.cname) {
      records.push({ name, type: 'CNAME', data: entry.cname })
      if (qtype === 'CNAME' || !inZone(entry.cname, zone.domain)) return { rcode: 'NOERROR', records }
      name = entry.cname
      continue
    }
    for (const a of entry.addresses) if (familyOf(a) === qtype) records.push({ name, type: qtype, data: a })
    return { rcode: 'NOERROR', records }
  }
  return { rcode: 'NOERROR', records }
}

/** What a lab pod's resolv.conf says: the cluster DNS first, then the search path kubelet writes for a pod of `namespace`. */
export function podResolvConf(namespace: string, nameservers: readonly string[], domain = CLUSTER_DOMAIN): string {
  return [
    '# written by flatnetctl lab: the cluster DNS, as kubelet writes it for a pod (dnsPolicy ClusterFirst)',
    ...nameservers.map((ns) => `nameserver ${ns}`),
    `search ${namespace}.svc.${domain} svc.${domain} ${domain}`,
    'options ndots:5',
    '',
  ].join('\n')
}
