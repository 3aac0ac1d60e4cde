// Masquerade of pod traffic leaving the cluster range, in an nftables table of flatnet's own
// (`ip flatnet`), so it never edits anyone else's rules and can be removed whole.
//
// The rule is "source in the cluster range, destination outside it → masquerade":
// - pod → pod, on this node or any other, has both ends in the cluster range: never NATed, so the
//   receiver sees the sender's own address (the Kubernetes network model);
// - pod → this node's own addresses is delivered locally and never passes the postrouting hook;
// - pod → anything else leaves with the node's address, which the outside can answer.
//
// The table is replaced in one `nft -f -` transaction (create-if-missing, delete, create): there
// is never a moment without the rule, and never two versions of it. nft is spawned with an
// argument array, no shell, and the script is built from a parsed CIDR only.
import { spawn } from 'node:child_process'
import type { Cidr } from '../ipam/index.js'

export const MASQUERADE_TABLE = 'flatnet'

function tableFamily(cluster: Cidr): 'ip' | 'ip6' {
  return cluster.family === 4 ? 'ip' : 'ip6'
}

/** The whole table, as nft will list it back (so a listing can be compared with it). */
export function renderMasqueradeTable(cluster: Cidr): string {
  const fam = tableFamily(cluster)
  const addr = cluster.family === 4 ? 'ip' : 'ip6'
  return [
    `table ${fam} ${MASQUERADE_TABLE} {`,
    `\tchain postrouting {`,
    `\t\ttype nat hook postrouting priority srcnat; policy accept;`,
    `\t\t${addr} saddr ${cluster.text} ${addr} daddr != ${cluster.text} masquerade`,
    `\t}`,
    `}`,
    '',
  ].join('\n')
}

/** One transaction that leaves exactly the rendered table in place, whatever was there before. */
export function masqueradeInstallScript(cluster: Cidr): string {
  const fam = tableFamily(cluster)
  return `add table ${fam} ${MASQUERADE_TABLE}\ndelete table ${fam} ${MASQUERADE_TABLE}\n${renderMasqueradeTable(cluster)}`
}

/** One transaction that removes the table, and succeeds when there is none. */
export function masqueradeRemoveScript(family: 4 | 6): string {
  const fam = family === 4 ? 'ip' : 'ip6'
  return `add table ${fam} ${MASQUERADE_TABLE}\ndelete table ${fam} ${MASQUERADE_TABLE}\n`
}

export interface NftResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs nft with these arguments and script on stdin. */
export function runNft(args: readonly string[], script = ''): Promise<NftResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('nft', [...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => err.push(d))
    child.stdin.on('error', () => {}) // nft failing early closes stdin; its exit code tells
    child.on('error', (e) => reject(new Error(`run nft ${args.join(' ')}: ${e.message}`)))
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }))
    child.stdin.end(script)
  })
}

/** The table as nft lists it now, or undefined when it does not exist. */
export async function listMasqueradeTable(family: 4 | 6): Promise<string | undefined> {
  const fam = family === 4 ? 'ip' : 'ip6'
  const r = await runNft(['list', 'table', fam, MASQUERADE_TABLE])
  if (r.code === 0) return r.stdout
  if (/No such file or directory/.test(r.stderr)) return undefined
  throw new Error(`list nftables table ${fam} ${MASQUERADE_TABLE}: ${r.stderr.trim() || `exit ${r.code}`}`)
}

/**
 * Level-triggered: installs the table unless nft already lists exactly what we would write.
 * True when it (re)built the table.
 */
export async function ensureMasquerade(cluster: Cidr): Promise<boolean> {
  const want = renderMasqueradeTable(cluster)
  if ((await listMasqueradeTable(cluster.family)) === want) return false
  const r = await runNft(['-f', '-'], masqueradeInstallScript(cluster))
  if (r.code !== 0) throw new Error(`install nftables table ${tableFamily(cluster)} ${MASQUERADE_TABLE} (masquerade ${cluster.text} → outside): ${r.stderr.trim() || `exit ${r.code}`}`)
  return true
}

/** Removes the table; true when there was one. */
export async function removeMasquerade(family: 4 | 6): Promise<boolean> {
  const existed = (await listMasqueradeTable(family)) !== undefined
  const r = await runNft(['-f', '-'], masqueradeRemoveScript(family))
  const fam = family === 4 ? 'ip' : 'ip6'
  if (r.code !== 0) throw new Error(`remove nftables table ${fam} ${MASQUERADE_TABLE}: ${r.stderr.trim() || `exit ${r.code}`}`)
  return existed
}
