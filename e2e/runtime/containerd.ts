// A private containerd for one test: its own root, state, sockets and config under a temp
// directory, never the system's /var/lib/containerd or /run/containerd/containerd.sock. By default
// the CRI plugin is disabled (it would load CNI config of its own) and `ctr run --cni` is the
// runtime that calls the plugins. With `cri` settings it is the kubelet's runtime instead: the CRI
// plugin serves the RuntimeService on the same socket, with CNI bin and conf dirs of the test's own.
//
// Only one thing of containerd 1.6 cannot be moved: the shim's socket lives in
// /run/containerd/s/<hash of our address> (runtime/v2/shim SocketAddress). It is removed when the
// shim exits; the directories it needed are removed again if this test created them.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exactEnvArgv, releasePrefix, run, runOk, uniquePrefix, type Netns, type RunOptions, type RunResult, type Teardown } from '../helpers/index.js'

/** The environment a containerd started by systemd has; tap's NODE_OPTIONS must not leak into plugins. */
export const RUNTIME_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }

/** The CRI plugin's settings: where it finds CNI plugins and config, and its sandbox image. */
export interface CriSettings {
  cniBinDir: string
  cniConfDir: string
  /** Image reference of the pod sandbox; import it with importImage() before the first pod. */
  sandboxImage: string
}

export interface ContainerdOptions {
  /** Run containerd (and so its shims and every CNI call) in this network namespace: the node. */
  netns?: Netns
  /** Enable the CRI plugin (the kubelet's path) with these settings. */
  cri?: CriSettings
}

export class PrivateContainerd {
  /** Holds config, root, state, sockets, runc state and fifos; removed at stop. */
  readonly dir: string
  /**
   * containerd namespace: the test prefix, so cgroups /<prefix>/<id> are recognisable leftovers;
   * with CRI, `k8s.io` (the CRI plugin's own), its pods then put in /<prefix>/<id> by cgroup_parent.
   */
  readonly namespace: string
  readonly address: string
  private daemon: ChildProcess | undefined
  private readonly foreground = new Set<ChildProcess>()
  private readonly createdRunDirs: string[] = []

  private constructor(
    readonly prefix: string,
    readonly options: ContainerdOptions,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `${prefix}-`))
    this.namespace = options.cri ? 'k8s.io' : prefix
    this.address = join(this.dir, 'containerd.sock')
  }

  /** Starts containerd and registers `stop` as `t`'s teardown. */
  static async start(t: Teardown, options: ContainerdOptions = {}): Promise<PrivateContainerd> {
    const ctrd = new PrivateContainerd(uniquePrefix('ctrd'), options)
    t.teardown(() => ctrd.stop())
    await ctrd.launch()
    return ctrd
  }

  /** The cgroup parent to give pods (PodSandboxConfig.linux.cgroup_parent), so stop() finds their cgroups. */
  get podCgroupParent(): string {
    return `/${this.prefix}`
  }

  /** Imports an image archive (OCI layout or docker save tar) into this containerd's namespace. */
  async importImage(archive: string): Promise<void> {
    await this.ctrOk(['images', 'import', archive], { timeoutMs: 60_000 })
  }

  /**
   * Stops the daemon (SIGTERM, as a service manager does) and starts it again on the same root and
   * state. Shims and their containers keep running meanwhile, as on a node.
   */
  async restart(): Promise<void> {
    await this.stopDaemon()
    await this.launch()
  }

  private async stopDaemon(): Promise<void> {
    if (this.daemon && this.daemon.exitCode === null && this.daemon.signalCode === null) {
      const daemon = this.daemon
      const gone = new Promise((resolve) => daemon.on('exit', resolve))
      daemon.kill('SIGTERM')
      const timer = setTimeout(() => daemon.kill('SIGKILL'), 5_000)
      await gone
      clearTimeout(timer)
    }
  }

  /** `ctr` arguments that address this containerd and namespace. */
  ctrArgv(args: readonly string[]): string[] {
    return ['ctr', '--address', this.address, '--namespace', this.namespace, ...args]
  }

  ctr(args: readonly string[], options?: RunOptions): Promise<RunResult> {
    return run(exactEnvArgv(RUNTIME_ENV, this.ctrArgv(args)), options)
  }

  ctrOk(args: readonly string[], options?: RunOptions): Promise<RunResult> {
    return runOk(exactEnvArgv(RUNTIME_ENV, this.ctrArgv(args)), options)
  }

  /** Per-run flags for `ctr run` that keep runc state and fifos inside `dir`. */
  runFlags(): string[] {
    return ['--runc-root', join(this.dir, 'runc'), '--fifo-dir', join(this.dir, 'fifo')]
  }

  /** Tracks a long-running `ctr run` so that stop() can end it if the test did not. */
  track(child: ChildProcess): void {
    this.foreground.add(child)
    child.on('exit', () => this.foreground.delete(child))
  }

  /** Status of each task, e.g. { c1: 'RUNNING' }. */
  async tasks(): Promise<Record<string, string>> {
    const { stdout } = await this.ctrOk(['task', 'ls'])
    const out: Record<string, string> = {}
    for (const line of stdout.trim().split('\n').slice(1)) {
      const [id, , status] = line.trim().split(/\s+/)
      if (id && status) out[id] = status
    }
    return out
  }

  private async launch(): Promise<void> {
    // Remember which /run/containerd directories exist now: the shim creates them, stop() removes
    // again those this test caused. libcni (inside `ctr run --cni` and the CRI plugin) likewise
    // creates its result cache /var/lib/cni/results. Deepest first, so that stop() can rmdir
    // them in this order.
    for (const d of ['/run/containerd/s', '/run/containerd/fifo', '/run/containerd/runc', '/run/containerd', CNI_RESULTS_DIR, '/var/lib/cni']) {
      if (!existsSync(d) && !this.createdRunDirs.includes(d)) this.createdRunDirs.push(d)
    }
    const d = this.dir
    const cri = this.options.cri
    writeFileSync(
      join(d, 'config.toml'),
      [
        'version = 2',
        `root = "${d}/root"`,
        `state = "${d}/state"`,
        ...(cri ? [] : ['disabled_plugins = ["io.containerd.grpc.v1.cri"]']),
        '[grpc]',
        `  address = "${this.address}"`,
        '[ttrpc]',
        `  address = "${this.address}.ttrpc"`,
        '[debug]',
        '  address = ""',
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${d}/opt"`,
        ...(cri ? criConfig(d, cri) : []),
        '',
      ].join('\n'),
    )
    const log = openSync(join(d, 'containerd.log'), 'a')
    // `ip netns exec` would remount /sys for the namespace, and runc then finds no cgroups there:
    // nsenter enters the network namespace only.
    const inNode = this.options.netns ? ['nsenter', `--net=${this.options.netns.path}`] : []
    const argv = [...inNode, ...exactEnvArgv(RUNTIME_ENV, ['containerd', '--config', join(d, 'config.toml')])]
    this.daemon = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', log, log] })
    const exited = new Promise<number | null>((resolve) => this.daemon?.on('exit', (code) => resolve(code)))
    const deadline = Date.now() + 15_000
    for (;;) {
      const version = await this.ctr(['version'], { timeoutMs: 5_000 })
      if (version.code === 0 && /Server:/.test(version.stdout)) return
      const early = await Promise.race([exited, new Promise((r) => setTimeout(r, 100, 'waiting'))])
      if (early !== 'waiting') throw new Error(`start containerd in ${d}: exited with ${String(early)}: ${this.logTail()}`)
      if (Date.now() > deadline) throw new Error(`start containerd in ${d}: no answer on ${this.address} after 15 s: ${this.logTail()}`)
    }
  }

  logTail(): string {
    try {
      return readFileSync(join(this.dir, 'containerd.log'), 'utf8').split('\n').slice(-15).join('\n')
    } catch {
      return '(no log)'
    }
  }

  /** Ends every task, container, `ctr run`, shim and the daemon, then removes all it made. Idempotent. */
  async stop(): Promise<void> {
    const errors: string[] = []
    const sandboxes = this.options.cri ? criSandboxIds(this.dir) : []
    if (this.daemon && this.daemon.exitCode === null && sandboxes.length > 0) {
      // Pods a failed test left: stop and remove them the kubelet's way, so the CNI DEL runs.
      const { CriRuntimeClient } = await import('./cri/client.js')
      const client = new CriRuntimeClient(this.address, 20_000)
      for (const id of sandboxes) {
        try {
          await client.stopPodSandbox(id)
          await client.removePodSandbox(id)
        } catch (err) {
          errors.push(`remove pod sandbox ${id}: ${(err as Error).message}`)
        }
      }
      client.close()
    }
    if (this.daemon && this.daemon.exitCode === null) {
      try {
        for (const id of Object.keys(await this.tasks())) {
          await this.ctr(['task', 'kill', '--signal', 'SIGKILL', id])
          await this.ctr(['task', 'delete', '--force', id])
        }
        const { stdout } = await this.ctrOk(['container', 'ls', '--quiet'])
        for (const id of stdout.split('\n').filter(Boolean)) await this.ctr(['container', 'delete', id])
      } catch (err) {
        errors.push(`clean up containers: ${(err as Error).message}`)
      }
    }
    for (const child of this.foreground) child.kill('SIGKILL')
    await this.stopDaemon()
    // Shims outlive containerd by design; ours name our directory in their arguments.
    for (const pid of processesMentioning(`${this.dir}/`)) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // exited meanwhile
      }
    }
    removeCgroups(this.prefix)
    // The CRI plugin's mounts (pod network namespaces, /dev/shm, overlay root filesystems) are all
    // below the directory; what a failure left mounted would make the removal fail.
    for (const mount of mountsUnder(`${this.dir}/`)) {
      const r = await run(['umount', '-l', mount])
      if (r.code !== 0) errors.push(`umount ${mount}: ${r.stderr.trim()}`)
    }
    for (const id of sandboxes) removeCniCache(id)
    rmSync(this.dir, { recursive: true, force: true })
    for (const d of this.createdRunDirs) {
      try {
        rmdirSync(d)
      } catch {
        // absent, or not empty because something else uses it now: leave it
      }
    }
    releasePrefix(this.prefix)
    if (errors.length) throw new Error(`stop private containerd ${this.dir}: ${errors.join('; ')}`)
  }
}

function criConfig(d: string, cri: CriSettings): string[] {
  const section = 'plugins."io.containerd.grpc.v1.cri"'
  return [
    `[${section}]`,
    `  sandbox_image = "${cri.sandboxImage}"`,
    // Without CAP_SYS_RESOURCE (a container, as on CI) lowering an OOM score adjustment fails.
    '  restrict_oom_score_adj = true',
    // Pod network namespaces are bind-mounted below the state directory, not in /var/run/netns.
    '  netns_mounts_under_state_dir = true',
    // Where AppArmor is on, the plugin would load a profile of its own into the kernel for good.
    '  disable_apparmor = true',
    `[${section}.cni]`,
    `  bin_dir = "${cri.cniBinDir}"`,
    `  conf_dir = "${cri.cniConfDir}"`,
    `[${section}.containerd]`,
    '  snapshotter = "overlayfs"',
    '  default_runtime_name = "runc"',
    `[${section}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${section}.containerd.runtimes.runc.options]`,
    '  SystemdCgroup = false',
    `  Root = "${d}/runc"`,
  ]
}

/** The sandbox IDs the CRI plugin has records of under `dir`. */
function criSandboxIds(dir: string): string[] {
  try {
    return readdirSync(join(dir, 'root', 'io.containerd.grpc.v1.cri', 'sandboxes'))
  } catch {
    return []
  }
}

/** Mount points at or below `prefix`, deepest first. */
function mountsUnder(prefix: string): string[] {
  const out: string[] = []
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4]?.replace(/\\040/g, ' ')
    if (point?.startsWith(prefix)) out.push(point)
  }
  return out.sort().reverse()
}

/**
 * libcni (inside containerd) caches each attachment's result in /var/lib/cni/results/
 * <network>-<container ID>-<ifname> until its DEL; a sandbox removed without one leaves its files.
 */
export const CNI_RESULTS_DIR = '/var/lib/cni/results'

function removeCniCache(sandboxId: string): void {
  let names: string[]
  try {
    names = readdirSync(CNI_RESULTS_DIR)
  } catch {
    return
  }
  for (const name of names) if (name.includes(`-${sandboxId}-`)) rmSync(join(CNI_RESULTS_DIR, name), { force: true })
}

/** Pids whose command line contains `needle` (exact substring), excluding this process. */
function processesMentioning(needle: string): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      if (
        readFileSync(`/proc/${entry}/cmdline`, 'utf8')
          .split('\0')
          .some((arg) => arg.includes(needle))
      )
        out.push(Number(entry))
    } catch {
      // exited meanwhile
    }
  }
  return out
}

/** runc put each container in /<namespace>/<id> of every cgroup hierarchy; remove the empty dirs. */
function removeCgroups(namespace: string): void {
  const roots = ['/sys/fs/cgroup', ...readdirSync('/sys/fs/cgroup').map((h) => join('/sys/fs/cgroup', h))]
  for (const root of roots) {
    const top = join(root, namespace)
    if (!existsSync(top)) continue
    try {
      for (const id of readdirSync(top, { withFileTypes: true })) if (id.isDirectory()) rmdirSync(join(top, id.name))
      rmdirSync(top)
    } catch {
      // a process is still inside; the sweep will find it by name
    }
  }
}
