/**
 * Load for the benchmark scripts: wrk when it is on the PATH (required for `Connection: close`
 * clients), otherwise autocannon (keep-alive only). The same tool for every row of a run.
 */
import { execFileSync, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';

export interface LoadFigures {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  total: number;
}

export interface LoadOptions {
  seconds: number;
  connections: number;
  /** A new TCP connection per request (`Connection: close`), as clients without keep-alive do. */
  close?: boolean;
}

export const hasWrk = (() => {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    return (error as { status?: number }).status === 1; // wrk --version exits 1 but exists
  }
})();

function parseWrkMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!match) return Number.NaN;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
}

export function parseWrk(output: string): LoadFigures {
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const errors =
    Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0) +
    (socketErrors ? socketErrors.slice(1).reduce((sum, value) => sum + Number(value), 0) : 0);
  return {
    requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? 0),
    p50Ms: parseWrkMs(/^\s+50%\s+(\S+)/m.exec(output)?.[1] ?? ''),
    p99Ms: parseWrkMs(/^\s+99%\s+(\S+)/m.exec(output)?.[1] ?? ''),
    errors,
    total: Number(/(\d+) requests in/.exec(output)?.[1] ?? 0),
  };
}

export async function load(url: string, options: LoadOptions): Promise<LoadFigures> {
  if (hasWrk) {
    const args = ['-t2', `-c${options.connections}`, `-d${options.seconds}s`, '--latency'];
    if (options.close) args.push('-H', 'Connection: close');
    const output = await new Promise<string>((done) => {
      const child = spawn('wrk', [...args, url]);
      let text = '';
      child.stdout.on('data', (chunk) => {
        text += chunk;
      });
      child.on('exit', () => done(text));
    });
    return parseWrk(output);
  }
  if (options.close) throw new Error('Connection: close load needs wrk (apt-get install wrk)');
  const result = await autocannon({
    url,
    connections: options.connections,
    duration: options.seconds,
    workers: 1,
  });
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.non2xx + result.timeouts,
    total: result.requests.total,
  };
}

/** Poll until `url` answers 2xx; the time it took. */
export async function waitOk(url: string, timeoutMs = 60_000): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    try {
      const response = await fetch(url, { headers: { connection: 'close' } });
      await response.body?.cancel();
      if (response.ok) return Date.now() - started;
    } catch {}
    await sleep(20);
  }
  throw new Error(`${url} never answered`);
}
