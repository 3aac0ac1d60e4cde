// The flatnet network configuration as a runtime hands it to the plugin on stdin: one object of
// a conflist's `plugins`, with `name` and `cniVersion` copied in by the runtime (SPEC.md
// "Network configuration"). Parsed and validated once; every later step reads typed values.
import { cidrsOverlap, parseAddress, parseCidr, podRange, type PodRange } from '../ipam/cidr.js'

export const DEFAULT_DATA_DIR = '/var/lib/cni/flatnet'
/** Stdin larger than this is refused before parsing: no legitimate config comes close. */
export const MAX_CONFIG_BYTES = 1 << 20
// SPEC.md: network name "must contain only alphanumeric characters, hyphen, underscore, dot".
const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/

export class ConfigError extends Error {
  constructor(
    readonly kind: 'decode' | 'invalid' | 'version',
    message: string,
  ) {
    super(message)
  }
}

export interface Attachment {
  containerId: string
  ifname: string
}

export interface NetConf {
  cniVersion: string
  name: string
  ranges: PodRange[]
  /** Undefined: use the MTU of the host's default-route interface. */
  mtu?: number
  dataDir: string
  dns: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] }
  logFile?: string
  /** Addresses asked for through the `ips` capability (runtimeConfig.ips). */
  requestedIps: string[]
  prevResult?: Record<string, unknown>
  /** GC only: attachments the runtime still uses (`cni.dev/valid-attachments`). */
  validAttachments?: Attachment[]
}

type Json = Record<string, unknown>

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * A value from the input, quoted for an error message: bounded in length, and safe on input that
 * JSON.stringify cannot take (a value nested thousands deep overflows its stack).
 */
export function quote(v: unknown, max = 80): string {
  let text: string
  try {
    text = JSON.stringify(v) ?? String(v)
  } catch {
    text = Array.isArray(v) ? '(a deeply nested array)' : '(a deeply nested object)'
  }
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text
}

function fail(message: string): never {
  throw new ConfigError('invalid', message)
}

/** Decodes stdin. Only the JSON shape is judged here; `validateNetConf` judges the content. */
export function decodeNetConf(stdin: Buffer | string): Json {
  if (stdin.length > MAX_CONFIG_BYTES) throw new ConfigError('decode', `network configuration on stdin is ${stdin.length} bytes, more than the ${MAX_CONFIG_BYTES} accepted`)
  const text = stdin.toString()
  if (text.trim() === '') throw new ConfigError('decode', 'network configuration on stdin is empty')
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (e) {
    throw new ConfigError('decode', `network configuration on stdin is not valid JSON: ${(e as Error).message}`)
  }
  if (!isObject(v)) throw new ConfigError('decode', 'network configuration on stdin must be a JSON object')
  return v
}

function optionalStringArray(conf: Json, path: string, v: unknown): string[] | undefined {
  if (v === undefined) return undefined
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) fail(`"${path}" must be an array of strings`)
  return v as string[]
}

function parseRanges(v: unknown): PodRange[] {
  if (!Array.isArray(v) || v.length === 0) fail('"ranges" must be a non-empty array of CIDRs, e.g. ["10.244.1.0/24"]')
  const ranges = v.map((text, i) => {
    if (typeof text !== 'string') fail(`"ranges"[${i}] must be a CIDR string, got ${quote(text)}`)
    try {
      return podRange(parseCidr(text))
    } catch (e) {
      fail(`"ranges"[${i}]: ${(e as Error).message}`)
    }
  })
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      if (ranges[i].cidr.family === ranges[j].cidr.family) {
        const overlap = cidrsOverlap(ranges[i].cidr, ranges[j].cidr)
        fail(`"ranges": ${ranges[i].cidr.text} and ${ranges[j].cidr.text} ${overlap ? 'overlap' : 'are of the same IP family'}; give one range per family`)
      }
    }
  }
  return ranges
}

function parseAttachments(v: unknown, key: string): Attachment[] {
  if (!Array.isArray(v)) fail(`"${key}" must be an array of {"containerID", "ifname"}`)
  return v.map((a, i) => {
    if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
      fail(`"${key}"[${i}] must be an object with string "containerID" and "ifname"`)
    }
    return { containerId: a.containerID, ifname: a.ifname }
  })
}

/**
 * Validates a decoded configuration. `supported` lists the cniVersions the caller speaks;
 * a config outside it is a 'version' error (CNI code 1).
 */
export function validateNetConf(conf: Json, supported: readonly string[]): NetConf {
  const { cniVersion, name, type } = conf
  if (typeof cniVersion !== 'string' || cniVersion === '') fail('"cniVersion" is missing or not a string')
  if (!supported.includes(cniVersion)) {
    throw new ConfigError('version', `cniVersion ${quote(cniVersion)} is not supported; flatnet supports ${supported.join(', ')}`)
  }
  if (typeof name !== 'string' || !NETWORK_NAME.test(name) || name.length > 200) {
    fail(`"name" ${quote(name)} must be a non-empty network name of letters, digits, "_", "." and "-"`)
  }
  if (type !== undefined && type !== 'flatnet') fail(`"type" is ${quote(type)}, this plugin is "flatnet"`)

  const ranges = parseRanges(conf.ranges)

  let mtu: number | undefined
  if (conf.mtu !== undefined) {
    if (!Number.isInteger(conf.mtu) || (conf.mtu as number) < 68 || (conf.mtu as number) > 65535) {
      fail(`"mtu" ${quote(conf.mtu)} must be an integer from 68 to 65535`)
    }
    mtu = conf.mtu as number
  }

  let dataDir = DEFAULT_DATA_DIR
  if (conf.dataDir !== undefined) {
    if (typeof conf.dataDir !== 'string' || !conf.dataDir.startsWith('/') || conf.dataDir.includes('\0')) {
      fail(`"dataDir" ${quote(conf.dataDir)} must be an absolute path`)
    }
    dataDir = conf.dataDir
  }

  let logFile: string | undefined
  if (conf.logFile !== undefined) {
    if (typeof conf.logFile !== 'string' || !conf.logFile.startsWith('/') || conf.logFile.includes('\0')) {
      fail(`"logFile" ${quote(conf.logFile)} must be an absolute path`)
    }
    logFile = conf.logFile
  }

  const dns: NetConf['dns'] = {}
  if (conf.dns !== undefined) {
    if (!isObject(conf.dns)) fail('"dns" must be an object')
    const d = conf.dns
    const nameservers = optionalStringArray(conf, 'dns.nameservers', d.nameservers)
    if (nameservers) dns.nameservers = nameservers
    if (d.domain !== undefined) {
      if (typeof d.domain !== 'string') fail('"dns.domain" must be a string')
      dns.domain = d.domain
    }
    const search = optionalStringArray(conf, 'dns.search', d.search)
    if (search) dns.search = search
    const options = optionalStringArray(conf, 'dns.options', d.options)
    if (options) dns.options = options
  }

  const requestedIps: string[] = []
  if (conf.runtimeConfig !== undefined) {
    if (!isObject(conf.runtimeConfig)) fail('"runtimeConfig" must be an object')
    const ips = optionalStringArray(conf, 'runtimeConfig.ips', conf.runtimeConfig.ips) ?? []
    for (const ip of ips) {
      const bare = ip.replace(/\/\d+$/, '')
      try {
        parseAddress(bare)
      } catch {
        fail(`"runtimeConfig.ips" entry ${quote(ip)} is not an IP address`)
      }
      requestedIps.push(bare)
    }
  }

  let prevResult: Json | undefined
  if (conf.prevResult !== undefined) {
    if (!isObject(conf.prevResult)) fail('"prevResult" must be an object')
    prevResult = conf.prevResult
  }

  let validAttachments: Attachment[] | undefined
  if (conf['cni.dev/valid-attachments'] !== undefined) validAttachments = parseAttachments(conf['cni.dev/valid-attachments'], 'cni.dev/valid-attachments')
  else if (conf['cni.dev/attachments'] !== undefined) validAttachments = parseAttachments(conf['cni.dev/attachments'], 'cni.dev/attachments')

  return { cniVersion, name, ranges, mtu, dataDir, dns, logFile, requestedIps, prevResult, validAttachments }
}
