// A small client of the CRI RuntimeService over gRPC on a unix socket: the calls a kubelet makes
// to run and stop a pod's sandbox (and so its network), typed for what the tests read. The
// messages are those of runtime.proto beside this file; proto-loader keeps the API's field names
// (snake_case), enums as their names, int64 as strings, and fills defaults for absent fields.
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

const PROTO = fileURLToPath(new URL('./runtime.proto', import.meta.url))

export interface PortMapping {
  protocol?: 'TCP' | 'UDP' | 'SCTP'
  container_port: number
  host_port: number
  host_ip?: string
}

export interface PodSandboxMetadata {
  name: string
  uid: string
  namespace: string
  attempt?: number
}

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata
  hostname?: string
  log_directory?: string
  port_mappings?: PortMapping[]
  labels?: Record<string, string>
  annotations?: Record<string, string>
  linux?: { cgroup_parent?: string }
}

export interface RuntimeCondition {
  type: string
  status: boolean
  reason: string
  message: string
}

export interface PodSandboxStatus {
  id: string
  metadata: PodSandboxMetadata
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY'
  network: { ip: string; additional_ips: Array<{ ip: string }> } | null
}

/** A failed call: the gRPC status code (grpc.status) and the runtime's message. */
export class CriCallError extends Error {
  override name = 'CriCallError'
  constructor(
    readonly method: string,
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`CRI ${method}: ${grpc.status[code] ?? code}: ${details}`)
  }
}

type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void
type Unary = (request: unknown, options: grpc.CallOptions, callback: Callback<unknown>) => void

let runtimeServiceCtor: grpc.ServiceClientConstructor | undefined

function serviceConstructor(): grpc.ServiceClientConstructor {
  if (!runtimeServiceCtor) {
    const definition = protoLoader.loadSync(PROTO, { keepCase: true, enums: String, longs: String, defaults: true, oneofs: true })
    const pkg = grpc.loadPackageDefinition(definition) as unknown as { runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } } }
    runtimeServiceCtor = pkg.runtime.v1.RuntimeService
  }
  return runtimeServiceCtor
}

export class CriRuntimeClient {
  private readonly client: grpc.Client

  /** `socket`: path of the runtime's gRPC unix socket. Nothing is sent before the first call. */
  constructor(
    readonly socket: string,
    private readonly timeoutMs = 60_000,
  ) {
    const Ctor = serviceConstructor()
    this.client = new Ctor(`unix://${socket}`, grpc.credentials.createInsecure())
  }

  private call<T>(method: string, request: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    const fn = (this.client as unknown as Record<string, Unary>)[method]!.bind(this.client)
    return new Promise<T>((resolve, reject) => {
      fn(request, { deadline: Date.now() + timeoutMs }, (err, value) => {
        if (err) reject(new CriCallError(method, err.code, err.details || err.message))
        else resolve(value as T)
      })
    })
  }

  version(): Promise<{ runtime_name: string; runtime_version: string; runtime_api_version: string }> {
    return this.call('Version', { version: 'v1' }, 5_000)
  }

  /** The runtime's conditions by type: RuntimeReady and NetworkReady (what a kubelet's node readiness follows). */
  async status(): Promise<Record<string, RuntimeCondition>> {
    const r = await this.call<{ status: { conditions: RuntimeCondition[] } | null }>('Status', { verbose: false })
    return Object.fromEntries((r.status?.conditions ?? []).map((c) => [c.type, c]))
  }

  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    const r = await this.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: '' })
    return r.pod_sandbox_id
  }

  async podSandboxStatus(id: string): Promise<{ status: PodSandboxStatus; info: Record<string, string> }> {
    const r = await this.call<{ status: PodSandboxStatus; info: Record<string, string> }>('PodSandboxStatus', { pod_sandbox_id: id, verbose: true })
    return { status: r.status, info: r.info }
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call('StopPodSandbox', { pod_sandbox_id: id })
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call('RemovePodSandbox', { pod_sandbox_id: id })
  }

  close(): void {
    this.client.close()
  }
}
