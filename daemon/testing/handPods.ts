// Pods wired by hand the way the flatnet plugin wires them (ptp-style, no DAD), for dataplane tests
// of the daemon's tables that must not depend on the plugin: a veth whose host end is named like
// the plugin's (`fn` + 13 hex, plugin/wiring.ts hostVethName, which the anti-spoofing rule
// matches), the pod's addresses as /32 and /128 (nodad), the gateway of each family on the host
// end, a host route per pod address with the plugin's protocol, and the pod's default routes.
import { runOk, type Netns } from '../../e2e/helpers/index.js'

export interface HandPod {
  ns: Netns
  hostVeth: string
  /** The pod's addresses, one per family given. */
  addresses: string[]
}

/** Gateways per family: the first address of the node's pod subnet of that family. */
export interface HandGateways {
  v4?: string
  v6?: string
}

/** Wires `pod` to `node` with these addresses (each family's gateway must be in `gateways`). */
export async function wireHandPod(node: Netns, pod: Netns, hostVeth: string, addresses: readonly string[], gateways: HandGateways): Promise<HandPod> {
  if (!/^fn[0-9a-f]{13}$/.test(hostVeth)) throw new Error(`wire hand pod: ${hostVeth} is not a flatnet host veth name (fn + 13 hex)`)
  const onNode = (...a: string[]) => runOk(['ip', '-n', node.name, ...a])
  const inPod = (...a: string[]) => runOk(['ip', '-n', pod.name, ...a])
  await runOk(['ip', 'netns', 'exec', pod.name, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0'])
  await onNode('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name)
  await onNode('link', 'set', hostVeth, 'up')
  await inPod('link', 'set', 'lo', 'up')
  await inPod('link', 'set', 'eth0', 'up')
  for (const addr of addresses) {
    const v6 = addr.includes(':')
    const gw = v6 ? gateways.v6 : gateways.v4
    if (!gw) throw new Error(`wire hand pod ${pod.name}: no IPv${v6 ? 6 : 4} gateway for ${addr}`)
    const host = v6 ? '128' : '32'
    await onNode('addr', 'add', `${gw}/${host}`, 'dev', hostVeth, ...(v6 ? ['nodad'] : []))
    await inPod('addr', 'add', `${addr}/${host}`, 'dev', 'eth0', ...(v6 ? ['nodad'] : []))
    await inPod(...(v6 ? ['-6'] : []), 'route', 'add', gw, 'dev', 'eth0', 'scope', 'link')
    await inPod(...(v6 ? ['-6'] : []), 'route', 'add', 'default', 'via', gw, 'dev', 'eth0')
    await onNode(...(v6 ? ['-6'] : []), 'route', 'add', `${addr}/${host}`, 'dev', hostVeth, 'proto', '201')
  }
  return { ns: pod, hostVeth, addresses: [...addresses] }
}

/**
 * An input-hook table in `ns` counting packets per source address (one rule per address given):
 * what a receiver saw, read back with receivedFrom.
 */
export async function countSources(ns: Netns, sources: readonly string[]): Promise<void> {
  const rules = sources.map((s) => `\t\t${s.includes(':') ? 'ip6' : 'ip'} saddr ${s} counter`).join('\n')
  await runOk(['ip', 'netns', 'exec', ns.name, 'nft', '-f', '-'], {
    input: `add table inet fntprobe\ndelete table inet fntprobe\ntable inet fntprobe {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n${rules}\n\t}\n}\n`,
  })
}

/** Packets `ns` received from `source` since countSources. */
export async function receivedFrom(ns: Netns, source: string): Promise<number> {
  const text = (await runOk(['ip', 'netns', 'exec', ns.name, 'nft', 'list', 'table', 'inet', 'fntprobe'])).stdout
  const line = text.split('\n').find((l) => l.includes(`saddr ${source} counter`))
  const m = line && /counter packets (\d+)/.exec(line)
  if (!m) throw new Error(`no counter for source ${source} in ${ns.name}`)
  return Number(m[1])
}
