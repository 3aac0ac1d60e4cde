// Test- and bench-only: a datastore that can also seed many nodes at once (claimMany), which
// flatnetd itself never needs and so is not on the Datastore interface.
import { openDatastore, type DatastoreConfig, type SeedingDatastore } from '../index.js'

export async function openSeedingDatastore(cfg: DatastoreConfig): Promise<SeedingDatastore> {
  const ds = await openDatastore(cfg)
  if (!('claimMany' in ds) || typeof (ds as Partial<SeedingDatastore>).claimMany !== 'function') {
    await ds.close()
    throw new Error(`open a seeding datastore: the ${ds.kind} backend has no claimMany`)
  }
  return ds as SeedingDatastore
}
