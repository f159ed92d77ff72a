import { type Logger, type LoggerOptions, pino } from 'pino';
import type { Settings } from './settings.js';

/** Header and field paths whose values never reach a log line. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'password',
  '*.password',
  '*.*.password',
  'body.password',
];

/** Fields added to every line, e.g. the active span's trace_id and span_id when tracing is on. */
export type LogFields = () => Record<string, unknown>;

/**
 * pino's isoTime, formatted once per millisecond instead of once per line: under load many lines
 * share a millisecond, and Date#toISOString was a visible share of a request's cost.
 */
let lastMs = 0;
let lastTime = '';
export function isoTime(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}

export function loggerOptions(
  settings: Pick<Settings, 'LOG_LEVEL' | 'NODE_ENV'>,
  base: object = {},
  fields?: LogFields,
): LoggerOptions {
  // Pretty output only for a human at a terminal; machines (files, pipes, containers) get JSON.
  const pretty = process.stdout.isTTY === true && settings.NODE_ENV !== 'production';
  return {
    level: settings.LOG_LEVEL,
    base: { pid: process.pid, ...base },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: isoTime,
    ...(fields ? { mixin: fields } : {}),
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } } } : {}),
  };
}

export function createLogger(
  settings: Pick<Settings, 'LOG_LEVEL' | 'NODE_ENV'>,
  base: object = {},
  fields?: LogFields,
): Logger {
  return pino(loggerOptions(settings, base, fields));
}
