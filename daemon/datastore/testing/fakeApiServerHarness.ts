// Test-only: a FAKE API server (fakeApiServer.ts) with a kubeconfig for it in a temp directory,
// both removed at teardown, and the kubernetes datastore config that points at it.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { FakeApiServer, type FakeApiServerOptions } from './fakeApiServer.js'
import type { DatastoreConfig } from '../types.js'

export type KubernetesConfig = DatastoreConfig & { kind: 'kubernetes' }

export interface FakeCluster {
  fake: FakeApiServer
  kubeconfig: string
  /** The datastore config for this cluster (timeoutMs 3000 unless overridden). */
  config(overrides?: Partial<Omit<KubernetesConfig, 'kind'>>): KubernetesConfig
}

/** Starts a fake API server; `owner` gets the teardown (a test, or the file's root tap for shared ones). */
export async function startFakeCluster(owner: Pick<Test, 'teardown'>, options: FakeApiServerOptions = {}): Promise<FakeCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'flatnet-fake-apiserver-'))
  const fake = await FakeApiServer.start(options)
  owner.teardown(async () => {
    await fake.close()
    await rm(dir, { recursive: true, force: true })
  })
  const kubeconfig = await fake.writeKubeconfig(join(dir, 'kubeconfig'))
  return {
    fake,
    kubeconfig,
    config: (overrides = {}) => ({ kind: 'kubernetes', kubeconfig, timeoutMs: 3000, ...overrides }),
  }
}
