// Test-only: reading Kubernetes manifests and checking them offline, as strictly as an API server
// would: every document against the schema of its kind (npm kubernetes-models), and no field the
// API does not know (which the models' validators let through and a server drops or rejects).
import { readFileSync } from 'node:fs'
import { dumpYaml, loadAllYaml } from '@kubernetes/client-node'
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { Namespace } from 'kubernetes-models/v1/Namespace'
import { Pod } from 'kubernetes-models/v1/Pod'
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount'
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole'
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding'
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role'
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding'
// `yaml` is the parser tap itself uses (tap-yaml); a plain parse, unlike loadAllYaml, keeps
// fields the client library does not know, so they can be found.
import { parseAllDocuments } from 'yaml'

export interface KubeObject {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
  [field: string]: unknown
}

/** The models of the kinds flatnet's manifests use, by `apiVersion/kind`. */
const models: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Pod': Pod,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'apps/v1/DaemonSet': DaemonSet,
}

/** Every document of a multi-document YAML file; any YAML error or warning is an error. */
export function readManifest(path: string): KubeObject[] {
  const text = readFileSync(path, 'utf8')
  return parseManifest(text, path)
}

export function parseManifest(text: string, what: string): KubeObject[] {
  const out: KubeObject[] = []
  for (const [i, doc] of parseAllDocuments(text).entries()) {
    const problems = [...doc.errors, ...doc.warnings]
    if (problems.length) throw new Error(`parse ${what} document ${i + 1}: ${problems.map((p) => p.message).join('; ')}`)
    const value: unknown = doc.toJS()
    if (value === null || value === undefined) continue // an empty document (e.g. after a trailing ---)
    if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`${what} document ${i + 1}: not an object`)
    const o = value as Partial<KubeObject>
    if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string' || typeof o.metadata?.name !== 'string') {
      throw new Error(`${what} document ${i + 1}: apiVersion, kind and metadata.name are required`)
    }
    out.push(o as KubeObject)
  }
  return out
}

export function describeObject(o: KubeObject): string {
  return `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`
}

/** Throws the schema violations of `o` (kubernetes-models), naming the object. */
export function validateSchema(o: KubeObject): void {
  const Model = models[`${o.apiVersion}/${o.kind}`]
  if (!Model) throw new Error(`${describeObject(o)}: no model for ${o.apiVersion} ${o.kind} in deploy/testing/manifests.ts`)
  try {
    new Model(o as never).validate()
  } catch (e) {
    throw new Error(`${describeObject(o)}: ${(e as Error).message}`)
  }
}

/**
 * Fields of `o` the Kubernetes API does not define, as JSON paths. The client library's typed
 * (de)serializer keeps exactly the fields the API defines: what does not survive a round trip
 * through it is unknown (a typo such as `hostNetwrok` would be silently ignored by a server
 * without strict field validation).
 */
export function unknownFields(o: KubeObject): string[] {
  const [typed] = loadAllYaml(JSON.stringify(o))
  const known: unknown = JSON.parse(JSON.stringify(parseAllDocuments(dumpYaml(typed))[0]!.toJS()))
  const out: string[] = []
  const walk = (have: unknown, kept: unknown, path: string) => {
    if (have === null || typeof have !== 'object') return
    if (Array.isArray(have)) {
      have.forEach((v, i) => walk(v, Array.isArray(kept) ? kept[i] : undefined, `${path}[${i}]`))
      return
    }
    for (const [k, v] of Object.entries(have)) {
      const keptObj = kept !== null && typeof kept === 'object' ? (kept as Record<string, unknown>) : undefined
      if (!keptObj || !(k in keptObj)) out.push(`${path}.${k}`)
      else walk(v, keptObj[k], `${path}.${k}`)
    }
  }
  walk(o, known, '')
  return out
}

/**
 * A container's command-line reference `$(NAME)` expanded the way the kubelet does it: by the
 * container's own environment; `$$` escapes; an undefined name stays as written.
 */
export function expandKubeVars(text: string, env: Readonly<Record<string, string>>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$'
    return name !== undefined && name in env ? env[name]! : m
  })
}
