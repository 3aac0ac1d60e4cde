// The CNI spec versions flatnet speaks — part of the contract between the plugin (which checks
// configs against it) and flatnetd (which picks the conflist's version from it).

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number]
export const LATEST: CniVersion = '1.1.0'

/**
 * The newest version the runtimes flatnet is tested with can read. A runtime's CNI library decodes
 * each plugin's result in the list's cniVersion, and Debian 12's containerd 1.6 (libcni 1.1) knows
 * results up to 1.0.0 only: a 1.1.0 list fails every pod with `unsupported CNI result version
 * "1.1.0"` while the runtime still reports its network ready. So flatnetd writes this unless told
 * otherwise (--cni-version 1.1.0 where the runtime reads it: STATUS and GC need it).
 */
export const WIDEST_READ: CniVersion = '1.0.0'

export function isSupported(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v)
}

/** Orders versions; only called with supported ones. */
export function atLeast(v: CniVersion, min: CniVersion): boolean {
  return SUPPORTED_VERSIONS.indexOf(v) >= SUPPORTED_VERSIONS.indexOf(min)
}

/** The newest version flatnet and a chained plugin both speak, no newer than `ceiling`, if any. */
export function newestCommonVersion(theirs: readonly string[], ceiling: CniVersion = LATEST): CniVersion | undefined {
  return [...SUPPORTED_VERSIONS].reverse().find((v) => atLeast(ceiling, v) && theirs.includes(v))
}
