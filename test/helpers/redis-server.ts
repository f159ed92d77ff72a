import { type ChildProcess, spawn } from 'node:child_process';
import { freePort, portOpen } from './process.js';

/**
 * A Redis of the test's own (Debian's redis-server) on a free port, for settings the shared Redis
 * must keep (its maxmemory-policy, say). No persistence; stopped by the test.
 */
export async function startRedisServer(args: string[] = []): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args],
    { stdio: 'ignore' },
  );
  const deadline = Date.now() + 15_000;
  while (!(await portOpen(port))) {
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`redis-server on ${port} did not start`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}
