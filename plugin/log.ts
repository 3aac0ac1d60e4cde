// The plugin's log: JSON lines appended to the configured file (conf "logFile" or
// FLATNET_LOG_FILE), never stdout — stdout belongs to the CNI result. Errors also go to stderr,
// which runtimes copy into their own logs. Deliberately tiny: no logger library on the hot path.
import { appendFileSync } from 'node:fs'

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
      process.stderr.write(`flatnet: ${msg}\n`)
    },
    setFile: (path) => {
      if (path) target = path
    },
  }
}
