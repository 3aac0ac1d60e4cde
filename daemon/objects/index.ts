// The public face of daemon/objects: the store interface, the kinds, and one way to open the
// object store of a datastore configuration (the same settings flatnetd and flatnetctl node use).
import type { DatastoreConfig } from '../datastore/types.js'
import { objectsPathFor, openFileObjectStore } from './fileStore.js'
import { ObjectStoreError, type ObjectStore } from './store.js'

export * from './kinds.js'
export * from './store.js'
export { NAMESPACE_NAME_LABEL, withDefaults } from './rules.js'
export { objectsPathFor } from './fileStore.js'
export { DEFAULT_SERVICE_CIDRS, NODE_PORT_RANGE } from './serviceRules.js'

/** What flatnet, as the API server of the file and etcd datastores, is configured with. */
export interface ObjectStoreOptions {
  /**
   * Service cluster IP ranges, primary first, one per family (`flatnetctl apply --service-cidr`;
   * default 10.96.0.0/16). Every writer of one datastore must use the same; the kubernetes store
   * ignores it (its API server allocates).
   */
  serviceCIDRs?: readonly string[]
}

/**
 * Opens the cluster objects of the datastore `cfg` names: `objects.json` beside the file
 * datastore's node state; `<prefix>objects/` on etcd; the API server's own objects on Kubernetes
 * (read only). etcd and kubernetes code loads only when asked for, as in ../datastore/index.ts.
 */
export async function openObjectStore(cfg: DatastoreConfig, options: ObjectStoreOptions = {}): Promise<ObjectStore> {
  switch (cfg.kind) {
    case 'file':
      return openFileObjectStore({ path: objectsPathFor(cfg.path), pollIntervalMs: cfg.pollIntervalMs, lockTimeoutMs: cfg.lockTimeoutMs, serviceCIDRs: options.serviceCIDRs })
    case 'etcd': {
      const { openEtcdObjectStore } = await import('./etcdStore.js')
      return openEtcdObjectStore({ ...cfg, serviceCIDRs: options.serviceCIDRs })
    }
    case 'kubernetes': {
      const { openKubernetesObjectStore } = await import('./kubernetesStore.js')
      return openKubernetesObjectStore(cfg)
    }
    default:
      throw new ObjectStoreError('invalid', `open object store: unknown datastore kind ${JSON.stringify((cfg as { kind: unknown }).kind)}`)
  }
}
