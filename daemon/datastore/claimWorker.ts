// A separate OS process that claims one node subnet, for the contract tests' concurrency check.
// argv[2]: JSON { config: DatastoreConfig, request: ClaimRequest }. It opens the datastore, says
// "ready", waits for one line on stdin (so all workers claim at the same instant), claims, prints
// one JSON line { record } or { error: { kind, message } } and exits.
import { createInterface } from 'node:readline'
import { DatastoreError, openDatastore, type ClaimRequest, type DatastoreConfig } from './index.js'

const { config, request } = JSON.parse(process.argv[2] ?? '{}') as { config: DatastoreConfig; request: ClaimRequest }
const store = await openDatastore(config)
process.stdout.write('ready\n')
const lines = createInterface({ input: process.stdin })
await new Promise<void>((resolve) => lines.once('line', () => resolve()))
lines.close()
try {
  const record = await store.claim(request)
  process.stdout.write(JSON.stringify({ record }) + '\n')
} catch (err) {
  const kind = err instanceof DatastoreError ? err.kind : 'crash'
  process.stdout.write(JSON.stringify({ error: { kind, message: (err as Error).message } }) + '\n')
}
await store.close()
process.exit(0)
