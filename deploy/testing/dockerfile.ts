// Test-only: reading a Dockerfile and its .dockerignore, enough to check offline what a build
// would copy (no Docker daemon can run on these machines). Covers the syntax deploy/Dockerfile
// uses: comments, `\` continuations, FROM … AS, COPY [--from=…] [--chmod=…] src… dest, and the
// JSON form of ENTRYPOINT/CMD.

export interface Instruction {
  keyword: string
  /** The rest of the instruction, continuations joined with a space. */
  args: string
  line: number
}

export interface Stage {
  image: string
  name?: string
  instructions: Instruction[]
}

export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i]!.trim()
    if (first === '' || first.startsWith('#')) continue
    const start = i + 1
    let joined = first
    while (joined.endsWith('\\')) {
      joined = joined.slice(0, -1).trimEnd()
      i++
      if (i >= lines.length) throw new Error(`Dockerfile line ${start}: continuation at the end of the file`)
      const next = lines[i]!.trim()
      if (next.startsWith('#')) continue // comment lines inside a continuation are dropped
      joined += ` ${next}`
    }
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(joined)
    if (!m) throw new Error(`Dockerfile line ${start}: not an instruction: ${joined}`)
    const keyword = m[1]!.toUpperCase()
    const args = m[2]!.trim()
    if (keyword === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)
      if (!f) throw new Error(`Dockerfile line ${start}: FROM ${args}`)
      stages.push({ image: f[1]!, name: f[2], instructions: [] })
      continue
    }
    const stage = stages.at(-1)
    if (!stage) throw new Error(`Dockerfile line ${start}: ${keyword} before FROM`)
    stage.instructions.push({ keyword, args, line: start })
  }
  return stages
}

export interface Copy {
  from?: string
  sources: string[]
  dest: string
  line: number
}

/** The COPY instructions of a stage, flags read, sources and destination split. */
export function copiesOf(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.keyword === 'COPY')
    .map((i) => {
      const words = i.args.startsWith('[') ? (JSON.parse(i.args) as string[]) : i.args.split(/\s+/)
      let from: string | undefined
      const paths: string[] = []
      for (const w of words) {
        const flag = /^--([a-z]+)=(.*)$/.exec(w)
        if (flag) {
          if (flag[1] === 'from') from = flag[2]
          else if (!['chmod', 'chown', 'link'].includes(flag[1]!)) throw new Error(`Dockerfile line ${i.line}: COPY flag --${flag[1]} not modelled`)
          continue
        }
        paths.push(w)
      }
      if (paths.length < 2) throw new Error(`Dockerfile line ${i.line}: COPY needs a source and a destination`)
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1)!, line: i.line }
    })
}

/** The JSON (exec) form of an ENTRYPOINT or CMD instruction. */
export function execForm(stage: Stage, keyword: 'ENTRYPOINT' | 'CMD'): string[] | undefined {
  const i = stage.instructions.filter((x) => x.keyword === keyword).at(-1)
  if (!i) return undefined
  if (!i.args.startsWith('[')) throw new Error(`Dockerfile line ${i.line}: ${keyword} in shell form; use the exec (JSON) form so signals reach the process`)
  return JSON.parse(i.args) as string[]
}

/** .dockerignore patterns (comments and blank lines dropped). `!` exceptions are not modelled. */
export function parseDockerignore(text: string): string[] {
  const out: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    if (line.startsWith('!')) throw new Error(`.dockerignore exception ${line} is not modelled by this checker`)
    out.push(line.replace(/^\/+/, '').replace(/\/+$/, ''))
  }
  return out
}

function globToRegExp(pattern: string): RegExp {
  let re = ''
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!
    if (c === '*' && pattern[i + 1] === '*') {
      // `**/` matches any number of directories, including none.
      if (pattern[i + 2] === '/') {
        re += '(?:.*/)?'
        i += 2
      } else {
        re += '.*'
        i++
      }
    } else if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

/** Whether a context path (relative, `/`-separated) is left out of the build context. */
export function isIgnored(patterns: readonly string[], path: string): boolean {
  const parts = path.split('/')
  // A pattern that matches a directory leaves out everything below it.
  for (let n = 1; n <= parts.length; n++) {
    const prefix = parts.slice(0, n).join('/')
    if (patterns.some((p) => globToRegExp(p).test(prefix))) return true
  }
  return false
}
