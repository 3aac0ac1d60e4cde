// What a lab pod is, as Kubernetes sees it: a namespace, labels and container ports. Parsed from
// `lab pod add --namespace/--label/--port` or from a Pod object (`lab apply`), checked with the
// API server's rules for names, label keys and values, and ports, so a lab pod is always a pod
// the API server would have accepted.

export const DEFAULT_POD_NAMESPACE = 'default'

export type PortProtocol = 'TCP' | 'UDP' | 'SCTP'

/** One containerPort: what the pod's responder listens on (SCTP: declared only, see responder.ts). */
export interface PodPort {
  /** IANA_SVC_NAME: 1-15 lower-case letters, digits and '-', at least one letter. */
  name?: string
  port: number
  protocol: PortProtocol
}

/** The Kubernetes identity of a lab pod. */
export interface PodIdentity {
  namespace: string
  name: string
  labels: Record<string, string>
  ports: PodPort[]
}

export class PodSpecError extends Error {
  override readonly name = 'PodSpecError'
}

// RFC 1123 label (namespaces) and subdomain (pod names), as the API server validates them.
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
// Label values and the name part of keys: 63 characters, alphanumeric at both ends.
const qualifiedName = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/
const portName = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

export function checkNamespaceName(ns: string): void {
  if (ns.length > 63 || !dnsLabel.test(ns)) throw new PodSpecError(`namespace ${JSON.stringify(ns)}: must be a DNS label (1-63 lower-case letters, digits, '-')`)
}

export function checkPodName(name: string): void {
  if (name.length > 253 || !dnsSubdomain.test(name)) throw new PodSpecError(`pod name ${JSON.stringify(name)}: must be a DNS subdomain (lower-case letters, digits, '-', '.')`)
}

export function checkLabel(key: string, value: string): void {
  const slash = key.lastIndexOf('/')
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined
  const name = slash >= 0 ? key.slice(slash + 1) : key
  if (prefix !== undefined && (prefix.length > 253 || !dnsSubdomain.test(prefix))) throw new PodSpecError(`label key ${JSON.stringify(key)}: prefix must be a DNS subdomain`)
  if (name.length > 63 || !qualifiedName.test(name)) throw new PodSpecError(`label key ${JSON.stringify(key)}: name must be 1-63 characters [A-Za-z0-9_.-], alphanumeric at both ends`)
  if (value !== '' && (value.length > 63 || !qualifiedName.test(value))) {
    throw new PodSpecError(`label ${key}=${JSON.stringify(value)}: value must be empty or 1-63 characters [A-Za-z0-9_.-], alphanumeric at both ends`)
  }
}

/** `--label k=v` (repeatable) → labels; a key given twice is an error, not a silent override. */
export function parseLabels(args: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const arg of args) {
    const eq = arg.indexOf('=')
    if (eq <= 0) throw new PodSpecError(`--label ${JSON.stringify(arg)}: write key=value`)
    const key = arg.slice(0, eq)
    const value = arg.slice(eq + 1)
    checkLabel(key, value)
    if (Object.hasOwn(labels, key)) throw new PodSpecError(`--label ${key}: given twice`)
    labels[key] = value
  }
  return labels
}

export function checkPort(p: PodPort, what: string): void {
  if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) throw new PodSpecError(`${what}: port must be an integer from 1 to 65535, got ${p.port}`)
  if (p.protocol !== 'TCP' && p.protocol !== 'UDP' && p.protocol !== 'SCTP') throw new PodSpecError(`${what}: protocol must be TCP, UDP or SCTP, got ${JSON.stringify(p.protocol)}`)
  if (p.name !== undefined && (p.name.length > 15 || !portName.test(p.name) || !/[a-z]/.test(p.name) || p.name.includes('--'))) {
    throw new PodSpecError(`${what}: port name ${JSON.stringify(p.name)} must be 1-15 lower-case letters, digits and '-' with at least one letter (IANA_SVC_NAME)`)
  }
}

/** `--port [name:]N[/PROTO]`: TCP by default, as containerPorts default. */
export function parsePort(arg: string): PodPort {
  const m = /^(?:([^:]+):)?(\d+)(?:\/([A-Za-z]+))?$/.exec(arg)
  if (!m) throw new PodSpecError(`--port ${JSON.stringify(arg)}: write [name:]N[/TCP|UDP|SCTP]`)
  const port: PodPort = { port: Number(m[2]), protocol: (m[3] ?? 'TCP').toUpperCase() as PortProtocol }
  if (m[1] !== undefined) port.name = m[1]
  checkPort(port, `--port ${arg}`)
  return port
}

/**
 * Checks a pod's ports as the API server does for one container: no two with the same name, and
 * no two with the same number and protocol (the responder could not listen on both).
 */
export function checkPorts(ports: readonly PodPort[], what: string): void {
  const names = new Set<string>()
  const sockets = new Set<string>()
  for (const p of ports) {
    checkPort(p, what)
    if (p.name !== undefined) {
      if (names.has(p.name)) throw new PodSpecError(`${what}: port name ${p.name} given twice`)
      names.add(p.name)
    }
    const socket = `${p.port}/${p.protocol}`
    if (sockets.has(socket)) throw new PodSpecError(`${what}: port ${socket} given twice`)
    sockets.add(socket)
  }
}

export function checkIdentity(id: PodIdentity): void {
  checkNamespaceName(id.namespace)
  checkPodName(id.name)
  for (const [k, v] of Object.entries(id.labels)) checkLabel(k, v)
  checkPorts(id.ports, `pod ${id.namespace}/${id.name}`)
}

/** How commands and reports name a pod: `name` in the default namespace, `namespace/name` elsewhere. */
export function podRef(pod: { name: string; k8sNamespace?: string }): string {
  const ns = pod.k8sNamespace ?? DEFAULT_POD_NAMESPACE
  return ns === DEFAULT_POD_NAMESPACE ? pod.name : `${ns}/${pod.name}`
}

/** `[namespace/]name` → its parts (the default namespace when none is given). */
export function parsePodRef(ref: string): { namespace: string; name: string } {
  const slash = ref.indexOf('/')
  return slash < 0 ? { namespace: DEFAULT_POD_NAMESPACE, name: ref } : { namespace: ref.slice(0, slash), name: ref.slice(slash + 1) }
}

/** `name:80/TCP`, as `--port` takes it. */
export function portText(p: PodPort): string {
  return `${p.name ? `${p.name}:` : ''}${p.port}/${p.protocol}`
}
