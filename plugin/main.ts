// The flatnet CNI plugin: one process per runtime call (SPEC.md "Execution Protocol").
// stdout carries exactly one JSON document: the result, or the error. Everything else goes to
// the log file or stderr.
import { readFileSync } from 'node:fs'
import { ConfigError, decodeNetConf, validateNetConf } from '../conf/netconf.js'
import { cmdAdd } from './add.js'
import { cmdCheck } from './check.js'
import { cmdDel } from './del.js'
import { parseInvocation, parseVerb } from './environment.js'
import { CniError, Code } from './errors.js'
import { cmdGc } from './gc.js'
import { createPluginLog } from './log.js'
import { cmdStatus } from './status.js'
import { atLeast, encodeResult, isSupported, LATEST, SUPPORTED_VERSIONS, type CniVersion } from './versions.js'

function readStdin(): Buffer {
  try {
    return readFileSync(0)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'EAGAIN' || code === 'EOF' || code === 'ENXIO') return Buffer.alloc(0)
    throw new CniError(Code.ioFailure, `read network configuration from stdin: ${code ?? (e as Error).message}`)
  }
}

function configToCni(e: unknown): unknown {
  if (!(e instanceof ConfigError)) return e
  const code = e.kind === 'decode' ? Code.decodeFailure : e.kind === 'version' ? Code.incompatibleVersion : Code.invalidConfig
  return new CniError(code, e.message)
}

function requireVersion(verb: string, have: CniVersion, min: CniVersion): void {
  if (!atLeast(have, min)) throw new CniError(Code.incompatibleVersion, `${verb} needs cniVersion ${min} or later, the configuration says ${have}`)
}

async function run(print: (doc: object) => void, setVersion: (v: CniVersion) => void): Promise<void> {
  const verb = parseVerb(process.env)
  const stdin = readStdin()

  if (verb === 'VERSION') {
    // The config is optional for VERSION; if given, answer in its version (SPEC.md "VERSION").
    let asked: unknown = LATEST
    if (stdin.toString().trim() !== '') asked = decodeNetConfOrThrow(stdin).cniVersion
    print({ cniVersion: isSupported(asked) ? asked : LATEST, supportedVersions: [...SUPPORTED_VERSIONS] })
    return
  }

  const raw = decodeNetConfOrThrow(stdin)
  if (isSupported(raw.cniVersion)) setVersion(raw.cniVersion)
  const inv = parseInvocation(process.env)
  let conf
  try {
    conf = validateNetConf(raw, SUPPORTED_VERSIONS)
  } catch (e) {
    throw configToCni(e)
  }
  const version = conf.cniVersion as CniVersion
  const log = createPluginLog({ verb, network: conf.name, containerId: inv.containerId || undefined, ifname: inv.ifname || undefined }, conf.logFile ?? process.env.FLATNET_LOG_FILE)

  try {
    switch (verb) {
      case 'ADD':
        print(encodeResult(version, await cmdAdd(inv, conf, log)))
        return
      case 'DEL':
        await cmdDel(inv, conf, log)
        return
      case 'CHECK':
        requireVersion('CHECK', version, '0.4.0')
        await cmdCheck(inv, conf)
        return
      case 'STATUS':
        requireVersion('STATUS', version, '1.1.0')
        await cmdStatus(conf)
        return
      case 'GC':
        requireVersion('GC', version, '1.1.0')
        await cmdGc(conf, log)
        return
    }
  } catch (e) {
    log.error((e as Error).message, { code: (e as CniError).code })
    throw e
  }
}

function decodeNetConfOrThrow(stdin: Buffer) {
  try {
    return decodeNetConf(stdin)
  } catch (e) {
    throw configToCni(e)
  }
}

async function main(): Promise<void> {
  let version: CniVersion = LATEST
  const print = (doc: object) => process.stdout.write(JSON.stringify(doc) + '\n')
  try {
    await run(print, (v) => { version = v })
    process.exitCode = 0
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(Code.ioFailure, (e as Error)?.message ?? String(e))
    print({ cniVersion: version, code: err.code, msg: err.message, details: err.details })
    process.exitCode = 1
  }
  // Sockets and timers must not hold the runtime waiting: the answer is out, we are done.
  process.exit()
}

void main()
