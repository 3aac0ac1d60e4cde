// Test-only: flatnetd's CNI socket server alone, as a process, so the plugin suites can run every
// call through the fast path inside their throw-away node namespaces without a whole daemon
// (whose reconcilers would set forwarding and tables the suites judge). Bundled and started by
// cniServerProcess.ts. argv: <socket path>. Prints "ready" once listening; SIGTERM stops it;
// SIGUSR1 prints its CNI metrics (what it served) followed by a line "end".
import { pino } from 'pino'
import { startCniServer } from '../cniServer.js'
import { DaemonMetrics } from '../metrics.js'
import { warmThreadPool } from '../../net/netns.js'

async function main(): Promise<void> {
  const socketPath = process.argv[2]
  if (!socketPath) throw new Error('usage: cni-test-server <socket path>')
  await warmThreadPool()
  const log = pino({ level: process.env.FLATNET_TEST_SERVER_LOG ?? 'warn' }, pino.destination(2))
  const metrics = new DaemonMetrics()
  const server = await startCniServer({ socketPath, log, metrics })
  process.on('SIGUSR1', () => process.stdout.write(metrics.render() + 'end\n'))
  process.stdout.write('ready\n')
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)))
}

main().catch((e) => {
  process.stderr.write(`cni-test-server: ${(e as Error).message}\n`)
  process.exit(1)
})
