// The CNI error contract: one class, the spec's codes, printed as one JSON object on stdout.
// Codes 1–99 are the spec's (SPEC.md "Error"); 100+ are flatnet's own, listed in the README.

export const Code = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  containerUnknown: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  // flatnet's own
  rangeExhausted: 100,
  addressUnavailable: 101,
  interfaceExists: 102,
  checkFailed: 103,
  gcIncomplete: 104,
  podRoutingTaken: 105,
} as const

export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details = '',
  ) {
    super(msg)
  }
}
