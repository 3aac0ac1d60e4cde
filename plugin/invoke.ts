// One plugin call, as a function: the CNI_* environment and the stdin bytes in, the one JSON
// document for stdout and the exit code out (SPEC.md "Execution Protocol"). main.ts is the thin
// process shell around it; the fuzz suite calls it in-process, thousands of times, with the
// same code path the binary takes.
import { ConfigError, decodeNetConf, validateNetConf } from '../conf/netconf.js'
import { IpamError } from '../ipam/index.js'
import { NetnsError, type OpenedNetns } from '../net/netns.js'
import { cmdAdd } from './add.js'
import { withContainerLock } from './attachmentLock.js'
import { cmdCheck } from './check.js'
import { cmdDel } from './del.js'
import { parseInvocation, parseVerb } from './environment.js'
import { CniError, Code } from './errors.js'
import { cmdGc } from './gc.js'
import { callStderr, createPluginLog } from './log.js'
import { cmdStatus } from './status.js'
import { atLeast, encodeResult, isSupported, LATEST, SUPPORTED_VERSIONS, type CniVersion } from './versions.js'

export interface PluginOutcome {
  /** What goes on stdout as one JSON line; undefined when the verb prints nothing (DEL, CHECK, STATUS, GC succeeded). */
  document?: Record<string, unknown>
  exitCode: 0 | 1
}

/**
 * The one place a failure becomes the spec's error: each layer throws its own typed error
 * (config, address store, namespace), and only here is it given the code a runtime understands.
 * Anything unexpected is an I/O failure (code 5) carrying its message.
 */
function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e
  if (e instanceof ConfigError) {
    return new CniError(e.kind === 'decode' ? Code.decodeFailure : e.kind === 'version' ? Code.incompatibleVersion : Code.invalidConfig, e.message)
  }
  if (e instanceof IpamError) {
    const code = { exhausted: Code.rangeExhausted, unavailable: Code.addressUnavailable, invalid: Code.invalidConfig, io: Code.ioFailure }[e.kind]
    return new CniError(code, e.message)
  }
  // Only CNI_NETNS is ever opened as a namespace by the plugin.
  if (e instanceof NetnsError) return new CniError(e.reason === 'missing' ? Code.containerUnknown : Code.invalidEnvironment, `CNI_NETNS: ${e.message}`)
  return new CniError(Code.ioFailure, e instanceof Error ? e.message : String(e))
}

function requireVersion(verb: string, have: CniVersion, min: CniVersion): void {
  if (!atLeast(have, min)) throw new CniError(Code.incompatibleVersion, `${verb} needs cniVersion ${min} or later, the configuration says ${have}`)
}

async function run(env: NodeJS.ProcessEnv, readStdin: () => Buffer, setVersion: (v: CniVersion) => void, openedNetns: OpenedNetns | undefined): Promise<Record<string, unknown> | undefined> {
  const verb = parseVerb(env)
  const stdin = readStdin()

  if (verb === 'VERSION') {
    // The config is optional for VERSION; if given, answer in its version (SPEC.md "VERSION").
    let asked: unknown = LATEST
    if (stdin.toString().trim() !== '') asked = decodeNetConf(stdin).cniVersion
    return { cniVersion: isSupported(asked) ? asked : LATEST, supportedVersions: [...SUPPORTED_VERSIONS] }
  }

  const raw = decodeNetConf(stdin)
  if (isSupported(raw.cniVersion)) setVersion(raw.cniVersion)
  const inv = parseInvocation(env)
  if (openedNetns && inv.netns) inv.openedNetns = openedNetns
  const conf = validateNetConf(raw, SUPPORTED_VERSIONS)
  const version = conf.cniVersion as CniVersion
  const log = createPluginLog({ verb, network: conf.name, containerId: inv.containerId || undefined, ifname: inv.ifname || undefined }, conf.logFile ?? env.FLATNET_LOG_FILE)

  const unlocked = (why: string) => log.error(`serving unserialized: ${why}`)
  try {
    switch (verb) {
      case 'ADD':
        return encodeResult(version, await withContainerLock(inv.containerId, unlocked, () => cmdAdd(inv, conf, log)))
      case 'DEL':
        await withContainerLock(inv.containerId, unlocked, () => cmdDel(inv, conf, log))
        return undefined
      case 'CHECK':
        requireVersion('CHECK', version, '0.4.0')
        await withContainerLock(inv.containerId, unlocked, () => cmdCheck(inv, conf))
        return undefined
      case 'STATUS':
        requireVersion('STATUS', version, '1.1.0')
        await cmdStatus(conf)
        return undefined
      case 'GC':
        requireVersion('GC', version, '1.1.0')
        await cmdGc(conf, log)
        return undefined
    }
  } catch (e) {
    const err = toCniError(e)
    log.error(err.message, { code: err.code })
    throw err
  }
}

/** An error's msg and details are for a person reading a kubelet event, not a copy of the input. */
const MAX_MSG = 4096
const MAX_DETAILS = 16384

function bounded(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length - max} more characters)` : text
}

/**
 * Runs one call. Never throws: every failure, expected or not, becomes the spec's error object
 * (an unexpected one as code 5 with its message only — a stack trace is for the log, not for the
 * runtime's JSON parser). `openedNetns`: CNI_NETNS as the caller opened it (flatnetd's socket).
 * `stderr`: where this call's stderr lines go (flatnetd collects them per call); default the
 * process's stderr.
 */
export async function invokePlugin(env: NodeJS.ProcessEnv, readStdin: () => Buffer, openedNetns?: OpenedNetns, stderr?: (text: string) => void): Promise<PluginOutcome> {
  return stderr ? callStderr.run(stderr, () => invokeHere(env, readStdin, openedNetns)) : invokeHere(env, readStdin, openedNetns)
}

async function invokeHere(env: NodeJS.ProcessEnv, readStdin: () => Buffer, openedNetns: OpenedNetns | undefined): Promise<PluginOutcome> {
  let version: CniVersion = LATEST
  try {
    const document = await run(
      env,
      readStdin,
      (v) => {
        version = v
      },
      openedNetns,
    )
    return { document, exitCode: 0 }
  } catch (e) {
    const err = toCniError(e)
    return { document: { cniVersion: version, code: err.code, msg: bounded(err.message, MAX_MSG), details: bounded(err.details, MAX_DETAILS) }, exitCode: 1 }
  }
}
