// The kernel's refusal of a netlink request, typed where its answer is decoded (rtnlSocket.ts):
// an NLMSG_ERROR message carries a negative errno, and that number — not a message text — is
// what callers decide on (ENODEV: the link is gone; EEXIST: someone holds the route).
import { getSystemErrorName } from 'node:util'

export class NetlinkError extends Error {
  /** errno name ('EEXIST', 'ENODEV', …), or the number as text when Node does not know it. */
  readonly code: string

  constructor(
    readonly errno: number,
    readonly operation: string,
  ) {
    const code = errnoName(errno)
    super(`${operation}: ${code}`)
    this.code = code
  }

  /** The same refusal, named after the operation the caller was attempting. */
  during(operation: string): NetlinkError {
    return new NetlinkError(this.errno, operation)
  }
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-Math.abs(errno))
  } catch {
    return `errno ${errno}`
  }
}

/** True when `e` is the kernel refusing with this errno name. */
export function isNetlinkErrno(e: unknown, code: string): boolean {
  return e instanceof NetlinkError && e.code === code
}
