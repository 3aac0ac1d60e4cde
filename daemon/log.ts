// The daemon's logger: pino JSON lines on stdout (a daemon's stdout belongs to its supervisor;
// the plugin is the one that must keep stdout clean), ISO times, the node name on every line.
import { pino, type Logger } from 'pino'
import type { LogLevel } from '../conf/daemonConfig.js'

export type { Logger }

export function createLogger(level: LogLevel, node?: string): Logger {
  return pino({
    name: 'flatnetd',
    level,
    base: node ? { node } : {},
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  })
}

/** An error as a log field: its message (which names the operation and object) and its kind, if any. */
export function errField(e: unknown): { message: string; kind?: string } {
  const err = e instanceof Error ? e : new Error(String(e))
  const kind = (err as { kind?: unknown }).kind
  return typeof kind === 'string' ? { message: err.message, kind } : { message: err.message }
}
