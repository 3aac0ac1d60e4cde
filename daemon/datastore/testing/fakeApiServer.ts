// Test-only: a FAKE Kubernetes API server. No kube-apiserver can run on these machines, so the
// kubernetes datastore is tested against this in-process HTTP(S) server on 127.0.0.1. It is not
// Kubernetes: it implements exactly the API semantics flatnet relies on, and refuses the rest.
//   - Nodes (cluster-scoped, /api/v1) and Leases (namespaced, coordination.k8s.io/v1): get, list
//     (equality label selectors, `limit` without continuation), watch.
//   - One resourceVersion counter for every object, like etcd's revision. Watches start at a
//     resourceVersion and replay what came after it; a version older than the history kept
//     (compactHistory()) gets an ERROR event with a 410 Expired Status, as the real server sends.
//     allowWatchBookmarks=true streams get BOOKMARK events (sendBookmarks()); timeoutSeconds ends
//     a stream; events are newline-delimited JSON, each written in two chunks to exercise readers.
//   - Node PATCH (merge or strategic merge) and nodes/status PATCH; a patch carrying
//     metadata.resourceVersion that is not the current one → 409 Conflict; the main resource
//     ignores status, the status subresource ignores everything else; spec.podCIDR(s) can only be
//     set once; a patch that changes nothing writes nothing.
//   - Lease create (201, or 409 AlreadyExists), get, delete with uid/resourceVersion
//     preconditions (409 Conflict); namespaces must exist.
//   - The garbage collector's part flatnet uses: deleting a Node deletes the objects whose
//     ownerReferences name its uid.
//   - Namespaces (cluster-scoped), Pods and Services (/api/v1), NetworkPolicies
//     (networking.k8s.io/v1) and EndpointSlices (discovery.k8s.io/v1): list and watch,
//     cluster-wide and per namespace; tests write them with putObject/deleteObject (kubectl's
//     and the controllers' part), which also makes a put Namespace exist for Leases.
//   - Bearer token authentication (401 otherwise), plain HTTP or TLS with a given certificate.
// Tests drive the cluster's other actors through methods: kubelet (addNode, updateNode),
// node deletion (deleteNode), the server's own timing (closeWatches, compactHistory,
// sendBookmarks), outages (refuseWatches), and one-shot hooks before a request (beforeNext).
import { randomUUID } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import { isDeepStrictEqual } from 'node:util'
import { PatchError, isJsonObject, mergePatch, strategicMergePatch, type Json, type JsonObject } from './fakeApiServerPatch.js'
import type { LeaseJson, NodeJson } from '../kubernetesNodes.js'

export interface FakeApiServerOptions {
  /** Bearer token clients must present. */
  token?: string
  /** Serve TLS with this certificate and key (PEM). */
  tls?: { cert: string; key: string }
}

export interface FakeRequestRecord {
  method: string
  path: string
  query: Record<string, string>
  status: number
  /** For watches: the event types sent, in order. */
  events?: string[]
}

type ResourceName = 'nodes' | 'leases' | FakeObjectResource

/** The kinds tests write directly with putObject/deleteObject (kubectl's and the control plane's controllers' part). */
export type FakeObjectResource = 'namespaces' | 'pods' | 'networkpolicies' | 'services' | 'endpointslices'

interface ResourceType {
  kind: string
  listKind: string
  apiVersion: string
  /** As error messages name it (`leases.coordination.k8s.io "x" already exists`). */
  qualified: string
  namespaced: boolean
}

const resourceTypes: Record<ResourceName, ResourceType> = {
  nodes: { kind: 'Node', listKind: 'NodeList', apiVersion: 'v1', qualified: 'nodes', namespaced: false },
  leases: { kind: 'Lease', listKind: 'LeaseList', apiVersion: 'coordination.k8s.io/v1', qualified: 'leases.coordination.k8s.io', namespaced: true },
  namespaces: { kind: 'Namespace', listKind: 'NamespaceList', apiVersion: 'v1', qualified: 'namespaces', namespaced: false },
  pods: { kind: 'Pod', listKind: 'PodList', apiVersion: 'v1', qualified: 'pods', namespaced: true },
  networkpolicies: { kind: 'NetworkPolicy', listKind: 'NetworkPolicyList', apiVersion: 'networking.k8s.io/v1', qualified: 'networkpolicies.networking.k8s.io', namespaced: true },
  services: { kind: 'Service', listKind: 'ServiceList', apiVersion: 'v1', qualified: 'services', namespaced: true },
  endpointslices: { kind: 'EndpointSlice', listKind: 'EndpointSliceList', apiVersion: 'discovery.k8s.io/v1', qualified: 'endpointslices.discovery.k8s.io', namespaced: true },
}

interface StoredObject extends JsonObject {
  metadata: JsonObject & { name: string; namespace?: string; uid: string; resourceVersion: string }
}

interface HistoryEvent {
  resource: ResourceName
  type: 'ADDED' | 'MODIFIED' | 'DELETED'
  object: StoredObject
  revision: number
}

interface Watcher {
  resource: ResourceName
  namespace: string | undefined
  selector: Array<[string, string]>
  bookmarks: boolean
  res: http.ServerResponse
  record: FakeRequestRecord
  timer?: NodeJS.Timeout
}

/** An API error answered as a v1 Status. */
class ApiStatus extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: JsonObject,
  ) {
    super(message)
  }
  body(): JsonObject {
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason, ...(this.details ? { details: this.details } : {}), code: this.code }
  }
}

const clone = <T>(v: T): T => structuredClone(v)
// MicroTime: RFC 3339 with exactly six fractional digits; the real server refuses other forms.
const microTimeSyntax = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/

function parseSelector(text: string | null): Array<[string, string]> {
  if (!text) return []
  return text.split(',').map((term) => {
    const m = /^([^=!]+)==?([^=]*)$/.exec(term.trim())
    if (!m) throw new ApiStatus(400, 'BadRequest', `the fake API server implements equality label selectors only, not ${JSON.stringify(term)}`)
    return [m[1]!.trim(), m[2]!.trim()]
  })
}

function matches(object: StoredObject, selector: Array<[string, string]>): boolean {
  const labels = isJsonObject(object.metadata.labels) ? object.metadata.labels : {}
  return selector.every(([k, v]) => labels[k] === v)
}

export class FakeApiServer {
  readonly requests: FakeRequestRecord[] = []
  /** While true, watch requests are answered 503 (an API server restarting or overloaded). */
  refuseWatches = false
  private readonly objects = new Map<string, StoredObject>()
  private readonly namespaces = new Set(['default', 'kube-system', 'kube-public', 'kube-node-lease'])
  private history: HistoryEvent[] = []
  private revision = 1
  private compactedAt = 0
  private readonly watchers = new Set<Watcher>()
  private readonly hooks: Array<{ method: string; path: string; run: () => void }> = []
  private server!: http.Server
  url = ''

  private constructor(private readonly options: FakeApiServerOptions) {}

  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const fake = new FakeApiServer(options)
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void fake.handle(req, res)
    fake.server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, handler) : http.createServer(handler)
    await new Promise<void>((resolve, reject) => {
      fake.server.once('error', reject)
      fake.server.listen(0, '127.0.0.1', resolve)
    })
    const { port } = fake.server.address() as { port: number }
    fake.url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`
    return fake
  }

  async close(): Promise<void> {
    for (const w of this.watchers) this.endWatch(w)
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  /**
   * Writes a kubeconfig for this server. Plain HTTP needs insecure-skip-tls-verify (client-node
   * refuses http:// otherwise); with TLS the certificate is given as the cluster's CA.
   */
  async writeKubeconfig(path: string, token = this.options.token ?? 'no-token'): Promise<string> {
    const cluster: JsonObject = { server: this.url }
    if (this.options.tls) cluster['certificate-authority-data'] = Buffer.from(this.options.tls.cert).toString('base64')
    else cluster['insecure-skip-tls-verify'] = true
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      preferences: {},
      clusters: [{ name: 'fake', cluster }],
      users: [{ name: 'flatnet', user: { token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'flatnet' } }],
      'current-context': 'fake',
    }
    await writeFile(path, JSON.stringify(config, null, 2), { mode: 0o600 })
    return path
  }

  // --- what the cluster's other actors do ------------------------------------------------------

  /** kubelet registering a Node. */
  addNode(node: NodeJson): NodeJson {
    return clone(this.create('nodes', undefined, clone(node) as unknown as JsonObject)) as unknown as NodeJson
  }

  /** kubelet (or anyone) updating a Node: a new resourceVersion and a MODIFIED event. */
  updateNode(name: string, change: (node: NodeJson) => void): NodeJson {
    const current = this.get('nodes', undefined, name)
    const next = clone(current) as unknown as NodeJson
    change(next)
    return clone(this.commit('nodes', 'MODIFIED', next as unknown as StoredObject)) as unknown as NodeJson
  }

  /** `kubectl delete node`: the Node goes, and the garbage collector deletes what it owned. */
  deleteNode(name: string): void {
    const node = this.get('nodes', undefined, name)
    this.remove('nodes', node)
    for (const object of [...this.objects.values()]) {
      const owners = object.metadata.ownerReferences
      if (Array.isArray(owners) && owners.some((o) => isJsonObject(o) && o.uid === node.metadata.uid)) {
        this.remove(this.resourceOf(object), object)
      }
    }
  }

  /** A Lease written directly (e.g. one left behind by a daemon that crashed mid-claim). */
  addLease(lease: LeaseJson): LeaseJson {
    return clone(this.create('leases', lease.metadata.namespace ?? 'default', clone(lease) as unknown as JsonObject)) as unknown as LeaseJson
  }

  /** kubectl apply of a Namespace, Pod or NetworkPolicy: created (ADDED) or replaced (MODIFIED). */
  putObject(resource: FakeObjectResource, object: JsonObject): JsonObject {
    const metadata = (isJsonObject(object.metadata) ? object.metadata : {}) as JsonObject & { name: string; namespace?: string }
    const namespace = resourceTypes[resource].namespaced ? (metadata.namespace ?? 'default') : undefined
    const current = this.objects.get(this.key(resource, namespace, metadata.name))
    if (!current) {
      const { resourceVersion: _rv, ...rest } = metadata
      const created = clone(this.create(resource, namespace, { ...clone(object), metadata: rest }))
      if (resource === 'namespaces') this.namespaces.add(metadata.name)
      return created
    }
    const next = {
      ...clone(object),
      kind: current.kind,
      apiVersion: current.apiVersion,
      metadata: { ...clone(metadata), namespace, uid: current.metadata.uid, creationTimestamp: current.metadata.creationTimestamp, resourceVersion: '' },
    } as StoredObject
    if (!resourceTypes[resource].namespaced) delete next.metadata.namespace
    return clone(this.commit(resource, 'MODIFIED', next))
  }

  /** kubectl delete of a Namespace, Pod or NetworkPolicy (a Namespace takes its objects along); false if absent. */
  deleteObject(resource: FakeObjectResource, namespace: string | undefined, name: string): boolean {
    const found = this.objects.get(this.key(resource, resourceTypes[resource].namespaced ? namespace : undefined, name))
    if (!found) return false
    if (resource === 'namespaces') {
      for (const object of [...this.objects.values()]) if (object.metadata.namespace === name) this.remove(this.resourceOf(object), object)
      this.namespaces.delete(name)
    }
    this.remove(resource, found)
    return true
  }

  node(name: string): NodeJson | undefined {
    const o = this.objects.get(this.key('nodes', undefined, name))
    return o && (clone(o) as unknown as NodeJson)
  }

  leases(namespace: string): LeaseJson[] {
    return [...this.objects.values()]
      .filter((o) => this.resourceOf(o) === 'leases' && o.metadata.namespace === namespace)
      .map((o) => clone(o) as unknown as LeaseJson)
      .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1))
  }

  /** The current resourceVersion of the whole store. */
  get resourceVersion(): string {
    return String(this.revision)
  }

  /** Forgets the history up to now: watches resuming from an older resourceVersion get 410 Expired. */
  compactHistory(): void {
    this.compactedAt = this.revision
    this.history = []
  }

  /** Ends every open watch stream normally (as timeoutSeconds or an API server restart does). */
  closeWatches(): number {
    const n = this.watchers.size
    for (const w of [...this.watchers]) this.endWatch(w)
    return n
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watch that allowed bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue
      const type = resourceTypes[w.resource]
      this.send(w, { type: 'BOOKMARK', object: { kind: type.kind, apiVersion: type.apiVersion, metadata: { resourceVersion: this.resourceVersion } } })
    }
  }

  get openWatches(): number {
    return this.watchers.size
  }

  /** Runs `run` right before the next `method` request on exactly `path` is handled (once). */
  beforeNext(method: string, path: string, run: () => void): void {
    this.hooks.push({ method, path, run })
  }

  // --- the store ---------------------------------------------------------------------------------

  private key(resource: ResourceName, namespace: string | undefined, name: string): string {
    return `${resource}/${namespace ?? ''}/${name}`
  }

  private resourceOf(object: StoredObject): ResourceName {
    return (Object.keys(resourceTypes) as ResourceName[]).find((r) => resourceTypes[r].kind === object.kind) ?? 'nodes'
  }

  private get(resource: ResourceName, namespace: string | undefined, name: string): StoredObject {
    const found = this.objects.get(this.key(resource, namespace, name))
    if (!found) throw new ApiStatus(404, 'NotFound', `${resourceTypes[resource].qualified} "${name}" not found`, { name, kind: resource })
    return found
  }

  private create(resource: ResourceName, namespace: string | undefined, body: JsonObject): StoredObject {
    const type = resourceTypes[resource]
    const metadata = isJsonObject(body.metadata) ? body.metadata : {}
    const name = metadata.name
    if (typeof name !== 'string' || name === '') throw new ApiStatus(422, 'Invalid', `${type.kind} "" is invalid: metadata.name: Required value: name or generateName is required`)
    if (metadata.resourceVersion !== undefined && metadata.resourceVersion !== '') {
      throw new ApiStatus(500, 'InternalError', 'resourceVersion should not be set on objects to be created')
    }
    if (type.namespaced) {
      if (metadata.namespace !== undefined && metadata.namespace !== namespace) {
        throw new ApiStatus(400, 'BadRequest', `the namespace of the provided object does not match the namespace sent on the request`)
      }
      if (!this.namespaces.has(namespace!)) throw new ApiStatus(404, 'NotFound', `namespaces "${namespace}" not found`, { name: namespace!, kind: 'namespaces' })
    }
    if (this.objects.has(this.key(resource, namespace, name))) {
      throw new ApiStatus(409, 'AlreadyExists', `${type.qualified} "${name}" already exists`, { name, group: type.apiVersion.includes('/') ? type.apiVersion.split('/')[0]! : '', kind: resource })
    }
    if (resource === 'leases' && isJsonObject(body.spec)) {
      for (const field of ['acquireTime', 'renewTime']) {
        const value = body.spec[field]
        if (value !== undefined && value !== null && (typeof value !== 'string' || !microTimeSyntax.test(value))) {
          throw new ApiStatus(400, 'BadRequest', `Lease in version "v1" cannot be handled as a Lease: parsing time ${JSON.stringify(value)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse`)
        }
      }
    }
    const object = {
      ...body,
      kind: type.kind,
      apiVersion: type.apiVersion,
      metadata: { ...metadata, name, ...(type.namespaced ? { namespace } : {}), uid: randomUUID(), resourceVersion: '', creationTimestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') },
    } as StoredObject
    if (!type.namespaced) delete object.metadata.namespace
    return this.commit(resource, 'ADDED', object)
  }

  private remove(resource: ResourceName, object: StoredObject): StoredObject {
    return this.commit(resource, 'DELETED', clone(object))
  }

  /** Every write: one new resourceVersion, stored, kept in the history, sent to watchers. */
  private commit(resource: ResourceName, type: HistoryEvent['type'], object: StoredObject): StoredObject {
    this.revision++
    object.metadata.resourceVersion = String(this.revision)
    const key = this.key(resource, object.metadata.namespace, object.metadata.name)
    if (type === 'DELETED') this.objects.delete(key)
    else this.objects.set(key, object)
    const event: HistoryEvent = { resource, type, object: clone(object), revision: this.revision }
    this.history.push(event)
    for (const w of this.watchers) this.deliver(w, event)
    return object
  }

  // --- HTTP ------------------------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake')
    const record: FakeRequestRecord = { method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(url.searchParams), status: 0 }
    this.requests.push(record)
    const reply = (status: number, body: Json) => {
      record.status = status
      const text = JSON.stringify(body)
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
      res.end(text)
    }
    try {
      const body = await this.readBody(req)
      if (this.options.token !== undefined && req.headers.authorization !== `Bearer ${this.options.token}`) {
        throw new ApiStatus(401, 'Unauthorized', 'Unauthorized')
      }
      const hook = this.hooks.findIndex((h) => h.method === record.method && h.path === record.path)
      if (hook >= 0) this.hooks.splice(hook, 1)[0]!.run()
      const result = this.route(req, url, body, res, record)
      if (result === 'streaming') return
      reply(result.status, result.body)
    } catch (err) {
      const status = err instanceof ApiStatus ? err : new ApiStatus(500, 'InternalError', `fake API server: ${(err as Error).message}`)
      reply(status.code, status.body())
    }
  }

  private readBody(req: http.IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
      req.on('error', reject)
    })
  }

  private route(req: http.IncomingMessage, url: URL, bodyText: string, res: http.ServerResponse, record: FakeRequestRecord): { status: number; body: Json } | 'streaming' {
    const method = req.method ?? 'GET'
    const body = (): JsonObject => {
      let parsed: unknown
      try {
        parsed = JSON.parse(bodyText)
      } catch {
        throw new ApiStatus(400, 'BadRequest', `the request body is not JSON: ${JSON.stringify(bodyText.slice(0, 100))}`)
      }
      if (!isJsonObject(parsed)) throw new ApiStatus(400, 'BadRequest', 'the request body is not a JSON object')
      return parsed
    }
    const p = url.pathname
    let m: RegExpExecArray | null
    if (p === '/api/v1/nodes') {
      if (method !== 'GET') throw this.notAllowed(method, p)
      return this.collection('nodes', undefined, url, res, record)
    }
    if ((m = /^\/api\/v1\/nodes\/([^/]+)(\/status)?$/.exec(p))) {
      const name = decodeURIComponent(m[1]!)
      if (method === 'GET' && !m[2]) return { status: 200, body: this.get('nodes', undefined, name) }
      if (method === 'PATCH') return { status: 200, body: this.patch('nodes', name, req.headers['content-type'], body(), m[2] ? 'status' : 'main') }
      throw this.notAllowed(method, p)
    }
    if ((m = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases$/.exec(p))) {
      const namespace = m[1]!
      if (method === 'GET') return this.collection('leases', namespace, url, res, record)
      if (method === 'POST') return { status: 201, body: this.create('leases', namespace, body()) }
      throw this.notAllowed(method, p)
    }
    if ((m = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases\/([^/]+)$/.exec(p))) {
      const [namespace, name] = [m[1]!, decodeURIComponent(m[2]!)]
      if (method === 'GET') return { status: 200, body: this.get('leases', namespace, name) }
      if (method === 'DELETE') return { status: 200, body: this.deleteWithPreconditions('leases', namespace, name, bodyText ? body() : {}) }
      throw this.notAllowed(method, p)
    }
    // Cluster objects: list and watch only (flatnet reads them; tests write them with putObject).
    if ((m = /^\/(?:api\/v1|apis\/networking\.k8s\.io\/v1|apis\/discovery\.k8s\.io\/v1)(?:\/namespaces\/([^/]+))?\/(namespaces|pods|networkpolicies|services|endpointslices)$/.exec(p))) {
      const resource = m[2] as FakeObjectResource
      const apiVersion = resourceTypes[resource].apiVersion
      const group = apiVersion === 'v1' ? '/api/v1' : `/apis/${apiVersion}`
      const namespace = m[1] === undefined ? undefined : decodeURIComponent(m[1])
      if (!p.startsWith(group) || (namespace !== undefined && resource === 'namespaces')) throw new ApiStatus(404, 'NotFound', `the server could not find the requested resource: ${method} ${p}`)
      if (method !== 'GET') throw this.notAllowed(method, p)
      return this.collection(resource, namespace, url, res, record)
    }
    throw new ApiStatus(404, 'NotFound', `the server could not find the requested resource (the fake API server serves only what flatnet uses): ${method} ${p}`)
  }

  private notAllowed(method: string, path: string): ApiStatus {
    return new ApiStatus(405, 'MethodNotAllowed', `the fake API server does not implement ${method} ${path}`)
  }

  private collection(resource: ResourceName, namespace: string | undefined, url: URL, res: http.ServerResponse, record: FakeRequestRecord): { status: number; body: Json } | 'streaming' {
    const q = url.searchParams
    const selector = parseSelector(q.get('labelSelector'))
    if (q.get('fieldSelector')) throw new ApiStatus(400, 'BadRequest', 'the fake API server does not implement field selectors')
    if (q.get('watch') === 'true' || q.get('watch') === '1') {
      this.watch(resource, namespace, selector, q, res, record)
      return 'streaming'
    }
    if (q.get('continue')) throw new ApiStatus(400, 'BadRequest', 'the fake API server does not implement list continuation')
    const type = resourceTypes[resource]
    let items = [...this.objects.entries()]
      .filter(([key, o]) => key.startsWith(`${resource}/`) && (namespace === undefined || o.metadata.namespace === namespace) && matches(o, selector))
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([, o]) => o)
    const metadata: JsonObject = { resourceVersion: this.resourceVersion }
    const limit = Number(q.get('limit') ?? 0)
    if (limit > 0 && items.length > limit) {
      items = items.slice(0, limit)
      metadata.continue = 'fake-continuation-not-implemented'
    }
    // Items of a list carry no kind/apiVersion, as the real server sends them.
    return { status: 200, body: { kind: type.listKind, apiVersion: type.apiVersion, metadata, items: items.map(({ kind: _k, apiVersion: _a, ...rest }) => rest) } }
  }

  private watch(resource: ResourceName, namespace: string | undefined, selector: Array<[string, string]>, q: URLSearchParams, res: http.ServerResponse, record: FakeRequestRecord): void {
    if (this.refuseWatches) throw new ApiStatus(503, 'ServiceUnavailable', 'the fake API server refuses watches right now (refuseWatches)')
    const rvText = q.get('resourceVersion')
    const from = rvText === null || rvText === '' || rvText === '0' ? undefined : Number(rvText)
    if (from !== undefined && !Number.isInteger(from)) throw new ApiStatus(400, 'BadRequest', `invalid resourceVersion ${JSON.stringify(rvText)}`)
    record.status = 200
    record.events = []
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' })
    const w: Watcher = { resource, namespace, selector, bookmarks: q.get('allowWatchBookmarks') === 'true', res, record }
    res.on('close', () => this.endWatch(w))
    if (from !== undefined && from < this.compactedAt) {
      this.send(w, { type: 'ERROR', object: new ApiStatus(410, 'Expired', `too old resource version: ${from} (${this.compactedAt})`).body() })
      res.end()
      return
    }
    if (from === undefined) {
      // No resourceVersion: the current state as ADDED events, then what follows.
      for (const [key, o] of [...this.objects.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
        if (key.startsWith(`${resource}/`) && (namespace === undefined || o.metadata.namespace === namespace) && matches(o, selector)) this.send(w, { type: 'ADDED', object: o })
      }
    } else {
      for (const event of this.history) if (event.revision > from) this.deliver(w, event)
    }
    const seconds = Number(q.get('timeoutSeconds') ?? 0)
    if (seconds > 0) w.timer = setTimeout(() => this.endWatch(w), seconds * 1000)
    this.watchers.add(w)
  }

  private deliver(w: Watcher, event: HistoryEvent): void {
    if (event.resource !== w.resource) return
    if (w.namespace !== undefined && event.object.metadata.namespace !== w.namespace) return
    if (!matches(event.object, w.selector)) return
    this.send(w, { type: event.type, object: event.object })
  }

  private send(w: Watcher, event: { type: string; object: JsonObject }): void {
    w.record.events?.push(event.type)
    const line = JSON.stringify(event) + '\n'
    // Two writes per event: readers must join lines across chunks.
    const cut = Math.floor(line.length / 2)
    w.res.write(line.slice(0, cut))
    w.res.write(line.slice(cut))
  }

  private endWatch(w: Watcher): void {
    if (!this.watchers.delete(w) && w.res.writableEnded) return
    clearTimeout(w.timer)
    if (!w.res.writableEnded) w.res.end()
  }

  private patch(resource: ResourceName, name: string, contentType: string | undefined, patch: JsonObject, part: 'main' | 'status'): StoredObject {
    const current = this.get(resource, undefined, name)
    const type = (contentType ?? '').split(';')[0]!.trim()
    let patched: Json
    try {
      if (type === 'application/merge-patch+json') patched = mergePatch(clone(current), patch)
      else if (type === 'application/strategic-merge-patch+json') patched = strategicMergePatch(clone(current), patch)
      else throw new ApiStatus(415, 'UnsupportedMediaType', `the fake API server implements merge-patch+json and strategic-merge-patch+json only, not ${JSON.stringify(contentType)}`)
    } catch (err) {
      if (err instanceof PatchError) throw new ApiStatus(400, 'BadRequest', err.message)
      throw err
    }
    const candidate = patched as StoredObject
    const qualified = resourceTypes[resource].qualified
    if (!isJsonObject(candidate.metadata) || candidate.metadata.resourceVersion !== current.metadata.resourceVersion) {
      throw new ApiStatus(409, 'Conflict', `Operation cannot be fulfilled on ${qualified} "${name}": the object has been modified; please apply your changes to the latest version and try again`, {
        name,
        kind: resource,
      })
    }
    // The main resource ignores status; the status subresource ignores everything but status.
    const next = (part === 'main' ? { ...candidate, status: current.status } : { ...clone(current), status: candidate.status }) as StoredObject
    for (const field of ['name', 'uid', 'creationTimestamp'] as const) {
      if (next.metadata[field] !== current.metadata[field])
        throw new ApiStatus(422, 'Invalid', `${resourceTypes[resource].kind} "${name}" is invalid: metadata.${field}: Invalid value: field is immutable`)
    }
    if (resource === 'nodes') this.checkPodCidrsOnce(name, current, next)
    if (isDeepStrictEqual(next, current)) return current
    return this.commit(resource, 'MODIFIED', next)
  }

  /** Node validation: spec.podCIDR(s) may go from unset to set, never change afterwards. */
  private checkPodCidrsOnce(name: string, current: StoredObject, next: StoredObject): void {
    const specOf = (o: StoredObject) => (isJsonObject(o.spec) ? o.spec : {})
    const [before, after] = [specOf(current), specOf(next)]
    for (const field of ['podCIDR', 'podCIDRs']) {
      const was = before[field]
      if (was !== undefined && was !== '' && !(Array.isArray(was) && was.length === 0) && !isDeepStrictEqual(was, after[field])) {
        throw new ApiStatus(422, 'Invalid', `Node "${name}" is invalid: spec.${field}: Forbidden: node updates may not change podCIDR except from "" to valid`)
      }
    }
  }

  private deleteWithPreconditions(resource: ResourceName, namespace: string, name: string, options: JsonObject): StoredObject {
    const current = this.get(resource, namespace, name)
    const pre = isJsonObject(options.preconditions) ? options.preconditions : {}
    const qualified = resourceTypes[resource].qualified
    for (const [field, label] of [
      ['uid', 'UID'],
      ['resourceVersion', 'ResourceVersion'],
    ] as const) {
      const wanted = pre[field]
      if (wanted !== undefined && wanted !== null && wanted !== current.metadata[field]) {
        throw new ApiStatus(
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${qualified} "${name}": Precondition failed: ${label} in precondition: ${String(wanted)}, ${label} in object meta: ${current.metadata[field]}`,
          { name, kind: resource },
        )
      }
    }
    return this.remove(resource, current)
  }
}
