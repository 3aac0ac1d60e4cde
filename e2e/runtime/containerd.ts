// A private containerd for one test: its own root, state, sockets and config under a temp
// directory, never the system's /var/lib/containerd or /run/containerd/containerd.sock. The CRI
// plugin is disabled (it would load CNI config of its own); `ctr run --cni` is the runtime that
// calls the plugins.
//
// Only one thing of containerd 1.6 cannot be moved: the shim's socket lives in
// /run/containerd/s/<hash of our address> (runtime/v2/shim SocketAddress). It is removed when the
// shim exits; the directories it needed are removed again if this test created them.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exactEnvArgv, releasePrefix, run, runOk, uniquePrefix, type RunOptions, type RunResult, type Teardown } from '../helpers/index.js'

/** The environment a containerd started by systemd has; tap's NODE_OPTIONS must not leak into plugins. */
export const RUNTIME_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }

export class PrivateContainerd {
  /** Holds config, root, state, sockets, runc state and fifos; removed at stop. */
  readonly dir: string
  /** containerd namespace: the test prefix, so cgroups /<prefix>/<id> are recognisable leftovers. */
  readonly namespace: string
  readonly address: string
  private daemon: ChildProcess | undefined
  private readonly foreground = new Set<ChildProcess>()
  private readonly createdRunDirs: string[] = []

  private constructor(readonly prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), `${prefix}-`))
    this.namespace = prefix
    this.address = join(this.dir, 'containerd.sock')
  }

  /** Starts containerd and registers `stop` as `t`'s teardown. */
  static async start(t: Teardown): Promise<PrivateContainerd> {
    const ctrd = new PrivateContainerd(uniquePrefix('ctrd'))
    t.teardown(() => ctrd.stop())
    await ctrd.launch()
    return ctrd
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
    // again those this test caused.
    // (deepest first, so that stop() can rmdir them in this order).
    for (const d of ['/run/containerd/s', '/run/containerd/fifo', '/run/containerd/runc', '/run/containerd']) {
      if (!existsSync(d)) this.createdRunDirs.push(d)
    }
    const d = this.dir
    writeFileSync(
      join(d, 'config.toml'),
      [
        'version = 2',
        `root = "${d}/root"`,
        `state = "${d}/state"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${this.address}"`,
        '[ttrpc]',
        `  address = "${this.address}.ttrpc"`,
        '[debug]',
        '  address = ""',
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${d}/opt"`,
        '',
      ].join('\n'),
    )
    const log = openSync(join(d, 'containerd.log'), 'a')
    const argv = exactEnvArgv(RUNTIME_ENV, ['containerd', '--config', join(d, 'config.toml')])
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
    if (this.daemon && this.daemon.exitCode === null && this.daemon.signalCode === null) {
      const daemon = this.daemon
      const gone = new Promise((resolve) => daemon.on('exit', resolve))
      daemon.kill('SIGTERM')
      const timer = setTimeout(() => daemon.kill('SIGKILL'), 5_000)
      await gone
      clearTimeout(timer)
    }
    // Shims outlive containerd by design; ours name our directory in their arguments.
    for (const pid of processesMentioning(`${this.dir}/`)) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // exited meanwhile
      }
    }
    removeCgroups(this.namespace)
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

/** Pids whose command line contains `needle` (exact substring), excluding this process. */
function processesMentioning(needle: string): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').some((arg) => arg.includes(needle))) out.push(Number(entry))
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
