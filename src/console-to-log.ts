/**
 * Every line a process writes is one JSON object, so a library's console output (BullMQ warns
 * through console.warn and prints unhandled client errors with console.error) goes through the
 * process's pino logger instead of raw text on stdout or stderr.
 */
import { format } from 'node:util';
import type { Logger } from 'pino';

/**
 * Library messages this project reports better itself: BullMQ's eviction warning comes once per
 * Redis connection; src/redis/eviction-policy.ts checks the same thing once, with the fix.
 */
const REPORTED_ELSEWHERE = [/^IMPORTANT! Eviction policy is /];

export function routeConsoleToLogger(logger: Logger): void {
  const log = logger.child({ source: 'console' });
  const route =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (...args: unknown[]) => {
      const message = format(...args);
      if (REPORTED_ELSEWHERE.some((pattern) => pattern.test(message))) return;
      log[level](message);
    };
  console.log = route('info');
  console.info = route('info');
  console.debug = route('debug');
  console.warn = route('warn');
  console.error = route('error');
  console.trace = route('debug');
}
