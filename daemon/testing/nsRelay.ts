// A TCP relay from inside a test namespace to a service on the test's own loopback (a real etcd
// started by etcdTestServer.ts): a daemon running in its node namespace dials 127.0.0.1:<port>
// there and reaches the etcd the test also talks to, with no link into the host's network. The
// listening socket is created while this thread is switched into the namespace (setns), so it
// lives there; the connections onward are made from the host side.
import { createServer, connect, type Server, type Socket } from 'node:net'
import { openNetns, warmThreadPool, withNetns } from '../../net/netns.js'
import type { Netns } from '../../e2e/helpers/index.js'
import type { Teardown } from './harness.js'

/** Listens on `port` (all addresses of `ns`: its loopback and its own links) and relays to 127.0.0.1:`targetPort`. */
export async function relayIntoNetns(t: Teardown, ns: Netns, port: number, targetPort: number): Promise<void> {
  await warmThreadPool()
  const sockets = new Set<Socket>()
  const server: Server = createServer((inside) => {
    const outside = connect(targetPort, '127.0.0.1')
    for (const s of [inside, outside]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {
        inside.destroy()
        outside.destroy()
      })
    }
    inside.pipe(outside)
    outside.pipe(inside)
  })
  const handle = openNetns(ns.path)
  try {
    // No host argument: with one, listen() resolves it first (a tick later, outside the switch).
    withNetns(handle, () => server.listen(port))
  } finally {
    handle.close()
  }
  await new Promise<void>((resolve, reject) => {
    if (server.listening) return resolve()
    server.once('listening', resolve)
    server.once('error', reject)
  })
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  )
}
