// Entering a network namespace from Node.js.
//
// Only the JS main thread switches (setns acts on the calling thread), so everything done
// "inside" must be synchronous: typically creating a netlink socket, which then stays bound to
// that namespace for its whole life and is used asynchronously afterwards. libuv's pool threads
// are started on first use and keep the namespace they were born in, so the pool is warmed up
// before the first switch (seen here: a pool started while the main thread was switched kept its threads in the pod namespace for good).
// (libuv opens every file O_CLOEXEC, so namespace fds never leak into spawned children.)
import { closeSync, constants, fstatSync, openSync, stat } from 'node:fs'
import { netnsAddon } from './native.js'

export class NetnsError extends Error {
  constructor(
    message: string,
    readonly reason: 'missing' | 'not-netns' | 'io',
  ) {
    super(message)
  }
}

let poolWarm = false

/** Starts libuv's thread pool in the current (host) namespace. Call before the first switch. */
export async function warmThreadPool(): Promise<void> {
  if (poolWarm) return
  // The callback form: node:fs/promises would cost the plugin ~1.5 ms of module loading.
  await new Promise<void>((resolve) => stat('/', () => resolve()))
  poolWarm = true
}

/** A namespace file held open: the fd keeps the namespace alive while we work in it. */
export interface NetnsHandle {
  readonly path: string
  readonly fd: number
  close(): void
}

/**
 * `path` as another process already opened it (flatnetd's CNI socket: the native entry opens
 * CNI_NETNS in the runtime's mount and pid namespaces, where /proc/<pid>/ns/net means what the
 * runtime meant, and passes the descriptor). The descriptor stays its owner's to close; a failed
 * open is its errno name (ENOENT, EACCES, …).
 */
export type OpenedNetns = { fd: number } | { errorCode: string }

/**
 * Opens a network namespace by path (e.g. /var/run/netns/x or /proc/PID/ns/net) and proves it is
 * one by entering it and coming back, so a wrong CNI_NETNS (a regular file, a mount namespace)
 * is refused before anything is created anywhere. `opened`: the open already done elsewhere;
 * the checks and the messages are the same.
 */
export function openNetns(path: string, opened?: OpenedNetns): NetnsHandle {
  let fd: number
  try {
    if (opened && 'errorCode' in opened) throw Object.assign(new Error(opened.errorCode), { code: opened.errorCode })
    // O_NONBLOCK: a FIFO given as CNI_NETNS would otherwise block the open until some writer
    // appears — a plugin hung forever instead of an error. Namespace files ignore the flag.
    fd = opened ? opened.fd : openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    throw new NetnsError(`open network namespace ${path}: ${code ?? String(e)}`, code === 'ENOENT' ? 'missing' : 'io')
  }
  const handle: NetnsHandle = { path, fd, close: opened ? () => undefined : () => closeSync(fd) }
  try {
    if (!fstatSync(fd).isFile()) throw new NetnsError(`open network namespace ${path}: not a namespace file`, 'not-netns')
    withNetns(handle, () => undefined)
  } catch (e) {
    handle.close()
    throw e
  }
  return handle
}

let hostNetns: number | undefined

/**
 * Runs fn synchronously inside the namespace and always switches back. fn must not await:
 * only this thread is switched, and only until fn returns.
 */
export function withNetns<T>(ns: NetnsHandle, fn: () => T): T {
  const addon = netnsAddon()
  if (hostNetns === undefined) {
    hostNetns = openSync('/proc/thread-self/ns/net', constants.O_RDONLY)
  }
  try {
    addon.setns(ns.fd, addon.CLONE_NEWNET)
  } catch (e) {
    const code = (e as { code?: string }).code
    if (code === 'EINVAL') throw new NetnsError(`enter network namespace ${ns.path}: not a network namespace`, 'not-netns')
    throw new NetnsError(`enter network namespace ${ns.path}: ${(e as Error).message}`, 'io')
  }
  try {
    return fn()
  } finally {
    // Failing to come back would leave every later operation in the pod: stop the process.
    try {
      addon.setns(hostNetns, addon.CLONE_NEWNET)
    } catch (e) {
      process.stderr.write(`flatnet: fatal: could not return to the host network namespace: ${(e as Error).message}\n`)
      process.exit(70)
    }
  }
}
