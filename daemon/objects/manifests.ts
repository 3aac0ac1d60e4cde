// Manifests as `kubectl apply -f` reads them: multi-document YAML or JSON (a `kind: List` is
// expanded), each document checked as the API server would before anything is stored: the
// Kubernetes OpenAPI schema (kubernetes-models) and the validation rules that schema cannot say
// (pkg/apis/core/validation and pkg/apis/networking/validation: names, labels, selectors, peers,
// ports, ipBlocks). Errors name the document number, the object, the field and the value.
// Only flatnetctl and the lab import this file: flatnetd reads objects already validated.
// One module per model: the package's index would load all ~600 of them.
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy'
import { Namespace } from 'kubernetes-models/v1/Namespace'
import { Pod } from 'kubernetes-models/v1/Pod'
import { Service } from 'kubernetes-models/v1/Service'
import { EndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1/EndpointSlice'
import type { IPod, IService } from 'kubernetes-models/v1'
import type { IEndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1'
import type { INetworkPolicy, INetworkPolicyPeer, INetworkPolicyPort } from 'kubernetes-models/networking.k8s.io/v1'
import { parseAllDocuments } from 'yaml'
import { addressBits, parseAddress } from '../../ipam/index.js'
import { KINDS, OBJECT_KINDS, isObjectKind, type ClusterObject } from './kinds.js'

export class ManifestError extends Error {
  override name = 'ManifestError'
}

/** One object of a manifest, with its place (1-based, counting documents and List items in order). */
export interface ManifestObject {
  document: number
  object: ClusterObject
}

type Json = Record<string, unknown>

const models = { Namespace, Pod, NetworkPolicy, Service, EndpointSlice } as const

/** Every document of `text` (YAML or JSON), Lists expanded, empty documents skipped; not yet validated. */
export function parseManifests(text: string, source: string): Array<{ document: number; doc: unknown }> {
  const out: Array<{ document: number; doc: unknown }> = []
  let n = 0
  for (const d of parseAllDocuments(text)) {
    if (d.errors.length) throw new ManifestError(`${source}: document ${n + 1}: invalid YAML: ${d.errors[0]!.message.split('\n')[0]!.replace(/:$/, '')}`)
    const doc: unknown = d.toJS()
    if (doc === null || doc === undefined) continue
    const items = (doc as Json).kind === 'List' && Array.isArray((doc as Json).items) ? ((doc as Json).items as unknown[]) : [doc]
    for (const item of items) out.push({ document: ++n, doc: item })
  }
  return out
}

/** Reads and validates every object of a manifest; any invalid document fails all (nothing is applied), each named on its own line. */
export function readManifests(text: string, source: string): ManifestObject[] {
  const objects: ManifestObject[] = []
  const errors: string[] = []
  for (const { document, doc } of parseManifests(text, source)) {
    try {
      objects.push({ document, object: validateObject(doc, document) })
    } catch (err) {
      if (!(err instanceof ManifestError)) throw err
      errors.push(err.message)
    }
  }
  if (errors.length) throw new ManifestError(`${source}: ${errors.length === 1 ? errors[0] : `${errors.length} invalid documents, nothing applied:\n  ${errors.join('\n  ')}`}`)
  return objects
}

const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const qualifiedNamePart = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/
const ianaSvcName = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/
const protocols = ['TCP', 'UDP', 'SCTP']

/** Field problems of one object: `field: Invalid value: value: why`, as the API server words them. */
class Problems {
  readonly list: string[] = []
  invalid(field: string, value: unknown, why: string): void {
    this.list.push(`${field}: Invalid value: ${JSON.stringify(value)}: ${why}`)
  }
  required(field: string): void {
    this.list.push(`${field}: Required value`)
  }
  unsupported(field: string, value: unknown, allowed: string[]): void {
    this.list.push(`${field}: Unsupported value: ${JSON.stringify(value)}: supported values: ${allowed.map((a) => `"${a}"`).join(', ')}`)
  }
  forbidden(field: string, why: string): void {
    this.list.push(`${field}: Forbidden: ${why}`)
  }
}

/** The path of an ajv instancePath (`/spec/containers/0/name`) as Kubernetes writes fields (`spec.containers[0].name`). */
function fieldOf(instancePath: string): string {
  return instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'))
    .reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '')
}

function valueAt(doc: unknown, instancePath: string): unknown {
  let v: unknown = doc
  for (const p of instancePath.split('/').slice(1)) v = v === null || typeof v !== 'object' ? undefined : (v as Json)[p.replaceAll('~1', '/').replaceAll('~0', '~')]
  return v
}

/** One document, checked and typed; throws a ManifestError naming document, object, field and value. */
export function validateObject(doc: unknown, document: number): ClusterObject {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ManifestError(`document ${document}: not an object: ${JSON.stringify(doc)?.slice(0, 80)}`)
  const d = doc as Json
  const kind = d.kind
  const meta = (d.metadata ?? {}) as Json
  const name = typeof meta.name === 'string' ? meta.name : undefined
  if (!isObjectKind(kind)) throw new ManifestError(`document ${document}${name ? ` (${name})` : ''}: kind ${JSON.stringify(kind)} is not one flatnet stores; expected ${OBJECT_KINDS.join(', ')}`)
  const info = KINDS[kind]
  const ns = info.namespaced ? (typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : 'default') : undefined
  const what = `document ${document} (${kind} ${ns ? `${ns}/` : ''}${name ?? '<no name>'})`
  const problems = new Problems()
  if (d.apiVersion !== info.apiVersion) problems.invalid('apiVersion', d.apiVersion, `${kind} is served as ${info.apiVersion}`)
  else
    try {
      new models[kind](doc as never).validate()
    } catch (err) {
      const errors = (err as { errors?: Array<{ instancePath: string; message?: string; params?: { allowedValues?: unknown[] } }> }).errors
      if (!errors) throw new ManifestError(`${what}: ${(err as Error).message}`)
      for (const e of errors) {
        const allowed = e.params?.allowedValues ? ` (${e.params.allowedValues.map((a) => JSON.stringify(a)).join(', ')})` : ''
        problems.invalid(fieldOf(e.instancePath) || '<document>', valueAt(doc, e.instancePath), `${e.message ?? 'invalid'}${allowed}`)
      }
    }
  if (problems.list.length === 0) {
    checkMetadata(problems, kind === 'Namespace', meta)
    if (kind === 'Pod') checkPod(problems, doc as IPod)
    if (kind === 'NetworkPolicy') checkNetworkPolicy(problems, doc as INetworkPolicy)
    if (kind === 'Service') checkService(problems, doc as IService)
    if (kind === 'EndpointSlice') checkEndpointSlice(problems, doc as IEndpointSlice)
  }
  if (problems.list.length) throw new ManifestError(`${what}: ${problems.list.join('; ')}`)
  return doc as ClusterObject
}

function checkMetadata(p: Problems, isNamespace: boolean, meta: Json): void {
  const name = meta.name
  if (typeof name !== 'string' || name === '') return p.required('metadata.name')
  const pattern = isNamespace ? dns1123Label : dns1123Subdomain
  if (name.length > (isNamespace ? 63 : 253) || !pattern.test(name))
    p.invalid(
      'metadata.name',
      name,
      `a lowercase RFC 1123 ${isNamespace ? 'label' : 'subdomain'} must consist of lower case alphanumeric characters${isNamespace ? ' or' : ','} '-'${isNamespace ? '' : " or '.'"}, and must start and end with an alphanumeric character`,
    )
  const ns = meta.namespace
  if (!isNamespace && ns !== undefined && ns !== '' && (typeof ns !== 'string' || ns.length > 63 || !dns1123Label.test(ns))) p.invalid('metadata.namespace', ns, 'a lowercase RFC 1123 label')
  checkLabels(p, 'metadata.labels', (meta.labels ?? {}) as Record<string, string>)
}

function checkLabelKey(p: Problems, field: string, key: string): void {
  const slash = key.lastIndexOf('/')
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined
  const nm = slash >= 0 ? key.slice(slash + 1) : key
  if (prefix !== undefined && (prefix.length > 253 || !dns1123Subdomain.test(prefix))) p.invalid(field, key, 'prefix part must be a lowercase RFC 1123 subdomain')
  if (nm.length > 63 || !qualifiedNamePart.test(nm))
    p.invalid(field, key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)")
}

function checkLabelValue(p: Problems, field: string, value: string): void {
  if (value.length > 63 || !labelValue.test(value))
    p.invalid(
      field,
      value,
      "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)",
    )
}

function checkLabels(p: Problems, field: string, labels: Record<string, string>): void {
  for (const [k, v] of Object.entries(labels)) {
    checkLabelKey(p, field, k)
    checkLabelValue(p, `${field}[${k}]`, v)
  }
}

type Selector = { matchLabels?: Record<string, string>; matchExpressions?: Array<{ key: string; operator: string; values?: string[] }> }

function checkSelector(p: Problems, field: string, sel: Selector | undefined): void {
  if (!sel) return
  checkLabels(p, `${field}.matchLabels`, sel.matchLabels ?? {})
  ;(sel.matchExpressions ?? []).forEach((e, i) => {
    const f = `${field}.matchExpressions[${i}]`
    checkLabelKey(p, `${f}.key`, e.key)
    if (e.operator === 'In' || e.operator === 'NotIn') {
      if (!e.values?.length) p.required(`${f}.values`)
      else e.values.forEach((v, j) => checkLabelValue(p, `${f}.values[${j}]`, v))
    } else if (e.operator === 'Exists' || e.operator === 'DoesNotExist') {
      if (e.values?.length) p.forbidden(`${f}.values`, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
    } else p.unsupported(`${f}.operator`, e.operator, ['In', 'NotIn', 'Exists', 'DoesNotExist'])
  })
}

function checkPortName(p: Problems, field: string, name: string): void {
  if (name.length > 15 || !ianaSvcName.test(name) || name.includes('--') || !/[a-z]/.test(name))
    p.invalid(field, name, "must be no more than 15 characters, contain only lowercase alphanumeric characters or '-', at least one letter, and no '--' or leading/trailing '-'")
}

function checkProtocol(p: Problems, field: string, protocol: string | undefined): void {
  if (protocol !== undefined && !protocols.includes(protocol)) p.unsupported(field, protocol, protocols)
}

function checkPod(p: Problems, pod: IPod): void {
  const groups = [
    ['spec.containers', pod.spec?.containers ?? []],
    ['spec.initContainers', pod.spec?.initContainers ?? []],
  ] as const
  for (const [field, containers] of groups)
    containers.forEach((c, i) =>
      (c.ports ?? []).forEach((port, j) => {
        const f = `${field}[${i}].ports[${j}]`
        if (!(port.containerPort >= 1 && port.containerPort <= 65535)) p.invalid(`${f}.containerPort`, port.containerPort, 'must be between 1 and 65535, inclusive')
        if (port.name !== undefined) checkPortName(p, `${f}.name`, port.name)
        checkProtocol(p, `${f}.protocol`, port.protocol)
      }),
    )
}

/** A CIDR as ipBlock accepts it (host bits allowed, as net.ParseCIDR does); undefined when invalid. */
function ipBlockCidr(text: string): { family: 4 | 6; network: bigint; prefixLength: number } | undefined {
  const [addr, len, ...rest] = text.split('/')
  if (rest.length || len === undefined || !/^\d{1,3}$/.test(len)) return undefined
  try {
    const a = parseAddress(addr!)
    const bits = addressBits(a.family)
    const prefixLength = Number(len)
    if (prefixLength > bits) return undefined
    const host = (1n << BigInt(bits - prefixLength)) - 1n
    return { family: a.family, network: a.value & ~host, prefixLength }
  } catch {
    return undefined
  }
}

function checkPeer(p: Problems, field: string, peer: INetworkPolicyPeer): void {
  const selectors = peer.podSelector !== undefined || peer.namespaceSelector !== undefined
  if (peer.ipBlock && selectors) return p.forbidden(field, 'may not specify both ipBlock and another peer')
  if (!peer.ipBlock && !selectors) return p.required(field) // "must specify a peer"
  checkSelector(p, `${field}.podSelector`, peer.podSelector)
  checkSelector(p, `${field}.namespaceSelector`, peer.namespaceSelector)
  if (peer.ipBlock) {
    const cidr = ipBlockCidr(peer.ipBlock.cidr)
    if (!cidr) return p.invalid(`${field}.ipBlock.cidr`, peer.ipBlock.cidr, 'must be a valid CIDR (e.g. 10.0.0.0/16 or fd00::/8)')
    ;(peer.ipBlock.except ?? []).forEach((e, i) => {
      const ex = ipBlockCidr(e)
      const f = `${field}.ipBlock.except[${i}]`
      if (!ex) return p.invalid(f, e, 'must be a valid CIDR')
      const inside =
        ex.family === cidr.family &&
        ex.prefixLength > cidr.prefixLength &&
        ex.network >> BigInt(addressBits(cidr.family) - cidr.prefixLength) === cidr.network >> BigInt(addressBits(cidr.family) - cidr.prefixLength)
      if (!inside) p.invalid(f, e, 'must be a strict subset of `cidr`')
    })
  }
}

function checkPolicyPort(p: Problems, field: string, port: INetworkPolicyPort): void {
  checkProtocol(p, `${field}.protocol`, port.protocol)
  const v = port.port
  if (typeof v === 'number') {
    if (!(v >= 1 && v <= 65535)) p.invalid(`${field}.port`, v, 'must be between 1 and 65535, inclusive')
  } else if (typeof v === 'string') checkPortName(p, `${field}.port`, v)
  if (port.endPort !== undefined) {
    if (typeof v !== 'number')
      p.required(`${field}.port`) // endPort needs a numeric port
    else if (port.endPort < v) p.invalid(`${field}.endPort`, port.endPort, 'must be greater than or equal to `port`')
    else if (port.endPort > 65535) p.invalid(`${field}.endPort`, port.endPort, 'must be between 1 and 65535, inclusive')
  }
}

function checkNetworkPolicy(p: Problems, np: INetworkPolicy): void {
  const spec = np.spec
  if (!spec) return p.required('spec')
  checkSelector(p, 'spec.podSelector', spec.podSelector)
  ;(spec.ingress ?? []).forEach((rule, i) => {
    ;(rule.from ?? []).forEach((peer, j) => checkPeer(p, `spec.ingress[${i}].from[${j}]`, peer))
    ;(rule.ports ?? []).forEach((port, j) => checkPolicyPort(p, `spec.ingress[${i}].ports[${j}]`, port))
  })
  ;(spec.egress ?? []).forEach((rule, i) => {
    ;(rule.to ?? []).forEach((peer, j) => checkPeer(p, `spec.egress[${i}].to[${j}]`, peer))
    ;(rule.ports ?? []).forEach((port, j) => checkPolicyPort(p, `spec.egress[${i}].ports[${j}]`, port))
  })
  const types = spec.policyTypes ?? []
  if (new Set(types).size !== types.length) p.invalid('spec.policyTypes', types, 'may not contain duplicates')
}

function validIp(text: unknown): boolean {
  if (typeof text !== 'string') return false
  try {
    parseAddress(text)
    return true
  } catch {
    return false
  }
}

const serviceTypes = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']

/**
 * ValidateService's rules the schema cannot say (pkg/apis/core/validation). What depends on the
 * cluster — the service ranges, which node ports are free — is checked when the store allocates
 * (serviceRules.ts).
 */
function checkService(p: Problems, svc: IService): void {
  const spec = svc.spec ?? {}
  const type = spec.type ?? 'ClusterIP'
  if (!serviceTypes.includes(type)) return p.unsupported('spec.type', type, serviceTypes)
  const ips = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : []
  const headless = ips[0] === 'None'
  if (spec.clusterIP !== undefined && spec.clusterIP !== '' && spec.clusterIPs?.length && spec.clusterIPs[0] !== spec.clusterIP)
    p.invalid('spec.clusterIPs', spec.clusterIPs, 'first value must match `clusterIP`')
  ips.forEach((ip, i) => {
    if (ip === 'None') {
      if (i > 0 || ips.length > 1) p.invalid(`spec.clusterIPs[${i}]`, ip, "'None' must be the first and only value")
    } else if (ip !== '' && !validIp(ip)) p.invalid(`spec.clusterIPs[${i}]`, ip, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)')
  })
  if (ips.length > 2) p.invalid('spec.clusterIPs', ips, 'may specify no more than one IP for each IP family')
  const families = spec.ipFamilies ?? []
  families.forEach((f, i) => {
    if (f !== 'IPv4' && f !== 'IPv6') p.unsupported(`spec.ipFamilies[${i}]`, f, ['IPv4', 'IPv6'])
  })
  if (families.length > 2 || new Set(families).size !== families.length) p.invalid('spec.ipFamilies', families, 'may specify no more than one of each IP family')
  const policy = spec.ipFamilyPolicy
  if (policy !== undefined && !['SingleStack', 'PreferDualStack', 'RequireDualStack'].includes(policy))
    p.unsupported('spec.ipFamilyPolicy', policy, ['SingleStack', 'PreferDualStack', 'RequireDualStack'])
  if (policy === 'SingleStack' && (families.length > 1 || ips.filter((ip) => ip !== 'None').length > 1))
    p.invalid('spec.ipFamilyPolicy', policy, 'must be RequireDualStack or PreferDualStack when multiple IP families are specified')

  if (type === 'ExternalName') {
    const name = spec.externalName
    if (!name) p.required('spec.externalName')
    else if (name.length > 253 || !dns1123Subdomain.test(name.replace(/\.$/, ''))) p.invalid('spec.externalName', name, 'must be a valid DNS name (a lowercase RFC 1123 subdomain)')
    if (ips.some((ip) => ip !== '')) p.forbidden('spec.clusterIPs', 'may not be set for ExternalName services')
    if (families.length) p.forbidden('spec.ipFamilies', 'may not be set for ExternalName services')
    if (policy !== undefined) p.forbidden('spec.ipFamilyPolicy', 'may not be set for ExternalName services')
  }
  if (headless && (type === 'NodePort' || type === 'LoadBalancer')) p.invalid('spec.clusterIPs[0]', 'None', `may not be set to 'None' for ${type} services`)

  const ports = spec.ports ?? []
  if (ports.length === 0 && !headless && type !== 'ExternalName') p.required('spec.ports')
  const names = new Set<string>()
  const seen = new Set<string>()
  ports.forEach((port, i) => {
    const f = `spec.ports[${i}]`
    if (ports.length > 1 && !port.name) p.required(`${f}.name`)
    if (port.name) {
      if (port.name.length > 63 || !dns1123Label.test(port.name))
        p.invalid(`${f}.name`, port.name, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")
      if (names.has(port.name)) p.list.push(`${f}.name: Duplicate value: ${JSON.stringify(port.name)}`)
      names.add(port.name)
    }
    if (!(port.port >= 1 && port.port <= 65535)) p.invalid(`${f}.port`, port.port, 'must be between 1 and 65535, inclusive')
    checkProtocol(p, `${f}.protocol`, port.protocol)
    const id = `${port.port}/${port.protocol ?? 'TCP'}`
    if (seen.has(id)) p.list.push(`${f}: Duplicate value: {port: ${port.port}, protocol: ${JSON.stringify(port.protocol ?? 'TCP')}}`)
    seen.add(id)
    const target = port.targetPort
    if (typeof target === 'number') {
      if (!(target >= 1 && target <= 65535)) p.invalid(`${f}.targetPort`, target, 'must be between 1 and 65535, inclusive')
    } else if (typeof target === 'string') {
      if (/^\d+$/.test(target)) {
        if (!(Number(target) >= 1 && Number(target) <= 65535)) p.invalid(`${f}.targetPort`, target, 'must be between 1 and 65535, inclusive')
      } else checkPortName(p, `${f}.targetPort`, target)
    }
    if (port.nodePort !== undefined && port.nodePort !== 0 && type !== 'NodePort' && type !== 'LoadBalancer') p.forbidden(`${f}.nodePort`, `may not be used when \`type\` is '${type}'`)
  })

  checkLabels(p, 'spec.selector', spec.selector ?? {})
  const affinity = spec.sessionAffinity
  if (affinity !== undefined && affinity !== 'None' && affinity !== 'ClientIP') p.unsupported('spec.sessionAffinity', affinity, ['ClientIP', 'None'])
  if (spec.sessionAffinityConfig && affinity !== 'ClientIP') p.invalid('spec.sessionAffinityConfig', spec.sessionAffinityConfig, `must not be set when session affinity is ${affinity ?? 'None'}`)
  const timeout = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds
  if (timeout !== undefined && !(timeout >= 1 && timeout <= 86400)) p.invalid('spec.sessionAffinityConfig.clientIP.timeoutSeconds', timeout, 'must be greater than 0 and less than 86400')
  for (const [field, value] of [
    ['spec.externalTrafficPolicy', spec.externalTrafficPolicy],
    ['spec.internalTrafficPolicy', spec.internalTrafficPolicy],
  ] as const)
    if (value !== undefined && value !== 'Cluster' && value !== 'Local') p.unsupported(field, value, ['Cluster', 'Local'])
  if (spec.externalTrafficPolicy !== undefined && type !== 'NodePort' && type !== 'LoadBalancer')
    p.invalid('spec.externalTrafficPolicy', spec.externalTrafficPolicy, "may only be set when `type` is 'NodePort' or 'LoadBalancer'")
  ;(spec.externalIPs ?? []).forEach((ip, i) => {
    if (!validIp(ip)) p.invalid(`spec.externalIPs[${i}]`, ip, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)')
  })
}

/** ValidateEndpointSlice's rules the schema cannot say: addresses of the slice's type, ports, names. */
function checkEndpointSlice(p: Problems, slice: IEndpointSlice): void {
  const type = slice.addressType
  if (!['IPv4', 'IPv6', 'FQDN'].includes(type)) return p.unsupported('addressType', type, ['IPv4', 'IPv6', 'FQDN'])
  ;(slice.endpoints ?? []).forEach((e, i) => {
    if (!e.addresses?.length) p.required(`endpoints[${i}].addresses`)
    ;(e.addresses ?? []).forEach((a, j) => {
      const f = `endpoints[${i}].addresses[${j}]`
      if (type === 'FQDN') {
        if (!dns1123Subdomain.test(a)) p.invalid(f, a, 'must be a valid FQDN')
      } else {
        let family: number | undefined
        try {
          family = parseAddress(a).family
        } catch {
          family = undefined
        }
        if (family !== (type === 'IPv4' ? 4 : 6)) p.invalid(f, a, `must be a valid ${type} address`)
      }
    })
    if (e.nodeName !== undefined && !dns1123Subdomain.test(e.nodeName)) p.invalid(`endpoints[${i}].nodeName`, e.nodeName, 'a lowercase RFC 1123 subdomain')
  })
  const names = new Set<string>()
  ;(slice.ports ?? []).forEach((port, i) => {
    const f = `ports[${i}]`
    const name = port.name ?? ''
    if (names.has(name)) p.list.push(`${f}.name: Duplicate value: ${JSON.stringify(name)}`)
    names.add(name)
    if (name && (name.length > 63 || !dns1123Label.test(name))) p.invalid(`${f}.name`, name, 'a lowercase RFC 1123 label')
    if (port.port !== undefined && !(port.port >= 1 && port.port <= 65535)) p.invalid(`${f}.port`, port.port, 'must be between 1 and 65535, inclusive')
    checkProtocol(p, `${f}.protocol`, port.protocol)
  })
}
