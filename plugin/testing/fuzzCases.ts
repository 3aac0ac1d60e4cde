// Test-only: a seeded generator of bad (and oddly valid) plugin inputs, each with the outcomes
// the CNI spec allows for it. A case is a runtime-valid baseline with one fault — or, for the
// random tail, two — in the stdin JSON or in one CNI_* variable. The expected codes come from the
// spec's rules (SPEC.md "Parameters", "Error" codes 1/3/4/6/7) and the README's configuration
// keys, not from the plugin's code: malformed JSON is 6 because JSON.parse says so, a missing
// variable is 4 because the spec says so.
//
// The baseline is chosen so that a valid input still fails harmlessly: ADD and CHECK get a
// CNI_NETNS that is a regular file (refused with 4 before anything is made). "Live" cases use a
// real pod namespace instead; they carry only faults that must fail before the pod is wired, or
// valid oddities that must succeed (the runner DELs those right after).

import { seededRandom } from './reliabilityHarness.js'

export type Verb = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION'

export interface FuzzContext {
  /** The data dir every case's config names: the only place the plugin may write. */
  dataDir: string
  /** This run's pod range (an IPv4 /24), e.g. 10.203.7.0/24. */
  range: string
  /** Paths that are not network namespaces. */
  notNetns: { file: string; dir: string; fifo: string; socket: string; symlink: string }
  /** An absolute path that does not exist. */
  missing: string
  /** A real, empty pod namespace (live cases). */
  podNetns: string
  /** A real pod namespace that already has an `eth0`. */
  busyPodNetns: string
  /** Put into every traversal and shell payload, so files it might create can be searched for. */
  marker: string
}

export interface FuzzCase {
  id: number
  /** What was fuzzed, e.g. `env CNI_IFNAME: 16 bytes`. */
  what: string
  /** The complete CNI_* environment (CNI_COMMAND absent when the fault is its absence). */
  env: Record<string, string>
  /** stdin bytes, base64. */
  stdin: string
  /** Allowed outcomes: 0 is success (exit 0), anything else an error code with exit 1. */
  expect: number[]
  /** An error's message must contain this (the variable or key at fault). */
  msgIncludes?: string
  /** False when the case cannot pass through execve: a NUL in a variable, or one longer than 128 KiB. */
  binaryOk: boolean
  /** Uses a real pod namespace (a wrong expectation would wire a pod). */
  live: boolean
}

type Rng = () => number
type Json = Record<string, unknown>

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]
const b64 = (s: string | Buffer) => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64')
const MIB = 1 << 20
/** execve refuses a single environment string longer than this (MAX_ARG_STRLEN). */
const MAX_ENV_STRING = 128 * 1024

/** Which variables a verb needs (SPEC.md "Parameters"); VERSION needs none. */
const REQUIRED: Record<Verb, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
  STATUS: ['CNI_PATH'],
  GC: ['CNI_PATH'],
  VERSION: [],
}

/** A fault's verdict for one verb: the codes it allows, or 'ignored' when that verb does not look at it. */
type Verdict = number[] | 'ignored'

interface Fault {
  what: string
  apply(c: Draft): void
  verdict(verb: Verb): Verdict
  msgIncludes?: string
  /** Only meaningful with a real pod namespace. */
  liveOnly?: boolean
  /** Safe and meaningful in a live case. */
  liveOk?: boolean
  /** Rewrites the stdin text from the config as it is then: applied after every config fault, never two in one case. */
  raw?: boolean
}

interface Draft {
  verb: Verb
  env: Record<string, string | undefined>
  /** The config object; `raw` replaces it when the fault is in the text itself. */
  conf: Json
  raw?: string | Buffer
}

// ---------------------------------------------------------------------------------------------
// Faults in the environment

function envFault(name: string, value: string | undefined, what: string, verdict: (verb: Verb) => Verdict, opts: Partial<Fault> = {}): Fault {
  return {
    what: `env ${name}: ${what}`,
    apply: (c) => {
      c.env[name] = value
    },
    verdict,
    msgIncludes: opts.msgIncludes ?? name,
    ...opts,
  }
}

/** A value the verb must refuse with 4 if it needs the variable, and may not look at otherwise. */
const refusedIfRequired =
  (name: string) =>
  (verb: Verb): Verdict =>
    REQUIRED[verb].includes(name) ? [4] : 'ignored'

function commandFaults(): Fault[] {
  const values: Array<[string | undefined, string]> = [
    [undefined, 'unset'],
    ['', 'empty'],
    ['add', 'lower case'],
    ['ADD ', 'trailing space'],
    ['ADD\n', 'trailing newline'],
    ['FOO', 'unknown verb'],
    ['ADD;reboot', 'shell metacharacters'],
    ['ÄDD', 'unicode'],
    ['A'.repeat(100_000), '100 kB'],
  ]
  return values.map(([v, what]) => ({
    what: `env CNI_COMMAND: ${what}`,
    apply: (c) => {
      c.env.CNI_COMMAND = v
    },
    verdict: () => [4],
    msgIncludes: 'CNI_COMMAND',
  }))
}

function containerIdFaults(m: string): Fault[] {
  const invalid: Array<[string | undefined, string]> = [
    [undefined, 'unset'],
    ['', 'empty'],
    [`../../${m}`, 'path traversal'],
    ['..', '".."'],
    ['.hidden', 'leading dot'],
    ['-x', 'leading dash'],
    [`a/${m}`, 'slash'],
    ['a b', 'space'],
    [`a;touch /tmp/${m}`, 'shell ;'],
    [`$(touch /tmp/${m})`, 'shell $()'],
    ['`id`', 'backticks'],
    ['a|b&c>d', 'shell | & >'],
    ['ä', 'unicode'],
    ['😀', 'emoji'],
    ['x'.repeat(1025), '1025 bytes'],
    ['x'.repeat(100_000), '100 kB'],
    ['a\nb', 'newline'],
    ['a\tb', 'tab'],
    ['a:b', 'colon'],
    ['a\\b', 'backslash'],
    ['*', 'glob'],
    ['a%2f..%2f', 'url-encoded traversal'],
  ]
  const valid: Array<[string, string]> = [
    ['a..b', 'inner dots'],
    ['x'.repeat(1024), '1024 bytes'],
    ['A_b-c.D9', 'every allowed kind'],
    ['0', 'one digit'],
  ]
  return [
    ...invalid.map(([v, what]) => envFault('CNI_CONTAINERID', v, what, refusedIfRequired('CNI_CONTAINERID'))),
    envFault('CNI_CONTAINERID', 'a\0b', 'NUL byte', refusedIfRequired('CNI_CONTAINERID')),
    ...valid.map(([v, what]) => envFault('CNI_CONTAINERID', v, `valid: ${what}`, () => 'ignored', { liveOk: true, msgIncludes: undefined })),
  ]
}

function ifnameFaults(m: string): Fault[] {
  const invalid: Array<[string | undefined, string]> = [
    [undefined, 'unset'],
    ['', 'empty'],
    ['/', 'slash'],
    [`../${m}`, 'path traversal'],
    ['.', '"."'],
    ['..', '".."'],
    ['eth0:1', 'colon'],
    ['eth 0', 'space'],
    ['eth\t0', 'tab'],
    ['eth\n0', 'newline'],
    ['x'.repeat(16), '16 bytes'],
    ['é'.repeat(8), '16 bytes of unicode'],
    ['😀😀😀😀', '16 bytes of emoji'],
    ['x'.repeat(100_000), '100 kB'],
    ['eth%d', 'a kernel name template'],
    ['%s%n', 'format string'],
  ]
  const valid: Array<[string, string]> = [
    ['é'.repeat(7), '14 bytes of unicode'],
    ['x'.repeat(15), '15 bytes'],
    ['$(id)', 'shell $()'],
    ['a;b', 'shell ;'],
    ['-', 'dash'],
    ['\x01', 'control byte'],
  ]
  return [
    ...invalid.map(([v, what]) => envFault('CNI_IFNAME', v, what, refusedIfRequired('CNI_IFNAME'))),
    envFault('CNI_IFNAME', 'et\0h0', 'NUL byte', refusedIfRequired('CNI_IFNAME')),
    ...valid.map(([v, what]) => envFault('CNI_IFNAME', v, `valid: ${what}`, () => 'ignored', { liveOk: true, msgIncludes: undefined })),
  ]
}

function netnsFaults(ctx: FuzzContext): Fault[] {
  // ADD and CHECK open the namespace: a missing one is 3 ("container unknown"), anything else that
  // is not a network namespace 4. DEL must succeed without one (containerd sends DEL with an
  // empty CNI_NETNS); a value that is not even an absolute path may be refused by anyone.
  const opens =
    (code: number) =>
    (verb: Verb): Verdict =>
      verb === 'ADD' || verb === 'CHECK' ? [code] : 'ignored'
  const notAbsolute = (verb: Verb): Verdict => (verb === 'ADD' || verb === 'CHECK' || verb === 'DEL' ? [4] : verb === 'VERSION' ? 'ignored' : [0, 4])
  const m = ctx.marker
  return [
    envFault('CNI_NETNS', undefined, 'unset', opens(4)),
    envFault('CNI_NETNS', '', 'empty', opens(4)),
    envFault('CNI_NETNS', 'netns', 'relative', notAbsolute),
    envFault('CNI_NETNS', `../../${m}`, 'relative traversal', notAbsolute),
    envFault('CNI_NETNS', 'x'.repeat(100_000), '100 kB relative', notAbsolute),
    envFault('CNI_NETNS', '/ns\0x', 'NUL byte', notAbsolute),
    envFault('CNI_NETNS', ctx.missing, 'does not exist', opens(3)),
    envFault('CNI_NETNS', `/nonexistent-${m}/ns`, 'under a missing dir', opens(3)),
    envFault('CNI_NETNS', ctx.notNetns.file, 'a regular file', opens(4)),
    envFault('CNI_NETNS', '/etc/passwd', '/etc/passwd', opens(4)),
    envFault('CNI_NETNS', '/etc/passwd/x', 'below a file (ENOTDIR)', opens(4)),
    envFault('CNI_NETNS', ctx.notNetns.dir, 'a directory', opens(4)),
    envFault('CNI_NETNS', ctx.notNetns.fifo, 'a FIFO', opens(4)),
    envFault('CNI_NETNS', ctx.notNetns.socket, 'a unix socket', opens(4)),
    envFault('CNI_NETNS', ctx.notNetns.symlink, 'a symlink to a file', opens(4)),
    envFault('CNI_NETNS', '/dev/null', '/dev/null', opens(4)),
    envFault('CNI_NETNS', '/dev/zero', '/dev/zero', opens(4)),
    envFault('CNI_NETNS', '/proc/self/ns/mnt', 'a mount namespace', opens(4)),
    envFault('CNI_NETNS', '/proc/self/ns/pid', 'a pid namespace', opens(4)),
    envFault('CNI_NETNS', '/proc/self/ns/net', "the plugin's own (host) network namespace", opens(4)),
    envFault('CNI_NETNS', '/proc/self/fd/0', 'its own stdin', opens(4)),
    envFault('CNI_NETNS', '/run/netns/../../etc/passwd', 'absolute traversal to a file', opens(4)),
    envFault('CNI_NETNS', '/' + 'x'.repeat(5000), 'longer than PATH_MAX', opens(4)),
    envFault('CNI_NETNS', `/tmp/${m} $(reboot)`, 'shell metacharacters, missing', opens(3)),
    envFault('CNI_NETNS', `/tmp/${m}-ünï😀`, 'unicode, missing', opens(3)),
  ]
}

function argsFaults(ctx: FuzzContext): Fault[] {
  const refused = (verb: Verb): Verdict => (verb === 'ADD' || verb === 'CHECK' || verb === 'DEL' ? [4] : verb === 'VERSION' ? 'ignored' : [0, 4])
  const gateway = ctx.range.replace(/0\/24$/, '1')
  const broadcast = ctx.range.replace(/0\/24$/, '255')
  const requestFails = (what: string, ip: string): Fault => ({
    what: `env CNI_ARGS: IP= ${what}`,
    apply: (c) => {
      c.env.CNI_ARGS = `IP=${ip}`
    },
    // Parsed at reservation time, after the namespace: only a live case gets that far.
    verdict: (verb) => (verb === 'ADD' ? [7, 101] : 'ignored'),
    liveOnly: true,
    liveOk: true,
  })
  return [
    envFault('CNI_ARGS', 'FOO', 'no "="', refused),
    envFault('CNI_ARGS', '=1', 'empty key', refused),
    envFault('CNI_ARGS', 'IP', 'bare key', refused),
    envFault('CNI_ARGS', ';=;', 'separators only', refused),
    envFault('CNI_ARGS', 'FOO=1', 'unknown key', refused),
    envFault('CNI_ARGS', `K8S_POD_NAMESPACE=x;EVIL=$(touch /tmp/${ctx.marker})`, 'unknown key among known ones', refused),
    envFault('CNI_ARGS', `IgnoreUnknown=1;${'k=v;'.repeat(20_000)}`, 'valid: 80 kB of ignored keys', () => 'ignored', { msgIncludes: undefined, liveOk: true }),
    envFault('CNI_ARGS', `IgnoreUnknown=true;K8S_POD_NAME=$(reboot);K8S_POD_NAMESPACE=../../${ctx.marker};X=ü`, 'valid: odd values', () => 'ignored', { msgIncludes: undefined, liveOk: true }),
    envFault('CNI_ARGS', 'IgnoreUnknown=1;A=\0', 'NUL byte', () => 'ignored', { msgIncludes: undefined }),
    requestFails('not an address', 'not-an-ip'),
    requestFails('outside the range', '192.0.2.77'),
    requestFails('the gateway', gateway),
    requestFails('the broadcast address', broadcast),
    requestFails('IPv6 without an IPv6 range', 'fd00::7'),
    requestFails('with a prefix', `${gateway}/24`),
  ]
}

function pathFaults(): Fault[] {
  return [
    envFault('CNI_PATH', undefined, 'unset', refusedIfRequired('CNI_PATH')),
    envFault('CNI_PATH', '', 'empty', refusedIfRequired('CNI_PATH')),
    envFault('CNI_PATH', 'relative:../x:$(id)', 'valid: odd value', () => 'ignored', { msgIncludes: undefined, liveOk: true }),
    envFault('CNI_PATH', '/x'.repeat(50_000), 'valid: 100 kB', () => 'ignored', { msgIncludes: undefined }),
  ]
}

// ---------------------------------------------------------------------------------------------
// Faults in the network configuration

/** Outcome when the configuration is refused: VERSION reads only cniVersion and never refuses content. */
const configRefused =
  (codes: number[]) =>
  (verb: Verb): Verdict =>
    verb === 'VERSION' ? 'ignored' : codes

function keyFault(key: string, value: unknown, what: string, codes: number[] = [7], opts: Partial<Fault> = {}): Fault {
  return {
    what: `config "${key}": ${what}`,
    apply: (c) => {
      c.conf[key] = value
    },
    verdict: configRefused(codes),
    msgIncludes: opts.msgIncludes ?? (codes.includes(7) ? key.split('.')[0] : undefined),
    ...opts,
  }
}

const WRONG_TYPES: Array<[unknown, string]> = [
  [true, 'a boolean'],
  [0, 'zero'],
  [-1, 'a negative number'],
  [1.5, 'a fraction'],
  ['', 'an empty string'],
  ['x', 'a string'],
  [[], 'an empty array'],
  [[1], 'an array of numbers'],
  [{}, 'an object'],
  [{ a: [1, { b: null }] }, 'a nested object'],
]

function wrongTypeFaults(): Fault[] {
  const out: Fault[] = []
  const keys: Array<[string, (v: unknown) => boolean]> = [
    // [key, is this value actually valid for it]
    ['cniVersion', () => false],
    ['name', (v) => typeof v === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(v)],
    ['type', () => false],
    ['ranges', () => false],
    ['mtu', (v) => Number.isInteger(v) && (v as number) >= 68 && (v as number) <= 65535],
    ['dataDir', () => false],
    ['logFile', () => false],
    // dns: an object without any of its four keys is valid (unknown keys inside are ignored).
    ['dns', (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && !['nameservers', 'domain', 'search', 'options'].some((k) => k in v)],
    ['runtimeConfig', (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && !('ips' in v)],
    ['prevResult', (v) => typeof v === 'object' && v !== null && !Array.isArray(v)],
    ['cni.dev/valid-attachments', (v) => Array.isArray(v) && v.length === 0],
    ['cni.dev/attachments', (v) => Array.isArray(v) && v.length === 0],
  ]
  for (const [key, valid] of keys) {
    for (const [value, what] of WRONG_TYPES) {
      if (valid(value)) continue
      // A wrong cniVersion may be called unsupported (1) or invalid (7); VERSION answers anyway.
      if (key === 'cniVersion') out.push(keyFault(key, value, what, [1, 7], { msgIncludes: 'cniVersion' }))
      // The older GC key is not read when the newer one is there (GC's baseline has it).
      else if (key === 'cni.dev/attachments') out.push(keyFault(key, value, what, [7], { msgIncludes: key, verdict: (verb) => (verb === 'VERSION' ? 'ignored' : verb === 'GC' ? [-1, 7] : [7]) }))
      else out.push(keyFault(key, value, what, [7], { msgIncludes: key }))
    }
    // null for an optional key: absent to some readers, wrong to others.
    if (!['cniVersion', 'name', 'ranges'].includes(key)) out.push(keyFault(key, null, 'null', [-1, 7], { msgIncludes: undefined, verdict: configRefused([-1, 7]) }))
  }
  // Wrong types one level down.
  out.push(keyFault('dns', { nameservers: 'x' }, 'nameservers not an array', [7], { msgIncludes: 'dns' }))
  out.push(keyFault('dns', { search: [1] }, 'search of numbers', [7], { msgIncludes: 'dns' }))
  out.push(keyFault('dns', { domain: {} }, 'domain an object', [7], { msgIncludes: 'dns' }))
  out.push(keyFault('runtimeConfig', { ips: 'x' }, 'ips not an array', [7], { msgIncludes: 'runtimeConfig' }))
  out.push(keyFault('runtimeConfig', { ips: ['not-an-ip'] }, 'ips not addresses', [7], { msgIncludes: 'runtimeConfig' }))
  out.push(keyFault('cni.dev/valid-attachments', [{ containerID: 1, ifname: 'eth0' }], 'containerID a number', [7], { msgIncludes: 'valid-attachments' }))
  out.push(keyFault('cni.dev/valid-attachments', ['x'], 'entries not objects', [7], { msgIncludes: 'valid-attachments' }))
  out.push(keyFault('mtu', 67, 'below 68', [7], { msgIncludes: 'mtu' }))
  out.push(keyFault('mtu', 65536, 'above 65535', [7], { msgIncludes: 'mtu' }))
  out.push(keyFault('mtu', '1500', 'a numeric string', [7], { msgIncludes: 'mtu' }))
  out.push(keyFault('mtu', 1e308, '1e308', [7], { msgIncludes: 'mtu' }))
  out.push(keyFault('dataDir', 'var/lib/cni', 'relative', [7], { msgIncludes: 'dataDir' }))
  out.push(keyFault('dataDir', '/x\0y', 'NUL byte', [7], { msgIncludes: 'dataDir' }))
  out.push(keyFault('logFile', 'flatnet.log', 'relative', [7], { msgIncludes: 'logFile' }))
  out.push(keyFault('type', 'ptp', 'another plugin', [7], { msgIncludes: 'type' }))
  return out
}

function missingKeyFaults(): Fault[] {
  const del = (key: string, codes: number[]): Fault => ({
    what: `config "${key}": missing`,
    apply: (c) => {
      delete c.conf[key]
    },
    verdict: configRefused(codes),
    msgIncludes: key,
  })
  return [del('cniVersion', [1, 7]), del('name', [7]), del('ranges', [7]), { ...del('type', []), verdict: () => 'ignored', msgIncludes: undefined, liveOk: true }]
}

function nameFaults(m: string): Fault[] {
  return [
    ['', 'empty'],
    [`../../${m}`, 'path traversal'],
    [`a/../../${m}`, 'inner traversal'],
    ['..', '".."'],
    ['.x', 'leading dot'],
    ['a b', 'space'],
    [`$(touch /tmp/${m})`, 'shell'],
    ['ä', 'unicode'],
    ['x'.repeat(201), '201 bytes'],
    ['x'.repeat(500_000), '500 kB'],
    ['a\0b', 'NUL byte'],
    ['a\nb', 'newline'],
  ].map(([v, what]) => keyFault('name', v, what, [7], { msgIncludes: 'name' }))
}

function versionFaults(): Fault[] {
  const out: Fault[] = []
  for (const v of ['0.2.0', '0.1.0', '2.0.0', '1.1', '1.1.0 ', 'v1.1.0', '1.1.0\0', '9'.repeat(1000)]) {
    out.push({
      what: `config "cniVersion": ${JSON.stringify(v.slice(0, 12))}`,
      apply: (c) => {
        c.conf.cniVersion = v
      },
      verdict: configRefused([1]),
      msgIncludes: 'cniVersion',
    })
  }
  // Supported, but too old for the verb (CHECK ≥ 0.4.0, STATUS and GC 1.1.0).
  for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0']) {
    out.push({
      what: `config "cniVersion": ${v} for a verb that may need more`,
      apply: (c) => {
        c.conf.cniVersion = v
      },
      verdict: (verb) => (verb === 'CHECK' && v.startsWith('0.3') ? [1] : verb === 'STATUS' || verb === 'GC' ? [1] : 'ignored'),
      msgIncludes: undefined,
      liveOk: true,
    })
  }
  return out
}

function rangeFaults(): Fault[] {
  const bad: Array<[unknown, string]> = [
    [['10.1.2.0/40'], 'prefix too long'],
    [['10.1.2.0'], 'no prefix'],
    [['10.1.2.3/24'], 'host bits set'],
    [['300.1.1.0/24'], 'octet > 255'],
    [[''], 'empty string'],
    [['abc'], 'not an address'],
    [['10.1.2.0/-1'], 'negative prefix'],
    [['10.1.2.0/'], 'empty prefix'],
    [['10.1.2.0/24/24'], 'two prefixes'],
    [['::/200'], 'IPv6 prefix too long'],
    [['10.1.2.0/31'], '/31'],
    [['10.1.2.1/32'], '/32'],
    [['fd00::/127'], 'IPv6 /127'],
    [['fd00::1/128'], 'IPv6 /128'],
    [['10.1.0.0/16', '10.1.2.0/24'], 'overlapping'],
    [['10.1.2.0/24', '10.1.2.0/24'], 'the same twice'],
    [['10.1.2.0/24', '10.9.2.0/24'], 'two IPv4 ranges'],
    [[], 'empty array'],
    [Array.from({ length: 5000 }, (_, i) => `10.${Math.floor(i / 256)}.${i % 256}.0/24`), '5000 ranges'],
    [['10.1.2.0/24\0'], 'NUL byte'],
    [['fe80::%eth0/64'], 'zone identifier'],
    [[' 10.1.2.0/24'], 'leading space'],
    // IPv6 and dual stack
    [['fd00::1/64'], 'IPv6 host bits set'],
    [['fd00:::/64'], 'IPv6 triple colon'],
    [['fd00::g/64'], 'IPv6 non-hex digit'],
    [['fd00:1:2:3:4:5:6:7:8/64'], 'IPv6 nine groups'],
    [['fd00::/064'], 'IPv6 zero-padded prefix'],
    [['fd00::/'], 'IPv6 empty prefix'],
    [['fd00::/129'], 'IPv6 /129'],
    [['fd00:1::/64', 'fd00:2::/64'], 'two IPv6 ranges'],
    [['fd00:1::/64', 'fd00:1::/80'], 'overlapping IPv6 ranges'],
    [['10.1.2.0/24', 'fd00:1::/64', '10.9.2.0/24'], 'dual plus a second IPv4 range'],
    [['fd00:1::/64', '10.1.2.0/24', 'fd00:9::/64'], 'dual plus a second IPv6 range'],
    [['10.1.2.0/24', 'fd00::1/64'], 'dual, IPv6 host bits set'],
    [['10.1.2.0/24', 'fd00::/127'], 'dual, IPv6 /127'],
    [['fd00::1/128', '10.1.2.0/24'], 'dual, IPv6 /128 first'],
    [['10.1.2.0/24', 'fd00::'], 'dual, IPv6 without a prefix'],
    [['10.1.2.0/24', 12], 'dual, a number'],
  ]
  const odd: Array<[unknown, string]> = [
    [['10.1.2.0/30'], '/30: one pod address'],
    [['fd00:1::/64'], 'IPv6 /64'],
    [['10.1.2.0/25', 'fd00:2::/120'], 'dual stack'],
    [['fd00:2::/120', '10.1.2.0/25'], 'dual stack, IPv6 first'],
    [['fd00:2::/64', '10.1.2.0/24'], 'dual stack, IPv6 /64 first'],
    [['fd00::/126'], 'IPv6 /126: two pod addresses'],
    [['FD00:3::/64'], 'IPv6 in capitals'],
    [['0.0.0.0/0'], '0.0.0.0/0'],
  ]
  return [
    ...bad.map(([v, what]) => keyFault('ranges', v, what, [7], { msgIncludes: 'ranges' })),
    ...odd.map(([v, what]) => keyFault('ranges', v, `valid: ${what}`, [], { verdict: () => 'ignored', msgIncludes: undefined })),
  ]
}

function requestedIpFaults(ctx: FuzzContext): Fault[] {
  const gateway = ctx.range.replace(/0\/24$/, '1')
  const single = [
    ['192.0.2.9/24', 'outside the range'],
    [`${gateway}/24`, 'the gateway'],
    ['fd00::9/64', 'IPv6 without an IPv6 range'],
  ]
  // Dual stack: the config gains an IPv6 range, and the request is wrong for it.
  const dual = (what: string, ips: string[]): Fault => ({
    what: `config "runtimeConfig.ips" (dual stack): ${what}`,
    apply: (c: Draft) => {
      c.conf.ranges = [ctx.range, 'fd00:f0::/64']
      c.conf.runtimeConfig = { ips }
    },
    verdict: (verb: Verb): Verdict => (verb === 'ADD' ? [7, 101] : 'ignored'),
    liveOnly: true,
    liveOk: true,
  })
  return [
    ...single.map(([ip, what]) => ({
      what: `config "runtimeConfig.ips": ${what}`,
      apply: (c: Draft) => {
        c.conf.runtimeConfig = { ips: [ip] }
      },
      verdict: (verb: Verb): Verdict => (verb === 'ADD' ? [7, 101] : 'ignored'),
      liveOnly: true,
      liveOk: true,
    })),
    dual('two IPv6 addresses', ['fd00:f0::5', 'fd00:f0::6']),
    dual('IPv6 address outside the IPv6 range', ['fd00:f1::5']),
    dual('the IPv6 gateway', ['fd00:f0::1']),
    dual('the IPv6 range address itself', ['fd00:f0::']),
  ]
}

const rawFault = (f: Fault): Fault => ({ ...f, raw: true })

function unknownKeyFaults(rng: Rng): Fault[] {
  const nested = (depth: number, open: string, close: string) => open.repeat(depth) + close.repeat(depth)
  const valid = (what: string, apply: (c: Draft) => void): Fault => ({ what: `config: ${what}`, apply, verdict: () => 'ignored', liveOk: true })
  return [
    valid('unknown keys', (c) => {
      c.conf.ipam = { type: 'host-local' }
      c.conf.capabilities = { portMappings: true }
      c.conf.foo = [null, 1, 'x']
    }),
    valid('unknown key with a random value', (c) => {
      c.conf[`k${Math.floor(rng() * 1e6)}`] = rng() < 0.5 ? { a: [rng()] } : 'ü😀'
    }),
    rawFault(
      valid('an unknown key nested 100 000 deep (arrays)', (c) => {
        c.raw = JSON.stringify(c.conf).replace(/^\{/, `{"deep":${nested(100_000, '[', ']')},`)
      }),
    ),
    rawFault(
      valid('an unknown key nested 50 000 deep (objects)', (c) => {
        c.raw = JSON.stringify(c.conf).replace(/^\{/, `{"deep":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)},`)
      }),
    ),
    rawFault(
      valid('just under 1 MiB', (c) => {
        const text = JSON.stringify(c.conf)
        c.raw = text.replace(/^\{/, `{"pad":"${'x'.repeat(MIB - text.length - 20)}",`)
      }),
    ),
    valid('args and runtimeConfig of other capabilities', (c) => {
      c.conf.args = { cni: { labels: [{ key: 'a', value: 'b' }] } }
      c.conf.runtimeConfig = { portMappings: [{ hostPort: 80 }], bandwidth: {} }
    }),
    valid('escaped NUL and unicode in an unknown key', (c) => {
      c.conf['\u0000x'] = '\u0000\ud83d\ude00'
    }),
    {
      ...valid('prevResult of another shape', (c) => {
        c.conf.prevResult = { foo: 1 }
      }),
      verdict: (verb) => (verb === 'CHECK' ? [7] : 'ignored'),
      msgIncludes: 'prevResult',
    },
    keyFault('ranges', [nested(10_000, '[', ']')], 'nested 10 000 deep inside a known key', [7], {
      msgIncludes: 'ranges',
      raw: true,
      apply: (c) => {
        c.raw = JSON.stringify(c.conf).replace(/"ranges":\[[^\]]*\]/, `"ranges":${nested(10_000, '[', ']')}`)
      },
    }),
    keyFault('dns', {}, 'nested 10 000 deep inside a known key', [7], {
      msgIncludes: 'dns',
      raw: true,
      apply: (c) => {
        c.raw = JSON.stringify(c.conf).replace(/^\{/, `{"dns":{"nameservers":${nested(10_000, '[', ']')}},`)
      },
    }),
  ]
}

function textFaults(rng: Rng): Fault[] {
  const decode = (what: string, apply: (c: Draft) => void): Fault => ({ what: `stdin: ${what}`, raw: true, apply, verdict: (verb) => (verb === 'VERSION' && what === 'empty' ? 'ignored' : [6]) })
  return [
    decode('empty', (c) => {
      c.raw = ''
    }),
    decode('whitespace', (c) => {
      c.raw = ' \n\t '
    }),
    decode('null', (c) => {
      c.raw = 'null'
    }),
    decode('an array', (c) => {
      c.raw = '[]'
    }),
    decode('a string', (c) => {
      c.raw = '"x"'
    }),
    decode('a number', (c) => {
      c.raw = '42'
    }),
    decode('over 1 MiB', (c) => {
      const text = JSON.stringify(c.conf)
      c.raw = text.replace(/^\{/, `{"pad":"${'x'.repeat(MIB + 10 - text.length)}",`)
    }),
    decode('over 1 MiB of spaces', (c) => {
      c.raw = JSON.stringify(c.conf) + ' '.repeat(MIB)
    }),
    decode('2 MiB of "["', (c) => {
      c.raw = Buffer.alloc(2 * MIB, 0x5b)
    }),
    decode('a raw NUL byte', (c) => {
      const text = JSON.stringify(c.conf)
      c.raw = text.slice(0, 10) + '\0' + text.slice(10)
    }),
    decode('a BOM', (c) => {
      c.raw = '\ufeff' + JSON.stringify(c.conf)
    }),
    decode('truncated', (c) => {
      const text = JSON.stringify(c.conf)
      c.raw = text.slice(0, Math.floor(rng() * (text.length - 1)))
    }),
    decode('trailing comma', (c) => {
      c.raw = JSON.stringify(c.conf).replace(/\}$/, ',}')
    }),
    decode('single quotes', (c) => {
      c.raw = JSON.stringify(c.conf).replace(/"/g, "'")
    }),
    decode('a comment', (c) => {
      c.raw = '// flatnet\n' + JSON.stringify(c.conf)
    }),
    decode('NaN', (c) => {
      c.raw = JSON.stringify(c.conf).replace(/^\{/, '{"x":NaN,')
    }),
    decode('two documents', (c) => {
      c.raw = JSON.stringify(c.conf) + JSON.stringify(c.conf)
    }),
    decode('unclosed nesting 200 000 deep', (c) => {
      c.raw = '['.repeat(200_000)
    }),
    decode('invalid UTF-8 outside a string', (c) => {
      c.raw = Buffer.concat([Buffer.from('{'), Buffer.from([0xff, 0xfe]), Buffer.from(JSON.stringify(c.conf).slice(1))])
    }),
    // Random damage: its verdict is decided by JSON.parse when the case is built (see finish()).
    // The dataDir value is spared: damage there can leave valid JSON naming another directory,
    // which the plugin then rightly creates — outside the test's temp root, never cleaned up.
    {
      what: 'stdin: random byte damage',
      raw: true,
      apply: (c) => {
        c.raw = damage(rng, JSON.stringify(c.conf), JSON.stringify(c.conf.dataDir))
      },
      verdict: () => [6],
    },
  ]
}

function damage(rng: Rng, text: string, spare?: string): Buffer {
  const bytes = Buffer.from(text)
  const at = spare ? bytes.indexOf(spare) : -1
  const spared = (i: number) => at >= 0 && i >= at && i < at + Buffer.byteLength(spare!)
  const n = 1 + Math.floor(rng() * 4)
  for (let i = 0; i < n; i++) {
    let pos = Math.floor(rng() * bytes.length)
    while (spared(pos)) pos = (pos + 1) % bytes.length
    bytes[pos] = Math.floor(rng() * 256)
  }
  return bytes
}

function checkFaults(): Fault[] {
  const prev = (what: string, value: unknown): Fault => ({
    what: `config "prevResult" for CHECK: ${what}`,
    apply: (c) => {
      c.conf.prevResult = value
    },
    verdict: (verb) => (verb === 'CHECK' ? [7] : verb === 'VERSION' ? 'ignored' : typeof value === 'object' && value !== null && !Array.isArray(value) ? 'ignored' : [7]),
    msgIncludes: 'prevResult',
  })
  return [
    {
      ...prev('missing', undefined),
      apply: (c) => {
        delete c.conf.prevResult
      },
      verdict: (verb) => (verb === 'CHECK' ? [7] : 'ignored'),
    },
    prev('no ips', { cniVersion: '1.1.0', interfaces: [] }),
    prev('ips not an array', { ips: 'x' }),
    prev('address without prefix', { ips: [{ address: '10.0.0.2' }] }),
    prev('address a number', { ips: [{ address: 7 }] }),
  ]
}

function gcFaults(): Fault[] {
  return [
    {
      what: 'config "cni.dev/valid-attachments": missing for GC',
      apply: (c) => {
        delete c.conf['cni.dev/valid-attachments']
      },
      verdict: (verb) => (verb === 'GC' ? [7] : 'ignored'),
      msgIncludes: 'valid-attachments',
    },
  ]
}

// ---------------------------------------------------------------------------------------------

function baseline(ctx: FuzzContext, verb: Verb, id: number, live: boolean): Draft {
  const conf: Json = { cniVersion: '1.1.0', name: 'fuzz', type: 'flatnet', ranges: [ctx.range], dataDir: ctx.dataDir, mtu: 1500 }
  if (verb === 'CHECK')
    conf.prevResult = { cniVersion: '1.1.0', interfaces: [{ name: 'eth0', sandbox: ctx.podNetns }], ips: [{ address: ctx.range.replace(/0\/24$/, '2/32'), gateway: ctx.range.replace(/0\/24$/, '1') }] }
  if (verb === 'GC') conf['cni.dev/valid-attachments'] = [{ containerID: `fz-${id}`, ifname: 'eth0' }]
  return {
    verb,
    conf,
    env: {
      CNI_COMMAND: verb,
      CNI_CONTAINERID: `fz-${id}`,
      CNI_NETNS: live ? ctx.podNetns : ctx.notNetns.file,
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/opt/cni/bin',
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=fuzz;K8S_POD_NAME=fuzz',
    },
  }
}

/** What the untouched baseline gives: ADD/CHECK end at the not-a-namespace CNI_NETNS (4); live ADD succeeds. */
function baselineOutcome(verb: Verb, live: boolean): number[] {
  if (verb === 'ADD') return live ? [0] : [4]
  if (verb === 'CHECK') return [4]
  return [0]
}

function allFaults(rng: Rng, ctx: FuzzContext): Fault[] {
  return [
    ...commandFaults(),
    ...containerIdFaults(ctx.marker),
    ...ifnameFaults(ctx.marker),
    ...netnsFaults(ctx),
    ...argsFaults(ctx),
    ...pathFaults(),
    ...wrongTypeFaults(),
    ...missingKeyFaults(),
    ...nameFaults(ctx.marker),
    ...versionFaults(),
    ...rangeFaults(),
    ...requestedIpFaults(ctx),
    ...unknownKeyFaults(rng),
    ...textFaults(rng),
    ...checkFaults(),
    ...gcFaults(),
  ]
}

const VERB_WEIGHTS: Array<[Verb, number]> = [
  ['ADD', 50],
  ['DEL', 12],
  ['CHECK', 10],
  ['STATUS', 10],
  ['GC', 10],
  ['VERSION', 8],
]

function pickVerb(rng: Rng): Verb {
  let x = rng() * 100
  for (const [verb, w] of VERB_WEIGHTS) {
    if ((x -= w) < 0) return verb
  }
  return 'ADD'
}

/** Is the stdin a JSON object VERSION could read? (VERSION refuses only undecodable input.) */
function decodes(raw: Buffer): boolean {
  if (raw.length > MIB) return false
  try {
    const v = JSON.parse(raw.toString('utf8'))
    return typeof v === 'object' && v !== null && !Array.isArray(v)
  } catch {
    return false
  }
}

function finish(id: number, d: Draft, faults: Fault[], live: boolean): FuzzCase {
  const raw = d.raw === undefined ? Buffer.from(JSON.stringify(d.conf)) : Buffer.isBuffer(d.raw) ? d.raw : Buffer.from(d.raw, 'utf8')
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(d.env)) if (v !== undefined) env[k] = v
  const verbValid = env.CNI_COMMAND === d.verb
  let expect: number[]
  let msgIncludes: string | undefined
  const verdicts = faults.map((f) => ({ f, v: f.verdict(d.verb) }))
  const applying = verdicts.filter((x) => x.v !== 'ignored')
  if (!verbValid) {
    expect = [4]
    msgIncludes = 'CNI_COMMAND'
  } else if (d.verb === 'VERSION') {
    // VERSION reads stdin only if there is some; undecodable stdin is its only error.
    expect = raw.toString('utf8').trim() === '' || decodes(raw) ? [0] : [6]
  } else if (!decodes(raw)) {
    expect = [6]
  } else if (applying.length === 0) {
    expect = baselineOutcome(d.verb, live)
  } else {
    // Each applying fault may be the one reported; -1 means "as if the fault were not there".
    const codes = new Set<number>()
    for (const { v } of applying) for (const c of v as number[]) (c === -1 ? baselineOutcome(d.verb, live) : [c]).forEach((x) => codes.add(x))
    // A fault whose damage happened to leave valid JSON behind (random bytes) cannot promise a
    // decode error; it may then be refused anywhere later.
    if (faults.some((f) => f.what === 'stdin: random byte damage')) [1, 4, 7, ...baselineOutcome(d.verb, live)].forEach((x) => codes.add(x))
    expect = [...codes].sort((a, b) => a - b)
    if (applying.length === 1 && !expect.includes(0)) msgIncludes = applying[0].f.msgIncludes
  }
  const binaryOk = Object.values(env).every((v) => !v.includes('\0') && Buffer.byteLength(v) < MAX_ENV_STRING - 64)
  return { id, what: faults.map((f) => f.what).join(' + ') || 'baseline', env, stdin: b64(raw), expect, msgIncludes, binaryOk, live }
}

/**
 * `count` cases from `seed`: first every fault once (each on a verb that looks at it, so the
 * list is covered whatever the count), then random verbs with one or two random faults.
 */
export function generateFuzzCases(seed: number, count: number, ctx: FuzzContext, opts: { liveShare?: number } = {}): FuzzCase[] {
  const rng = seededRandom(seed)
  const faults = allFaults(rng, ctx)
  const liveShare = opts.liveShare ?? 0.05
  const cases: FuzzCase[] = []
  const make = (verb: Verb, chosen: Fault[], live: boolean) => {
    const id = cases.length
    const d = baseline(ctx, verb, id, live)
    for (const f of [...chosen.filter((f) => !f.raw), ...chosen.filter((f) => f.raw)]) f.apply(d)
    cases.push(finish(id, d, chosen, live))
  }
  for (const f of faults) {
    if (cases.length >= count) break
    if (f.liveOnly) {
      make('ADD', [f], true)
      continue
    }
    const verbs = (['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const).filter((v) => f.verdict(v) !== 'ignored')
    make(verbs.length ? pick(rng, verbs) : 'ADD', [f], false)
  }
  // The interface already exists in a real pod: 102, and nothing of it touched.
  if (cases.length < count) {
    const id = cases.length
    const d = baseline(ctx, 'ADD', id, true)
    d.env.CNI_NETNS = ctx.busyPodNetns
    cases.push({ ...finish(id, d, [], true), what: 'env CNI_NETNS: a pod whose eth0 already exists', expect: [102], msgIncludes: 'eth0' })
  }
  const liveFaults = faults.filter((f) => f.liveOk)
  // What each fault touches, found by applying it to a baseline that has every optional key:
  // two faults on one variable or key would overwrite each other, so they never go together.
  const touches = new Map<Fault, Set<string>>()
  for (const f of faults) {
    const probe = baseline(ctx, 'CHECK', 0, false)
    probe.conf['cni.dev/valid-attachments'] = []
    const env0 = { ...probe.env }
    const conf0 = Object.fromEntries(Object.entries(probe.conf).map(([k, v]) => [k, JSON.stringify(v)]))
    f.apply(probe)
    const touched = new Set<string>()
    for (const k of new Set([...Object.keys(env0), ...Object.keys(probe.env)])) if (env0[k] !== probe.env[k]) touched.add(`env ${k}`)
    for (const k of new Set([...Object.keys(conf0), ...Object.keys(probe.conf)])) if (conf0[k] !== JSON.stringify(probe.conf[k])) touched.add(`conf ${k}`)
    if (probe.raw !== undefined || f.raw) touched.add('stdin text')
    touches.set(f, touched)
  }
  const clash = (a: Fault, b: Fault) => [...(touches.get(a) ?? [])].some((k) => touches.get(b)?.has(k))
  while (cases.length < count) {
    if (rng() < liveShare) {
      make('ADD', [pick(rng, liveFaults)], true)
      continue
    }
    const chosen = [
      pick(
        rng,
        faults.filter((f) => !f.liveOnly),
      ),
    ]
    if (rng() < 0.3) {
      const second = pick(
        rng,
        faults.filter((f) => !f.liveOnly),
      )
      // Two faults on the same variable or key overwrite each other: keep one.
      if (second !== chosen[0] && !clash(second, chosen[0])) chosen.push(second)
    }
    make(pickVerb(rng), chosen, false)
  }
  return cases
}
