// The lab's etcd: a real etcd-server process in the net namespace, listening on the bridge's own
// address so that every node's flatnetd reaches it over the node network. (Loopback would not do:
// inside a node namespace, 127.0.0.1 is that node's own.) It also listens on a unix socket in the
// lab's etcd directory (root's only: a socket needs write permission to connect), the lab's own
// way in from the host namespace, which is on no lab network: `flatnetctl lab` writes the cluster
// objects of an etcd lab (Pod objects, policies) through it.
import { spawn } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { cleanEnvArgv, inNetns, sleep } from './exec.js'
import { ETCD_CLIENT_PORT, type LabLayout } from './layout.js'
import { processGone } from './namespaces.js'
import { httpGetInNetns } from './probeAgent.js'

export const ETCD_BINARY = '/usr/bin/etcd'

/**
 * The socket's name in the etcd directory. etcd 3.4 takes a unix listen URL as `unix://host:port`
 * and creates a socket named `host:port` in its working directory.
 */
export const ETCD_SOCKET_NAME = 'client.sock:0'

export interface LabEtcd {
  endpoints: string[]
  /** The client socket's path (an etcd3 client reaches it as `unix:<path>`). */
  socket: string
  dataDir: string
  log: string
  pid: number
}

/** Starts etcd on `address` (the bridge's own address of the lab's primary family). */
export async function startEtcd(lab: LabLayout, address: string, timeoutMs = 20_000): Promise<LabEtcd> {
  if (!existsSync(ETCD_BINARY)) throw new Error(`start etcd: ${ETCD_BINARY} not found; install etcd-server (scripts/install-deps.sh)`)
  const endpoint = `http://${address.includes(':') ? `[${address}]` : address}:${ETCD_CLIENT_PORT}`
  const dataDir = join(lab.etcdDir, 'data')
  const log = join(lab.etcdDir, 'etcd.log')
  await mkdir(lab.etcdDir, { recursive: true })
  const member = `fnlab-${lab.name}`
  const args = [
    ETCD_BINARY,
    '--name',
    member,
    '--data-dir',
    dataDir,
    '--listen-client-urls',
    `${endpoint},unix://${ETCD_SOCKET_NAME}`,
    '--advertise-client-urls',
    endpoint,
    // Peer traffic stays on the net namespace's own loopback: a one-member cluster.
    '--listen-peer-urls',
    'http://127.0.0.1:2380',
    '--initial-advertise-peer-urls',
    'http://127.0.0.1:2380',
    '--initial-cluster',
    `${member}=http://127.0.0.1:2380`,
    '--log-level',
    'warn',
  ]
  const argv = cleanEnvArgv({}, inNetns(lab.netNetns, args))
  const fd = openSync(log, 'a')
  let pid: number
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd], cwd: lab.etcdDir })
    pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (err) => reject(new Error(`start etcd in ${lab.netNetns}: ${err.message}`)))
      child.once('spawn', () => resolve(child.pid!))
    })
    child.unref()
  } finally {
    closeSync(fd)
  }
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (processGone(pid)) throw new Error(`start etcd in ${lab.netNetns}: it exited; end of ${log}:\n${await tail(log)}`)
    const health = await httpGetInNetns(lab.netNetns, `${endpoint}/health`)
    if (health.status === 200 && /"health":\s*"true"/.test(health.body)) break
    if (Date.now() > deadline) throw new Error(`start etcd in ${lab.netNetns}: not healthy after ${timeoutMs} ms at ${endpoint}; end of ${log}:\n${await tail(log)}`)
    await sleep(200)
  }
  return { endpoints: [endpoint], socket: join(lab.etcdDir, ETCD_SOCKET_NAME), dataDir, log, pid }
}

async function tail(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '')
  return text.trimEnd().split('\n').slice(-15).join('\n')
}
