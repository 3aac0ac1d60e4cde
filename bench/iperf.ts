// One iperf3 TCP stream between two namespaces (bench/overlay.ts, bench/dataplane.ts,
// bench/netpol-dataplane.ts): the server is started first and awaited until it listens, the client runs for a
// fixed time with -J, and both processes are gone when the call returns, pass or fail.
import { spawn, type ChildProcess } from 'node:child_process'
import { run } from '../e2e/helpers/index.js'

export const IPERF_PORT = 5201

/** One end: a namespace and the address to use there. */
export interface IperfEnd {
  netns: string
  address: string
  /** The server's end only: the address the client dials when not `address` itself (a Service address the node DNATs to it). */
  dialed?: string
}

export interface IperfSample {
  from: string
  to: string
  /** Receiver-side goodput (iperf3 end.sum_received). */
  gbps: number
  retransmits: number
  senderCpuPercent: number
  receiverCpuPercent: number
}

interface IperfReport {
  error?: string
  end?: {
    sum_received?: { bits_per_second?: number }
    sum_sent?: { retransmits?: number }
    cpu_utilization_percent?: { host_total?: number; remote_total?: number }
  }
}

/** Resolves once the iperf3 server prints that it listens; rejects if it exits or stays silent. */
function serverListening(server: ChildProcess, where: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`iperf3 server in ${where}: not listening after 5 s: ${out.trim()}`)), 5000)
    const done = (err?: Error) => {
      clearTimeout(timer)
      server.stdout?.removeAllListeners('data')
      if (err) reject(err)
      else resolve()
    }
    server.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('Server listening')) done()
    })
    server.stderr?.on('data', (d: Buffer) => (out += d.toString()))
    server.once('exit', (code, signal) => done(new Error(`iperf3 server in ${where}: exited (${signal ?? code}) before listening: ${out.trim()}`)))
    server.once('error', (err) => done(new Error(`iperf3 server in ${where}: ${err.message}`)))
  })
}

/** One TCP stream for `seconds` from `client` to `server`; `onKill` registers the server's killer with the caller's cleanup. */
export async function iperfOnce(server: IperfEnd, client: IperfEnd, seconds: number, cleanup: { teardown(fn: () => unknown): void; forget(fn: () => unknown): void }): Promise<IperfSample> {
  const target = server.dialed ?? server.address
  const what = `iperf3 ${client.address} (${client.netns}) → ${target}${target === server.address ? '' : ` → ${server.address}`} (${server.netns})`
  // `ip netns exec` execs iperf3 in place, so this pid is the server's own.
  const srv = spawn('ip', ['netns', 'exec', server.netns, 'iperf3', '-s', '-1', '-B', server.address, '-p', String(IPERF_PORT), '--forceflush'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<void>((r) => srv.once('exit', () => r()))
  const kill = () => {
    if (srv.exitCode === null && srv.signalCode === null) srv.kill('SIGKILL')
  }
  cleanup.teardown(kill)
  try {
    await serverListening(srv, server.netns)
    srv.stdout?.resume()
    srv.stderr?.resume()
    const res = await run(['ip', 'netns', 'exec', client.netns, 'iperf3', '-c', target, '-B', client.address, '-p', String(IPERF_PORT), '-t', String(seconds), '-J'], {
      timeoutMs: (seconds + 20) * 1000,
    })
    let report: IperfReport
    try {
      report = JSON.parse(res.stdout) as IperfReport
    } catch {
      throw new Error(`${what}: exit ${res.code}, no JSON report: ${(res.stderr || res.stdout).trim().slice(0, 500)}`)
    }
    const bps = report.end?.sum_received?.bits_per_second
    if (res.code !== 0 || report.error || typeof bps !== 'number') {
      throw new Error(`${what}: exit ${res.code}${res.timedOut ? ' (timed out)' : ''}: ${report.error ?? 'no end.sum_received in the report'}`)
    }
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))])
    return {
      from: client.address,
      to: server.address,
      gbps: bps / 1e9,
      retransmits: report.end?.sum_sent?.retransmits ?? NaN,
      senderCpuPercent: report.end?.cpu_utilization_percent?.host_total ?? NaN,
      receiverCpuPercent: report.end?.cpu_utilization_percent?.remote_total ?? NaN,
    }
  } finally {
    kill()
    await exited
    cleanup.forget(kill)
  }
}
