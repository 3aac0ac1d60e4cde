// One error class for the pod address store, with a kind the plugin maps to a CNI error code.

/**
 * - `exhausted`: the range has no free address.
 * - `unavailable`: a requested address is held by someone else.
 * - `invalid`: bad input (address outside the range, the gateway, malformed attachment), or a
 *   corrupt record found on disk (reported, never thrown by reserve/release).
 * - `io`: the filesystem refused (EACCES, EROFS, ENOSPC, …); `code` carries the errno name.
 */
export type IpamErrorKind = 'exhausted' | 'unavailable' | 'invalid' | 'io'

export class IpamError extends Error {
  override name = 'IpamError'
  readonly kind: IpamErrorKind
  /** The errno name (`EROFS`, …) for kind `io`. */
  readonly code: string | undefined

  constructor(kind: IpamErrorKind, message: string, options?: { cause?: unknown; code?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.kind = kind
    this.code = options?.code
  }
}

export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code
  return undefined
}

/** Wraps a filesystem failure as `<what was attempted>: <ERRNO>: <system message>`. */
export function ioError(attempt: string, err: unknown): IpamError {
  if (err instanceof IpamError) return err
  const code = errnoCode(err)
  // Node's message already starts with the code and names the syscall and path; keep the part
  // before the path so the operator sees our (shorter) description of the object.
  const detail = err instanceof Error ? err.message.replace(/, \w+ '.*'$/, '') : String(err)
  return new IpamError('io', `${attempt}: ${detail}`, { cause: err, code })
}
