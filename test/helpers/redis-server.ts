import { type ChildProcess, spawn } from 'node:child_process';
import { freePort, portOpen } from './process.js';

export interface RedisServer {
  url: string;
  /** Stop it (SIGTERM) and wait for its exit; a no-op when it is not running. */
  stop(): Promise<void>;
  /** Start it again on the same port (empty: no persistence). */
  start(): Promise<void>;
}

/**
 * A Redis of the test's own (Debian's redis-server) on a free port, for settings the shared Redis
 * must keep (its maxmemory-policy, say) or for an outage the test makes. No persistence; stopped by the test.
 */
export async function startRedisServer(args: string[] = []): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const server: RedisServer = {
    url: `redis://127.0.0.1:${port}`,
    start: async () => {
      const started = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args],
        { stdio: 'ignore' },
      );
      child = started;
      const deadline = Date.now() + 15_000;
      while (!(await portOpen(port))) {
        if (Date.now() > deadline || started.exitCode !== null)
          throw new Error(`redis-server on ${port} did not start`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    stop: async () => {
      const running = child;
      if (!running || running.exitCode !== null || running.signalCode !== null) return;
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGTERM');
      await exited;
    },
  };
  await server.start();
  return server;
}
