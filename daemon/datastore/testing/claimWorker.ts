// The body of a separate OS process that claims one node subnet, for the contract tests'
// concurrency check (contractSuite.ts bundles it with a two-line entry point; importing this
// module does nothing by itself). It opens the datastore, says "ready", waits for one line on
// stdin (so all workers claim at the same instant), claims, prints one JSON line { record } or
// { error: { kind, message } } and exits.
import { createInterface } from 'node:readline'
import { DatastoreError, openDatastore, type ClaimRequest, type DatastoreConfig } from '../index.js'

/** argument: JSON { config: DatastoreConfig, request: ClaimRequest }. */
export async function runClaimWorker(argument: string): Promise<never> {
  const { config, request } = JSON.parse(argument) as { config: DatastoreConfig; request: ClaimRequest }
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
  // stdout is a pipe, written synchronously on Linux: nothing is lost by exiting now.
  process.exit(0)
}
