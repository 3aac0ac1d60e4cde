// Test-only: runs daemon/testing/cniServerMain.ts as its own process inside a namespace (the
// namespace playing the node, where the plugin's calls come from). The server is bundled once per
// test process with esbuild (~0.2 s) next to dist/lib, where its native modules are.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('../../', import.meta.url))
const outDir = join(root, 'dist', 'testbin')
const serverBundle = join(outDir, 'cni-test-server.cjs')

let built: Promise<string> | undefined

/** Bundles the test server (npm packages stay external, read from node_modules). */
export function cniTestServerBundle(): Promise<string> {
  built ??= (async () => {
    mkdirSync(outDir, { recursive: true })
    const tmp = `${serverBundle}.${process.pid}.tmp`
    await build({
      entryPoints: [join(root, 'daemon/testing/cniServerMain.ts')],
      outfile: tmp,
      bundle: true,
      packages: 'external',
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      logLevel: 'error',
      banner: { js: 'const __flatnetImportMetaUrl = require("url").pathToFileURL(__filename).href;' },
      // The key spelled in pieces: bench/run.mjs rewrites that literal text in every source it bundles.
      define: { [['import', 'meta', 'url'].join('.')]: '__flatnetImportMetaUrl' },
    })
    renameSync(tmp, serverBundle)
    return serverBundle
  })()
  return built
}

export interface CniTestServer {
  readonly socketPath: string
  readonly child: ChildProcess
  /** Resolves once the process has exited (by itself, a crash point, or stop()). */
  readonly exited: Promise<number | null>
  alive(): boolean
  /** The server's CNI metrics text (Prometheus format): what it has served so far. */
  metrics(): Promise<string>
  /** SIGKILL, then waits for the exit; the socket file is removed. */
  stop(): Promise<void>
}

/**
 * Starts a CNI socket server in namespace `ns` (by name, `ip netns exec`; undefined: here) at
 * `socketPath`; `env` is added to its environment (test hooks such as FLATNET_TEST_CRASH_AT,
 * which a server reads from its own process environment).
 */
export async function startCniTestServer(ns: string | undefined, socketPath: string, env: Record<string, string> = {}): Promise<CniTestServer> {
  const bundle = await cniTestServerBundle()
  rmSync(socketPath, { force: true })
  const argv = [...(ns ? ['ip', 'netns', 'exec', ns] : []), process.execPath, bundle, socketPath]
  // Not tap's NODE_OPTIONS (its loader would make every start slow); PATH for `ip`.
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env } })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  let exitedFlag = false
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      exitedFlag = true
      resolve(code)
    }),
  )
  let out = ''
  let outWaiter: (() => void) | undefined
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    outWaiter?.()
  })
  await new Promise<void>((resolve, reject) => {
    outWaiter = () => {
      if (out.includes('ready\n')) resolve()
    }
    void exited.then((code) => reject(new Error(`start CNI test server in ${ns ?? 'this namespace'}: exited ${code} before ready: ${stderr.trim()}`)))
  })
  return {
    socketPath,
    child,
    exited,
    alive: () => !exitedFlag,
    metrics() {
      out = ''
      return new Promise<string>((resolve, reject) => {
        outWaiter = () => {
          const end = out.indexOf('end\n')
          if (end >= 0) resolve(out.slice(0, end))
        }
        void exited.then((code) => reject(new Error(`CNI test server metrics: the server exited ${code}`)))
        child.kill('SIGUSR1')
      })
    },
    async stop() {
      if (!exitedFlag) child.kill('SIGKILL')
      await exited
      rmSync(socketPath, { force: true })
    },
  }
}
