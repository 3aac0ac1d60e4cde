// tcpdump on one interface of one lab namespace (test-only): what actually crosses the node
// network, seen by the kernel, not inferred from routes. Only the outer headers are parsed: for a
// VXLAN packet that is the UDP datagram between the node addresses, for a plain one the pod-to-pod
// packet itself.
import { spawn } from 'node:child_process'
import { inNetns } from '../exec.js'

export interface CapturedPacket {
  /** Source and destination address of the outermost IP header. */
  src: string
  dst: string
  /** `UDP` or `TCP` of the outermost header (what tcpdump says after the ports), or the raw rest. */
  proto: string
  srcPort: number
  dstPort: number
  line: string
}

export interface Capture {
  /** Stops tcpdump and returns what it saw. */
  stop(): Promise<CapturedPacket[]>
}

// `12:00:00.000000 IP 172.30.0.11.41234 > 172.30.1.12.8472: OTV, …` / `IP 10.244.0.2.5555 > 10.244.2.2.7300: Flags [S], …`
const OUTER = /^\S+ IP6? (\S+)\.(\d+) > (\S+)\.(\d+): (.*)$/

export function parseTcpdumpLine(line: string): CapturedPacket | undefined {
  const m = OUTER.exec(line)
  if (!m) return undefined
  const rest = m[5]!
  const proto = /^Flags \[/.test(rest) ? 'TCP' : /^(UDP|OTV|VXLAN)/.test(rest) ? 'UDP' : rest.split(/[ ,]/)[0]!
  return { src: m[1]!, srcPort: Number(m[2]), dst: m[3]!, dstPort: Number(m[4]), proto, line }
}

/**
 * Starts `tcpdump -i IF -n -l FILTER` inside `netns` and resolves once it listens (tcpdump says
 * so on stderr), so traffic sent afterwards is seen.
 */
export async function startCapture(netns: string, ifname: string, filter: string): Promise<Capture> {
  const argv = inNetns(netns, ['tcpdump', '-i', ifname, '-n', '-l', '--immediate-mode', filter])
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump on ${ifname} in ${netns}: not listening after 5 s: ${err}`)), 5000)
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString()
      if (/listening on/.test(err)) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`tcpdump on ${ifname} in ${netns} exited (${code}): ${err}`))
    })
  })
  return {
    async stop() {
      child.kill('SIGINT')
      await exited
      return out
        .split('\n')
        .map(parseTcpdumpLine)
        .filter((p): p is CapturedPacket => p !== undefined)
    },
  }
}
