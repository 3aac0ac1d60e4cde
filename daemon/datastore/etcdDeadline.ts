// One etcd request's deadline, shared by the node store (etcd.ts) and the object store
// (../objects/etcdStore.ts): each maps the failure to its own error kind.

/** `work`, or a rejection once `timeoutMs` + 500 ms have passed without an answer. */
export async function withEtcdDeadline<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    // A little above the gRPC deadline, so gRPC's own, more precise error normally wins.
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs + 500)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}
