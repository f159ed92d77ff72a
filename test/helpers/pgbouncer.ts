/**
 * A real PgBouncer (Debian's) on a private port, transaction pooling, in front of the test
 * PostgreSQL. It runs as the `postgres` user (PgBouncer refuses root) and trusts its users, as the
 * machine's PostgreSQL does on 127.0.0.1.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from './cluster.js';
import { freePort, portOpen } from './process.js';

export interface PgBouncer {
  port: number;
  /** The same database URL, through PgBouncer. */
  urlFor(databaseUrl: string): string;
  /** Stop it (SIGTERM: immediate shutdown, every client connection cut) and wait until the port is free. */
  stop(): Promise<void>;
  /** Start it again on the same port. */
  start(): Promise<void>;
  /** The last lines of its log, for failure messages. */
  log(): string;
  /** Stop it and delete its folder. */
  remove(): Promise<void>;
}

export interface PgBouncerOptions {
  defaultPoolSize: number;
  maxClientConnections?: number;
}

export async function startPgBouncer(upstreamUrl: string, options: PgBouncerOptions): Promise<PgBouncer> {
  const upstream = new URL(upstreamUrl);
  const user = decodeURIComponent(upstream.username || 'postgres');
  const dir = mkdtempSync(join(tmpdir(), 'pgbouncer-'));
  chmodSync(dir, 0o777);
  const port = await freePort();
  const logFile = join(dir, 'pgbouncer.log');
  const config = join(dir, 'pgbouncer.ini');
  // Clients get in without a password (trust); PgBouncer logs in to the server with this one (the
  // embedded PostgreSQL of a plain `make test` has one, the machine's trust server ignores it).
  const password = decodeURIComponent(upstream.password).replaceAll('"', '""');
  writeFileSync(join(dir, 'userlist.txt'), `"${user}" "${password}"\n`);
  writeFileSync(
    config,
    [
      '[databases]',
      // Any database name the client asks for, on the upstream server.
      `* = host=${upstream.hostname} port=${upstream.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${options.defaultPoolSize}`,
      'min_pool_size = 0',
      'reserve_pool_size = 0',
      `max_client_conn = ${options.maxClientConnections ?? 500}`,
      // node-postgres sends it on every connection; PgBouncer would refuse the connection otherwise.
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${logFile}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;
  const bouncer: PgBouncer = {
    port,
    urlFor(databaseUrl) {
      const url = new URL(databaseUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    async start() {
      child = spawn('pgbouncer', ['-u', 'postgres', config], { stdio: 'ignore' });
      await until(() => portOpen(port), 10_000, `PgBouncer on port ${port}`);
    },
    async stop() {
      const running = child;
      if (!running || running.exitCode !== null || running.signalCode !== null) return;
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGTERM');
      await exited;
    },
    log: () => {
      try {
        return execFileSync('tail', ['-n', '30', logFile], { encoding: 'utf8' });
      } catch {
        return '';
      }
    },
    async remove() {
      await bouncer.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await bouncer.start();
  return bouncer;
}
