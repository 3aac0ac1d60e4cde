// The plugin's log: JSON lines appended to the configured file (conf "logFile" or
// FLATNET_LOG_FILE), never stdout — stdout belongs to the CNI result. Errors also go to stderr,
// which runtimes copy into their own logs. Deliberately tiny: no logger library on the hot path.
import { AsyncLocalStorage } from 'node:async_hooks'
import { appendFileSync } from 'node:fs'

/**
 * Where this call's stderr goes. A plugin process writes to its own stderr; flatnetd, running
 * many calls at once for the native entry, gives each call a sink of its own and sends what it
 * collected back with the answer, so the runtime's log gets the same lines on both paths.
 */
export const callStderr = new AsyncLocalStorage<(text: string) => void>()

/** Writes to the current call's stderr. */
export function pluginStderr(text: string): void {
  const sink = callStderr.getStore()
  if (sink) sink(text)
  else process.stderr.write(text)
}

export interface PluginLog {
  info(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  setFile(path: string | undefined): void
}

export function createPluginLog(base: Record<string, unknown>, file = process.env.FLATNET_LOG_FILE): PluginLog {
  let target = file
  const write = (level: string, msg: string, fields?: Record<string, unknown>) => {
    if (!target) return
    try {
      appendFileSync(target, JSON.stringify({ time: new Date().toISOString(), level, msg, ...base, ...fields }) + '\n', { mode: 0o600 })
    } catch {
      // A log that cannot be written must never fail the pod.
    }
  }
  return {
    info: (msg, fields) => write('info', msg, fields),
    error: (msg, fields) => {
      write('error', msg, fields)
      pluginStderr(`flatnet: ${msg}\n`)
    },
    setFile: (path) => {
      if (path) target = path
    },
  }
}
