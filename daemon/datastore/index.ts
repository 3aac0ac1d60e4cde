// The public face of daemon/datastore: the interface and one way to open a backend by config.
import { openFileDatastore } from './file.js'
import { DatastoreError, type Datastore, type DatastoreConfig } from './types.js'

export * from './types.js'

/**
 * Opens the datastore the config names. The etcd backend (and its gRPC stack, ~100 ms to load)
 * and the kubernetes backend (@kubernetes/client-node, ~400 ms) are imported only when asked
 * for, so the file backend does not pay for them.
 */
export async function openDatastore(cfg: DatastoreConfig): Promise<Datastore> {
  switch (cfg.kind) {
    case 'file':
      return openFileDatastore(cfg)
    case 'etcd': {
      const { openEtcdDatastore } = await import('./etcd.js')
      return openEtcdDatastore(cfg)
    }
    case 'kubernetes': {
      const { openKubernetesDatastore } = await import('./kubernetes.js')
      return openKubernetesDatastore(cfg)
    }
    default:
      throw new DatastoreError('invalid', `open datastore: unknown kind ${JSON.stringify((cfg as { kind: unknown }).kind)}; expected "file", "etcd" or "kubernetes"`)
  }
}
