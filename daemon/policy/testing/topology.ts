// A node with pods, wired the way flatnet wires them, for kernel tests and the policy bench: a
// "node" namespace that routes, pods behind host veths named fn…, ptp-style (pod /32 and /128,
// gateway on the host end, nodad), and a "remote" namespace on a link `lan0` that holds the
// addresses of another node's pods (on its loopback) and of that node itself. The node's nft
// runs through `nftIn(node)`, an NftExecutor that acts inside the namespace.
import { spawn } from 'node:child_process'
import { inNetnsOk, type TestNamespaces } from '../../../e2e/helpers/index.js'
import type { NftExecutor, NftResult } from '../../../net/nft.js'
import { PolicyAgent } from './agent.js'

export const LOCAL_SUBNETS = ['10.244.1.0/24', 'fd00:10:244:1::/64']
export const NODE_ADDRESS = '172.30.0.1'
export const REMOTE_NODE_ADDRESS = '172.30.0.2'

export interface TopologyPod {
  name: string
  netns: string
  v4: string
  v6: string
  agent: PolicyAgent
}

export interface Topology {
  node: string
  remote: string
  pods: Map<string, TopologyPod>
  /** Agents in the node namespace itself and in the remote namespace. */
  nodeAgent: PolicyAgent
  remoteAgent: PolicyAgent
  stop(): void
}

/** `nft` inside a namespace, with the script on stdin. */
export function nftIn(netns: string): NftExecutor {
  return {
    run: (args, script = '') =>
      new Promise<NftResult>((resolve, reject) => {
        const child = spawn('ip', ['netns', 'exec', netns, 'nft', ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
        const out: Buffer[] = []
        const err: Buffer[] = []
        child.stdout.on('data', (d: Buffer) => out.push(d))
        child.stderr.on('data', (d: Buffer) => err.push(d))
        child.stdin.on('error', () => {})
        child.on('error', reject)
        child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }))
        child.stdin.end(script)
      }),
  }
}

const sh = (ns: string, ...argv: string[]) => inNetnsOk(ns, argv)

/**
 * Builds the node, `pods` (name → host byte of 10.244.1.X and fd00:10:244:1::X) and the remote
 * namespace holding `remoteAddresses` (10.244.2.X / fd00:10:244:2::X). Every agent serves `ports`.
 */
export async function buildTopology(namespaces: TestNamespaces, pods: Record<string, number>, remoteAddresses: string[], ports: number[]): Promise<Topology> {
  const node = (await namespaces.create('node')).name
  const remote = (await namespaces.create('remote')).name
  for (const [k, v] of [
    ['net.ipv4.ip_forward', '1'],
    ['net.ipv6.conf.all.forwarding', '1'],
  ]) {
    await sh(node, 'sysctl', '-qw', `${k}=${v}`)
    await sh(remote, 'sysctl', '-qw', `${k}=${v}`)
  }
  await sh(node, 'ip', 'link', 'set', 'lo', 'up')
  await sh(remote, 'ip', 'link', 'set', 'lo', 'up')
  await sh(node, 'ip', 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', remote)
  await sh(node, 'ip', 'addr', 'add', `${NODE_ADDRESS}/24`, 'dev', 'lan0')
  await sh(node, 'ip', '-6', 'addr', 'add', 'fd00:30::1/64', 'dev', 'lan0', 'nodad')
  await sh(remote, 'ip', 'addr', 'add', `${REMOTE_NODE_ADDRESS}/24`, 'dev', 'lan0')
  await sh(remote, 'ip', '-6', 'addr', 'add', 'fd00:30::2/64', 'dev', 'lan0', 'nodad')
  await sh(node, 'ip', 'link', 'set', 'lan0', 'up')
  await sh(remote, 'ip', 'link', 'set', 'lan0', 'up')
  await sh(node, 'ip', 'route', 'add', '10.244.2.0/24', 'via', REMOTE_NODE_ADDRESS)
  await sh(node, 'ip', '-6', 'route', 'add', 'fd00:10:244:2::/64', 'via', 'fd00:30::2')
  await sh(remote, 'ip', 'route', 'add', 'default', 'via', NODE_ADDRESS)
  await sh(remote, 'ip', '-6', 'route', 'add', 'default', 'via', 'fd00:30::1')
  for (const a of remoteAddresses) await sh(remote, 'ip', 'addr', 'add', a.includes(':') ? `${a}/128` : `${a}/32`, 'dev', 'lo', ...(a.includes(':') ? ['nodad'] : []))

  const made: TopologyPod[] = []
  let i = 0
  for (const [name, host] of Object.entries(pods)) {
    const netns = (await namespaces.create(`p${i++}`)).name
    const veth = `fn${netns.slice(-6)}${i}`.slice(0, 15)
    const v4 = `10.244.1.${host}`
    const v6 = `fd00:10:244:1::${host.toString(16)}`
    await sh(node, 'ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns)
    await sh(node, 'ip', 'addr', 'add', '10.244.1.1/32', 'dev', veth)
    await sh(node, 'ip', '-6', 'addr', 'add', 'fd00:10:244:1::1/128', 'dev', veth, 'nodad')
    await sh(node, 'ip', 'link', 'set', veth, 'up')
    await sh(netns, 'ip', 'link', 'set', 'lo', 'up')
    await sh(netns, 'ip', 'addr', 'add', `${v4}/32`, 'dev', 'eth0')
    await sh(netns, 'ip', '-6', 'addr', 'add', `${v6}/128`, 'dev', 'eth0', 'nodad')
    await sh(netns, 'ip', 'link', 'set', 'eth0', 'up')
    await sh(netns, 'ip', 'route', 'add', '10.244.1.1', 'dev', 'eth0', 'scope', 'link')
    await sh(netns, 'ip', 'route', 'add', 'default', 'via', '10.244.1.1')
    await sh(netns, 'ip', '-6', 'route', 'add', 'fd00:10:244:1::1', 'dev', 'eth0')
    await sh(netns, 'ip', '-6', 'route', 'add', 'default', 'via', 'fd00:10:244:1::1')
    await sh(node, 'ip', 'route', 'add', `${v4}/32`, 'dev', veth)
    await sh(node, 'ip', '-6', 'route', 'add', `${v6}/128`, 'dev', veth)
    made.push({ name, netns, v4, v6, agent: await PolicyAgent.start(netns, ports) })
  }
  const nodeAgent = await PolicyAgent.start(node, ports)
  const remoteAgent = await PolicyAgent.start(remote, ports)
  return {
    node,
    remote,
    pods: new Map(made.map((p) => [p.name, p])),
    nodeAgent,
    remoteAgent,
    stop() {
      for (const p of made) p.agent.stop()
      nodeAgent.stop()
      remoteAgent.stop()
    },
  }
}
