// One Kubernetes node as the kubelet sees it, minus the kubelet: a network namespace holding the
// node's address, the real flatnetd (file datastore) writing its conflist into the CNI conf dir of
// a private containerd whose CRI plugin runs in that namespace too. The test then plays the
// kubelet over CRI. Everything is torn down in reverse order by one cleanup stack, pass or fail.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { flatnetdBinary, nodeNamespace, startFlatnetd, type DaemonProcess } from '../../../daemon/testing/harness.js'
import { flatnetBinary, REFERENCE_CNI_DIR, run, TestNamespaces, testDir, type Netns, type RunResult, type Teardown } from '../../helpers/index.js'
import { PrivateContainerd } from '../containerd.js'
import { CriRuntimeClient } from './client.js'
import { buildPauseImage, PAUSE_IMAGE } from './pauseImage.js'

export const NODE_ADDRESS = '192.168.79.1'

/**
 * Teardown functions run last-in first-out, every one even when an earlier one throws (tap's own
 * stack stops at the first throw and would leave the namespaces behind); failures are reported
 * together at the end.
 */
export class CleanupStack implements Teardown {
  private readonly steps: Array<() => unknown> = []

  teardown(fn: () => unknown): void {
    this.steps.push(fn)
  }

  async run(): Promise<void> {
    const errors: string[] = []
    for (let fn = this.steps.pop(); fn; fn = this.steps.pop()) {
      try {
        await fn()
      } catch (err) {
        errors.push((err as Error).message)
      }
    }
    if (errors.length) throw new Error(`clean up CRI node: ${errors.join('; ')}`)
  }
}

export interface CriNodeOptions {
  /** Put Debian's portmap on the runtime's plugin path (flatnetd then chains it). */
  portmap: boolean
}

export class CriNode {
  private flatnetd: DaemonProcess | undefined
  private readonly listeners = new Set<ChildProcess>()

  private constructor(
    private readonly cleanup: CleanupStack,
    readonly netns: Netns,
    readonly dir: string,
    readonly containerd: PrivateContainerd,
    readonly cri: CriRuntimeClient,
  ) {}

  get cniConfDir(): string {
    return join(this.dir, 'net.d')
  }

  get cniBinDir(): string {
    return join(this.dir, 'bin')
  }

  get ipamDataDir(): string {
    return join(this.dir, 'ipam')
  }

  get conflistPath(): string {
    return join(this.cniConfDir, '10-flatnet.conflist')
  }

  /** Node namespace, CNI dirs, containerd with CRI and the pause image; flatnetd not yet started. */
  static async create(t: Teardown, options: CriNodeOptions): Promise<CriNode> {
    const cleanup = new CleanupStack()
    t.teardown(() => cleanup.run())
    const nss = new TestNamespaces('crinode')
    cleanup.teardown(() => nss.removeAll())
    const netns = await nodeNamespace(nss, `${NODE_ADDRESS}/24`)
    const { dir } = testDir(cleanup, 'cri')
    for (const sub of ['net.d', 'bin', 'ipam', 'state', 'image']) mkdirSync(join(dir, sub))
    // containerd runs `loopback` for every pod's lo; portmap only where the node has it.
    symlinkSync(join(REFERENCE_CNI_DIR, 'loopback'), join(dir, 'bin', 'loopback'))
    if (options.portmap) symlinkSync(join(REFERENCE_CNI_DIR, 'portmap'), join(dir, 'bin', 'portmap'))
    const containerd = await PrivateContainerd.start(cleanup, {
      netns,
      cri: { cniBinDir: join(dir, 'bin'), cniConfDir: join(dir, 'net.d'), sandboxImage: PAUSE_IMAGE },
    })
    await containerd.importImage(await buildPauseImage(join(dir, 'image')))
    const cri = new CriRuntimeClient(containerd.address)
    cleanup.teardown(() => cri.close())
    return new CriNode(cleanup, netns, dir, containerd, cri)
  }

  /** Starts flatnetd in the node namespace (file datastore), installing flatnet into the bin dir. */
  startFlatnetd(extraFlags: readonly string[] = []): DaemonProcess {
    if (!existsSync(flatnetdBinary)) throw new Error(`start flatnetd: ${flatnetdBinary} missing (run ./build.sh)`)
    // A test may give its own --node-ip (one per family, dual-stack).
    const nodeIP = extraFlags.includes('--node-ip') ? [] : ['--node-ip', NODE_ADDRESS]
    this.flatnetd = startFlatnetd(this.cleanup, this.netns, [
      '--node-name',
      'cri-node',
      ...nodeIP,
      '--datastore',
      'file',
      '--datastore-file',
      join(this.dir, 'nodes.json'),
      '--state-dir',
      join(this.dir, 'state'),
      '--cni-conf-dir',
      this.cniConfDir,
      '--cni-bin-dir',
      this.cniBinDir,
      '--cni-path',
      this.cniBinDir,
      '--install-cni-binary',
      flatnetBinary,
      '--ipam-data-dir',
      this.ipamDataDir,
      '--reconcile-interval',
      '1',
      ...extraFlags,
    ])
    return this.flatnetd
  }

  async stopFlatnetd(): Promise<void> {
    await this.flatnetd?.stop('SIGTERM')
  }

  readConflist(): { cniVersion: string; name: string; plugins: Array<{ type: string; ranges?: string[] }> } {
    return JSON.parse(readFileSync(this.conflistPath, 'utf8'))
  }

  /** Runs `argv` in the node's network namespace (nsenter: only the network namespace changes). */
  inNode(argv: readonly string[], timeoutMs = 15_000): Promise<RunResult> {
    return run(['nsenter', `--net=${this.netns.path}`, ...argv], { timeoutMs })
  }

  /**
   * Serves `reply` on TCP `port` inside the pod's network namespace (busybox nc, one reply per
   * connection) until the node is torn down.
   */
  serveInPod(podNetns: string, port: number, reply: string): void {
    const child = spawn('nsenter', [`--net=${podNetns}`, '/bin/busybox', 'nc', '-ll', '-p', String(port), '-e', '/bin/busybox', 'echo', reply], { stdio: 'ignore' })
    this.listeners.add(child)
    child.on('exit', () => this.listeners.delete(child))
    if (this.listeners.size === 1) this.cleanup.teardown(() => this.endListeners())
  }

  private async endListeners(): Promise<void> {
    for (const child of this.listeners) {
      const gone = new Promise((resolve) => child.on('exit', resolve))
      child.kill('SIGKILL')
      await gone
    }
  }
}
