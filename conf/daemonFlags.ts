// flatnetd's command line: yargs reads the flags (strictly: an unknown flag is an error), the
// environment and --config file are layered under them by mergeDaemonOptions, and
// validateDaemonConfig judges the result. Every value reaches yargs as a string so that the
// validation, not yargs' own coercion (which turns `--mtu abc` into NaN), names the bad flag.
import { readFile } from 'node:fs/promises'
import yargs from 'yargs'
import {
  DAEMON_ENV_PREFIX,
  DaemonConfigError,
  daemonOptions,
  envNameOf,
  mergeDaemonOptions,
  parseConfigFile,
  validateDaemonConfig,
  type DaemonConfig,
  type FlagName,
  type OptionSpec,
} from './daemonConfig.js'

export type DaemonCommandLine = { kind: 'run'; config: DaemonConfig } | { kind: 'help'; text: string }

function describe(flag: FlagName, spec: OptionSpec): string {
  const envs = [envNameOf(flag), ...(spec.env ?? [])].join(', ')
  return `${spec.describe} [env ${envs}]`
}

function parser(argv: readonly string[]) {
  const y = yargs([...argv])
    .scriptName('flatnetd')
    .usage(
      'flatnetd: the flatnet node daemon (node subnet, CNI config, routes to peers, masquerade).\n\nEvery flag can also be set as FLATNETD_<FLAG> in the environment or as a key of the --config JSON file; the command line wins, then the environment, then the file.',
    )
    .option('config', { type: 'string', describe: 'JSON file of options (keys: flag names, kebab or camel case)' })
    .help(false)
    .option('help', { type: 'boolean', describe: 'Show this help' })
    .version(false)
    .strict()
    .exitProcess(false)
    .wrap(110)
    .fail((msg, err) => {
      throw new DaemonConfigError(undefined, `flatnetd: ${err?.message ?? msg}`)
    })
  for (const [flag, spec] of Object.entries(daemonOptions) as Array<[FlagName, OptionSpec]>) {
    y.option(flag, {
      type: spec.type === 'boolean' ? 'boolean' : 'string',
      requiresArg: spec.type !== 'boolean',
      describe: describe(flag, spec),
      ...(spec.default !== undefined ? { defaultDescription: String(spec.default) } : {}),
    })
  }
  return y
}

/**
 * The daemon's configuration from its command line and environment (and --config file).
 * Throws DaemonConfigError naming the flag at fault.
 */
export async function loadDaemonConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<DaemonCommandLine> {
  // yargs reads any value but "true" of a boolean flag as false: `--masquerade=on` would turn
  // masquerading off without a word. Only the two words it understands pass.
  for (const arg of argv) {
    if (arg === '--') break
    const m = /^--(no-)?([a-z-]+)=([\s\S]*)$/.exec(arg)
    const spec: OptionSpec | undefined = m ? (daemonOptions as Record<string, OptionSpec>)[m[2]!] : undefined
    if (m && spec?.type === 'boolean' && m[3] !== 'true' && m[3] !== 'false') {
      throw new DaemonConfigError(m[2], `--${m[1] ?? ''}${m[2]}: expected true or false, got ${JSON.stringify(m[3])}`)
    }
  }
  const y = parser(argv)
  const parsed = (await y.parseAsync()) as Record<string, unknown>
  if (parsed.help === true) return { kind: 'help', text: await y.getHelp() }
  const positional = parsed._ as unknown[]
  if (positional.length) throw new DaemonConfigError(undefined, `flatnetd: unexpected argument ${JSON.stringify(String(positional[0]))} (flags only; see --help)`)

  const cli: Partial<Record<FlagName, unknown>> = {}
  for (const flag of Object.keys(daemonOptions) as FlagName[]) {
    if (parsed[flag] !== undefined) cli[flag] = parsed[flag]
  }
  const configPath = parsed.config ?? env[`${DAEMON_ENV_PREFIX}CONFIG`]
  let file: { path: string; values: Record<string, unknown> } | undefined
  if (configPath !== undefined) {
    if (typeof configPath !== 'string' || configPath === '') throw new DaemonConfigError('config', '--config: expected a file path')
    let text: string
    try {
      text = await readFile(configPath, 'utf8')
    } catch (e) {
      throw new DaemonConfigError('config', `--config ${configPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
    file = { path: configPath, values: parseConfigFile(configPath, text) }
  }
  return { kind: 'run', config: validateDaemonConfig(mergeDaemonOptions({ cli, env, file })) }
}
