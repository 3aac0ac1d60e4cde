// The CNI spec versions flatnet speaks — part of the contract between the plugin (which checks
// configs against it) and flatnetd (which picks the conflist's version from it).

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number]
export const LATEST: CniVersion = '1.1.0'

export function isSupported(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v)
}

/** Orders versions; only called with supported ones. */
export function atLeast(v: CniVersion, min: CniVersion): boolean {
  return SUPPORTED_VERSIONS.indexOf(v) >= SUPPORTED_VERSIONS.indexOf(min)
}

/** The newest version flatnet and a chained plugin both speak, if any. */
export function newestCommonVersion(theirs: readonly string[]): CniVersion | undefined {
  return [...SUPPORTED_VERSIONS].reverse().find((v) => theirs.includes(v))
}
