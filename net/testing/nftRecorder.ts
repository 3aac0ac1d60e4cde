// A recording stand-in for the nft binary, for unit tests of code that builds transactions: it
// keeps every script it is handed and answers `-j list table` from a JSON document the test sets.
// It implements the product interface (NftExecutor), checked at compile time below.
import type { NftExecutor, NftResult } from '../nft.js'

export class RecordingNft implements NftExecutor {
  /** Every call, in order. */
  readonly calls: Array<{ args: string[]; script: string }> = []
  /** What `nft -j list table <family> <name>` answers, keyed `family name`; absent → "No such file or directory". */
  readonly tables = new Map<string, unknown>()
  /** When set, every `-f -` fails with this stderr (exit 1). */
  failApply: string | undefined

  /** The scripts of `nft -f -` calls, in order. */
  get scripts(): string[] {
    return this.calls.filter((c) => c.args[0] === '-f').map((c) => c.script)
  }

  async run(args: readonly string[], script = ''): Promise<NftResult> {
    this.calls.push({ args: [...args], script })
    if (args[0] === '-f') {
      if (this.failApply !== undefined) return { code: 1, stdout: '', stderr: this.failApply }
      return { code: 0, stdout: '', stderr: '' }
    }
    if (args[0] === '-j' && args[1] === 'list' && args[2] === 'table') {
      const doc = this.tables.get(`${args[3]} ${args[4]}`)
      if (doc === undefined) return { code: 1, stdout: '', stderr: `Error: No such file or directory\nlist table ${args[3]} ${args[4]}\n` }
      return { code: 0, stdout: JSON.stringify(doc), stderr: '' }
    }
    return { code: 1, stdout: '', stderr: `RecordingNft: unexpected nft ${args.join(' ')}` }
  }
}

const _implements: NftExecutor = new RecordingNft()
void _implements
