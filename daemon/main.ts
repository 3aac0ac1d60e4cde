// flatnetd: flags → configuration → one-time setup of this node (netlink sockets, node address,
// owner id, plugin install) → the concerns: every enabled one is started under one runner, every
// disabled one has what it owns removed → the health server, until SIGTERM/SIGINT.
// Exit codes: 0 normal stop (also on a signal), 1 setup failed, 2 bad configuration.
import { DAEMON_CONCERNS, DaemonConfigError, daemonConcerns, type DaemonConfig } from '../conf/daemonConfig.js'
import { loadDaemonConfig } from '../conf/daemonFlags.js'
import { startCniServer, type CniServer } from './cniServer.js'
import { nodeFamilies } from './datastore/index.js'
import { NodeConfigCheck } from './configCheck.js'
import { startHealthServer, type Readiness } from './health.js'
import { createLogger, errField, type Logger } from './log.js'
import { DaemonMetrics } from './metrics.js'
import { nodeAddresses } from './nodeAddress.js'
import { parseAddress, parseCidr } from '../ipam/index.js'
import { NodeConditionMarker } from './nodeCondition.js'
import { DaemonView } from './objects/daemonView.js'
import { ObjectView } from './objects/objectView.js'
import { OBJECT_INPUT_KINDS } from './objects/view.js'
import { loadOwnerId } from './ownerId.js'
import { installPluginBinary, uninstallPluginBinary } from './pluginInstall.js'
import { Runner, type ReconcilerReadiness } from './reconcile/runner.js'
import { buildReconcilers, PolicyReconciler } from './reconcilers/index.js'
import { closeRouteSockets, openRouteSockets, type RouteSockets } from './routeProgrammer.js'
import { ConntrackSocket } from '../net/conntrack.js'
import { RouteEvents } from '../net/routeEvents.js'
import { POD_ROUTE_PROTOCOL } from '../plugin/wiring.js'

/** Must stay under the 2 s a supervisor (and the lab) gives a stopping daemon. */
const SHUTDOWN_DEADLINE_MS = 1500

/** The host's netlink sockets, opened on first use. */
function lazySockets(log: Logger): { get: () => RouteSockets; close: () => void } {
  let sockets: RouteSockets | undefined
  return {
    get: () => (sockets ??= openRouteSockets((e) => log.warn({ err: errField(e) }, 'netlink socket error; the requests concerned time out and the next sync repairs'))),
    close: () => sockets && closeRouteSockets(sockets),
  }
}

/** `--uninstall`: every concern's remove(), then the installed plugin. The datastore record stays (`flatnetctl node remove`). */
async function uninstall(cfg: DaemonConfig, log: Logger): Promise<number> {
  const sockets = lazySockets(log)
  let failed = false
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try {
      log.info({ result: await fn() }, what)
    } catch (e) {
      failed = true
      log.error({ err: errField(e) }, `${what} failed`)
    }
  }
  try {
    for (const r of Object.values(buildReconcilers(cfg, { log, sockets: sockets.get }))) await step(`remove ${r.owns}`, () => r.remove())
    await step(`remove the installed plugin from ${cfg.cniBinDir}`, () => uninstallPluginBinary(cfg.cniBinDir))
  } finally {
    sockets.close()
  }
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

  const metrics = new DaemonMetrics()
  const sockets = lazySockets(log)
  let conntrack: ConntrackSocket | undefined
  const all = buildReconcilers(cfg, { log, sockets: sockets.get, conntrack: () => (conntrack ??= new ConntrackSocket()), metrics })
  const switches = daemonConcerns(cfg)
  let nodeIP: string
  let nodeIPs: string[]
  let ownerId: string
  try {
    // A disabled concern leaves nothing behind (e.g. --no-masquerade removes the table).
    for (const name of DAEMON_CONCERNS) if (!switches[name].enabled) log.info({ reconciler: name }, `${name} disabled: ${await all[name].remove()}`)
    if (cfg.installCniBinary) {
      const { written } = await installPluginBinary(cfg.installCniBinary, cfg.cniBinDir)
      log.info({ source: cfg.installCniBinary, cniBinDir: cfg.cniBinDir, written }, written.length ? 'CNI plugin installed' : 'CNI plugin already installed')
    }
    // One address per family of the cluster ranges: given, else detected. A family left without
    // one still gets its subnet (this node's pods have addresses of it) but peers cannot route it here.
    const families = cfg.clusterCidrs.map((c) => parseCidr(c).family)
    const found = await nodeAddresses(sockets.get().rtnl, families, cfg.nodeIPs ?? [])
    if (found.nodeIPs.length === 0) throw new Error(found.missing.map((m) => m.why).join('; '))
    for (const m of found.missing) log.warn({ family: `IPv${m.family}`, reason: m.why }, `no IPv${m.family} node address: peers get no IPv${m.family} route to this node's pods`)
    nodeIPs = found.nodeIPs
    nodeIP = nodeIPs.find((ip) => parseAddress(ip).family === families[0]) ?? nodeIPs[0]!
    ownerId = await loadOwnerId(cfg.stateDir)
  } catch (e) {
    log.fatal({ err: errField(e) }, 'set up failed')
    return 1
  }

  const retryMs = Math.min(5000, cfg.reconcileIntervalSeconds * 1000)
  let runner: Runner<DaemonView> | undefined
  let configCheck: NodeConfigCheck | undefined
  const enabled = DAEMON_CONCERNS.filter((n) => switches[n].enabled).map((n) => all[n])
  // Cluster objects are watched only when an enabled concern reads them.
  const objects = new ObjectView({
    datastore: cfg.datastore,
    inputs: OBJECT_INPUT_KINDS.filter((k) => enabled.some((r) => r.inputs.includes(k))),
    log,
    retryMs,
    onDatastoreError: () => metrics.datastoreErrors.inc(),
    onChange: (kinds) => runner?.inputsChanged(kinds),
  })
  const view = new DaemonView({
    config: cfg,
    nodeIP,
    nodeIPs,
    ownerId,
    log,
    retryMs,
    objects,
    onDatastoreError: () => metrics.datastoreErrors.inc(),
    onChange: (kinds) => runner?.inputsChanged(kinds),
    onRefusalChange: () => runner?.gatesChanged(),
    onSubnet: (rec) => {
      metrics.nodeSubnetInfo.clear()
      for (const f of rec ? nodeFamilies(rec) : []) metrics.nodeSubnetInfo.set(1, { subnet: f.subnet, node: rec!.name })
      configCheck?.check()
    },
  })
  configCheck = new NodeConfigCheck({
    config: cfg,
    nodeIP,
    nodeIPs,
    log,
    rtnl: () => sockets.get().rtnl,
    subnets: () => {
      const self = view.self()
      return self ? nodeFamilies(self).map((f) => f.subnet) : []
    },
    onChange: () => runner?.gatesChanged(),
  })
  const condition = new NodeConditionMarker(
    cfg.nodeName,
    () => view.datastore(),
    log,
    () => metrics.datastoreErrors.inc(),
  )
  const intervalMs = cfg.reconcileIntervalSeconds * 1000
  runner = new Runner<DaemonView>(view, enabled, [configCheck.gate, view.gate, objects.gate], {
    intervalMs,
    // Level-triggered repair should not wait a whole interval after a failure.
    retryMs: Math.min(1000, intervalMs),
    minIntervalMs: Math.min(100, intervalMs / 5),
    burst: 5,
    stuckAfterMs: Math.max(60_000, 6 * intervalMs),
    log,
    metrics: metrics.runner,
    afterSync: (name, ok) => {
      if (name === 'routes' && ok) void condition.routesInPlace()
    },
  })
  const readiness = (): Readiness & { reconcilers: ReconcilerReadiness[] } => {
    const r = runner!.readiness()
    const self = view.self()
    const subnets = self ? nodeFamilies(self).map((f) => f.subnet) : []
    return { ready: r.ready, node: cfg.nodeName, subnet: self?.subnet, ...(subnets.length > 1 ? { subnets } : {}), reasons: r.reasons, reconcilers: r.reconcilers }
  }
  let server
  try {
    server = await startHealthServer(cfg.listen, {
      readiness,
      liveness: () => runner!.liveness(),
      // One value: flatnet_ready is computed from the same readiness /readyz answers with, at each scrape.
      metrics: () => {
        metrics.ready.set(readiness().ready ? 1 : 0)
        return metrics.render()
      },
    })
  } catch (e) {
    log.fatal({ err: errField(e) }, 'start health server failed')
    sockets.close()
    return 1
  }
  log.info(
    {
      nodeIP: nodeIPs.join(','),
      clusterCidr: cfg.clusterCidrs.join(','),
      nodePrefixLength: cfg.nodePrefixLengths.join(','),
      datastore: cfg.datastore.kind,
      listen: `${server.address.host}:${server.address.port}`,
      masquerade: cfg.masquerade,
      reconcileIntervalSeconds: cfg.reconcileIntervalSeconds,
    },
    'flatnetd started',
  )
  configCheck.start()
  view.start()
  objects.start()
  runner.start()
  // The plugin's host routes are the anti-spoofing table's pod sources: their changes sync it at once.
  let podRoutes: RouteEvents | undefined
  if (switches.antispoof.enabled) {
    try {
      podRoutes = new RouteEvents(POD_ROUTE_PROTOCOL, (why) => {
        if (why !== 'route changed') log.warn({ reconciler: 'antispoof' }, `${why}: anti-spoofing syncs its pod sources`)
        runner?.inputsChanged(['podRoutes'])
      })
    } catch (e) {
      log.warn({ err: errField(e) }, 'pod route changes not followed: anti-spoofing learns new pods at its periodic syncs (the fib rule judges them meanwhile)')
    }
  }
  // The fast path (plugin/entry/flatnet.c forwards CNI calls here). Not served: the entry runs the Node plugin.
  let cniServer: CniServer | undefined
  try {
    const policy = switches.policy.enabled && all.policy instanceof PolicyReconciler ? all.policy : undefined
    if (cfg.cniSocket)
      cniServer = await startCniServer({
        socketPath: cfg.cniSocket,
        log,
        metrics,
        // NetworkPolicy knows a new pod's address from its ADD, before its object's status says it.
        onPodAddresses: policy
          ? (namespace, name, addresses) => {
              if (addresses.length) policy.noteAttachment(namespace, name, addresses)
              else policy.forgetAttachment(namespace, name)
              runner?.inputsChanged(['pods'])
            }
          : undefined,
      })
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
        configCheck!.stop()
        const steps = [
          ['close the CNI socket', async () => cniServer?.close()],
          ['stop the cluster view', () => view.stop()],
          ['stop the object watches', () => objects.stop()],
          ['stop the runner', () => runner!.stop()],
          ['close the datastore', () => view.close()],
          ['close the object store', () => objects.close()],
          ['close health server', () => server.close()],
        ] as const
        for (const [what, fn] of steps) {
          try {
            await fn()
          } catch (e) {
            log.warn({ err: errField(e) }, `${what} failed`)
          }
        }
        podRoutes?.close()
        sockets.close()
        conntrack?.close()
        log.info('stopped')
        resolve(0)
      })()
    }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
    // SIGHUP's default action ends the process without a word. flatnetd reloads nothing (the
    // configuration is read once; a restart applies a change): it logs that and syncs every concern.
    process.on('SIGHUP', () => {
      log.warn({ signal: 'SIGHUP' }, 'SIGHUP: configuration NOT reloaded (restart flatnetd to apply a change); syncing every concern now')
      runner!.syncAll(true)
    })
  })
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`flatnetd: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    process.exit(1)
  },
)
