// flatnetd: flags → configuration → one-time setup of this node (forwarding, masquerade on or
// off, plugin install) → the agent's loop and the health server, until SIGTERM/SIGINT.
// Exit codes: 0 normal stop (also on a signal), 1 setup failed, 2 bad configuration.
import { DaemonConfigError, type DaemonConfig } from '../conf/daemonConfig.js'
import { loadDaemonConfig } from '../conf/daemonFlags.js'
import { parseCidr } from '../ipam/index.js'
import { Agent } from './agent.js'
import { conflistPath, removeConflist } from './conflistWriter.js'
import { startCniServer, type CniServer } from './cniServer.js'
import { startHealthServer } from './health.js'
import { createLogger, errField, type Logger } from './log.js'
import { removeMasquerade } from './masquerade.js'
import { DaemonMetrics } from './metrics.js'
import { detectNodeIP } from './nodeAddress.js'
import { loadOwnerId } from './ownerId.js'
import { installPluginBinary, uninstallPluginBinary } from './pluginInstall.js'
import { applyRouteDiff, closeRouteSockets, openRouteSockets, readKernelRoutes, type RouteSockets } from './routeProgrammer.js'
import { DAEMON_ROUTE_PROTOCOL, diffRoutes } from './routes.js'

/** Must stay under the 2 s a supervisor (and the lab) gives a stopping daemon. */
const SHUTDOWN_DEADLINE_MS = 1500

async function setUpNode(cfg: DaemonConfig, log: Logger): Promise<void> {
  // net.ipv4.ip_forward is set by every reconcile pass (agent.ts), not here: where it cannot be
  // written (a read-only /proc/sys) the daemon stays up and reports it instead of exiting.
  if (!cfg.masquerade && (await removeMasquerade(4))) log.info('masquerade disabled: nftables table ip flatnet removed')
  if (cfg.installCniBinary) {
    const { written } = await installPluginBinary(cfg.installCniBinary, cfg.cniBinDir)
    log.info({ source: cfg.installCniBinary, cniBinDir: cfg.cniBinDir, written }, written.length ? 'CNI plugin installed' : 'CNI plugin already installed')
  }
}

/** `--uninstall`: removes what the daemon put on this node. The datastore record stays (`flatnetctl node remove`). */
async function uninstall(cfg: DaemonConfig, log: Logger): Promise<number> {
  let failed = false
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try {
      log.info({ result: await fn() }, what)
    } catch (e) {
      failed = true
      log.error({ err: errField(e) }, `${what} failed`)
    }
  }
  await step('remove nftables table ip flatnet', () => removeMasquerade(4))
  await step(`remove ${conflistPath(cfg.cniConfDir)}`, () => removeConflist(cfg.cniConfDir))
  await step(`remove the installed plugin from ${cfg.cniBinDir}`, () => uninstallPluginBinary(cfg.cniBinDir))
  await step(`remove routes of protocol ${DAEMON_ROUTE_PROTOCOL}`, async () => {
    const sockets = openRouteSockets((e) => log.warn({ err: errField(e) }, 'netlink socket error'))
    try {
      const family = parseCidr(cfg.clusterCidr).family
      const diff = diffRoutes([], (await readKernelRoutes(sockets, family)).routes, family)
      const r = await applyRouteDiff(sockets, diff, family)
      if (r.errors.length) throw new Error(r.errors.map((e) => e.message).join('; '))
      return { removed: r.removed }
    } finally {
      closeRouteSockets(sockets)
    }
  })
  return failed ? 1 : 0
}

async function main(): Promise<number> {
  let cfg: DaemonConfig
  try {
    const cl = await loadDaemonConfig(process.argv.slice(2), process.env)
    if (cl.kind === 'help') {
      process.stdout.write(cl.text + '\n')
      return 0
    }
    cfg = cl.config
  } catch (e) {
    if (!(e instanceof DaemonConfigError)) throw e
    process.stderr.write(`${e.message.startsWith('flatnetd') ? '' : 'flatnetd: '}${e.message}\n`)
    return 2
  }
  const log = createLogger(cfg.logLevel, cfg.nodeName || undefined)
  if (cfg.uninstall) return uninstall(cfg, log)

  let sockets: RouteSockets
  let nodeIP: string
  let ownerId: string
  try {
    await setUpNode(cfg, log)
    sockets = openRouteSockets((e) => log.warn({ err: errField(e) }, 'netlink socket error; the requests concerned time out and the next pass repairs'))
    nodeIP = cfg.nodeIP ?? (await detectNodeIP(sockets.rtnl))
    ownerId = await loadOwnerId(cfg.stateDir)
  } catch (e) {
    log.fatal({ err: errField(e) }, 'set up failed')
    return 1
  }

  const metrics = new DaemonMetrics()
  const agent = new Agent({ config: cfg, nodeIP, ownerId, sockets, log, metrics })
  let server
  try {
    server = await startHealthServer(cfg.listen, { readiness: () => agent.readiness(), liveness: () => agent.liveness(), metrics: () => metrics.render() })
  } catch (e) {
    log.fatal({ err: errField(e) }, 'start health server failed')
    return 1
  }
  log.info(
    { nodeIP, clusterCidr: cfg.clusterCidr, nodePrefixLength: cfg.nodePrefixLength, datastore: cfg.datastore.kind, listen: `${server.address.host}:${server.address.port}`, masquerade: cfg.masquerade, reconcileIntervalSeconds: cfg.reconcileIntervalSeconds },
    'flatnetd started',
  )
  agent.start()
  // The fast path (plugin/entry/flatnet.c forwards CNI calls here). Not served: the entry runs the Node plugin.
  let cniServer: CniServer | undefined
  try {
    if (cfg.cniSocket) cniServer = await startCniServer({ socketPath: cfg.cniSocket, log, metrics })
  } catch (e) {
    log.error({ err: errField(e), socketPath: cfg.cniSocket }, 'CNI socket not served; the CNI entry runs the Node plugin')
  }

  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return
      stopping = true
      log.info({ signal }, 'stopping; routes, conflist and masquerade stay in place')
      setTimeout(() => {
        log.warn('shutdown deadline reached; exiting')
        resolve(0)
      }, SHUTDOWN_DEADLINE_MS).unref()
      void (async () => {
        for (const [what, fn] of [['close CNI socket', async () => cniServer?.close()], ['stop agent', () => agent.stop()], ['close health server', () => server.close()]] as const) {
          try {
            await fn()
          } catch (e) {
            log.warn({ err: errField(e) }, `${what} failed`)
          }
        }
        closeRouteSockets(sockets)
        log.info('stopped')
        resolve(0)
      })()
    }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
  })
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`flatnetd: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    process.exit(1)
  },
)
