// A separate OS process that makes one reservation, for the concurrency and crash tests.
// Usage: reserve-one <store dir> <pod range> <container id> [--wait-for-go]
// With --wait-for-go it prints "ready" and reserves only once a line arrives on stdin, so that
// the parent can release a hundred processes at the same instant.
// Prints the reservation as JSON on stdout, or "error <kind> <message>" and exits 1.
import { IpamError, PodAddressStore, parseCidr, podRange } from '../index.js'

const [dir, range, containerId, flag] = process.argv.slice(2)

async function reserveOne(): Promise<void> {
  const store = new PodAddressStore(dir, [podRange(parseCidr(range))])
  try {
    const [r] = await store.reserve({ containerId, ifname: 'eth0', podName: containerId })
    process.stdout.write(JSON.stringify(r) + '\n')
  } catch (err) {
    process.stdout.write(`error ${err instanceof IpamError ? err.kind : 'other'} ${(err as Error).message}\n`)
    process.exitCode = 1
  }
}

if (flag === '--wait-for-go') {
  process.stdout.write('ready\n')
  process.stdin.once('data', () => {
    process.stdin.destroy()
    void reserveOne()
  })
} else {
  void reserveOne()
}
