// What `ctr run --cni` sees as /etc/cni/net.d and /opt/cni/bin.
//
// ctr (containerd 1.6, cmd/ctr/commands/run) calls gocni.New(gocni.WithDefaultConf): the config
// dir and plugin dir are hard-coded defaults (/etc/cni/net.d, first file by name; /opt/cni/bin)
// with no flag to move them. Rather than writing into the host's directories (which a real
// runtime on this machine would also read), ctr runs in a private mount namespace where our own
// directories are bind-mounted over those two paths. Nothing on the host changes except that the
// two mount points are created if they did not exist, and removed again afterwards.
//
// In the private bin dir the plugin under test is a small spy script that records how the runtime
// called it (verb, CNI_NETNS, container ID, ifname) and then execs the real plugin: same pid,
// environment and stdin, so the plugin cannot tell.
import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { exactEnvArgv, type Conflist, type Teardown } from '../helpers/index.js'
import { RUNTIME_ENV } from './containerd.js'

export const CNI_CONF_DIR = '/etc/cni/net.d'
export const CNI_BIN_DIR = '/opt/cni/bin'

export interface CniView {
  /** bind-mounted over /etc/cni/net.d */
  netDir: string
  /** bind-mounted over /opt/cni/bin */
  binDir: string
  /** one line per call of the spied plugin */
  callLog: string
}

export interface RecordedCall {
  command: string
  netns: string
  containerId: string
  ifname: string
}

/**
 * Lays out a view under `root`: the conflist as `00-<name>.conflist`, each plugin in `plugins`
 * (binary name → real path) linked into the bin dir, and `spied` wrapped by the recording script.
 */
export function makeCniView(root: string, conflist: Conflist, plugins: Record<string, string>, spied: string): CniView {
  const view = { netDir: join(root, 'net.d'), binDir: join(root, 'bin'), callLog: join(root, 'cni-calls.log') }
  mkdirSync(view.netDir, { recursive: true })
  mkdirSync(view.binDir, { recursive: true })
  writeFileSync(join(view.netDir, `00-${conflist.name}.conflist`), JSON.stringify(conflist, null, 2))
  for (const [name, real] of Object.entries(plugins)) {
    const at = join(view.binDir, name)
    if (name !== spied) {
      symlinkSync(real, at)
      continue
    }
    if (/['\n]/.test(real + view.callLog)) throw new Error(`makeCniView: path not usable in a shell script: ${real}`)
    writeFileSync(at, ['#!/bin/sh', `printf '%s\\t%s\\t%s\\t%s\\n' "$CNI_COMMAND" "$CNI_NETNS" "$CNI_CONTAINERID" "$CNI_IFNAME" >> '${view.callLog}'`, `exec '${real}' "$@"`, ''].join('\n'))
    chmodSync(at, 0o755)
  }
  writeFileSync(view.callLog, '')
  return view
}

export function recordedCalls(view: CniView): RecordedCall[] {
  return readFileSync(view.callLog, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [command = '', netns = '', containerId = '', ifname = ''] = line.split('\t')
      return { command, netns, containerId, ifname }
    })
}

/**
 * Makes sure /etc/cni/net.d and /opt/cni/bin exist to mount over; those this call created are
 * removed when `t` ends (only if still empty: never anything someone else put there meanwhile).
 */
export function ensureCniMountPoints(t: Teardown): void {
  const created: string[] = []
  for (const path of ['/etc/cni', CNI_CONF_DIR, '/opt/cni', CNI_BIN_DIR]) {
    if (existsSync(path)) continue
    mkdirSync(path)
    created.unshift(path)
  }
  t.teardown(() => {
    for (const path of created) {
      try {
        rmdirSync(path)
      } catch {
        // no longer empty: it is someone else's now
      }
    }
  })
}

/** The shell step inside the private mount namespace: fixed text, paths passed as arguments. */
const bindAndExec = 'mount --bind "$1" /etc/cni/net.d && mount --bind "$2" /opt/cni/bin && shift 2 && exec "$@"'

/**
 * Spawns `argv` (e.g. a `ctr run --cni …`) in a private mount namespace that shows `view`, with a
 * runtime's clean environment. The mounts vanish with the process.
 */
export function spawnWithCniView(view: CniView, argv: readonly string[]): ChildProcess {
  const inner = exactEnvArgv(RUNTIME_ENV, argv)
  return spawn('unshare', ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', bindAndExec, 'sh', view.netDir, view.binDir, ...inner], { stdio: ['ignore', 'pipe', 'pipe'] })
}
