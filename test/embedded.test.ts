import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, portOpen, type ServerProcess, startProcess, waitForHttp } from './helpers/process.js';
import { signInOverHttp } from './helpers/user.js';

const dataDir = mkdtempSync(join(tmpdir(), 'embedded-pg-'));
const servers: ServerProcess[] = [];

afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop('SIGKILL')));
  rmSync(dataDir, { recursive: true, force: true });
});

async function start(pgPort: number): Promise<ServerProcess> {
  const server = startProcess({
    PORT: String(await freePort()),
    NODE_ENV: 'development',
    EMBEDDED_PG_DIR: dataDir,
    EMBEDDED_PG_PORT: String(pgPort),
  });
  servers.push(server);
  await waitForHttp(`${server.baseUrl}/health/ready`, 90_000);
  return server;
}

describe('embedded PostgreSQL when DATABASE_URL is unset (make run)', () => {
  it('starts a real PostgreSQL, migrates, serves, stops it cleanly, and keeps the data', async () => {
    const pgPort = await freePort();
    const first = await start(pgPort);
    expect(
      first.logs.some((line) => /DATABASE_URL not set: using the embedded PostgreSQL/.test(line.msg ?? '')),
    ).toBe(true);
    const created = await fetch(`${first.baseUrl}/api/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await signInOverHttp(first.baseUrl)) },
      body: JSON.stringify({ name: 'survives restarts' }),
    });
    expect(created.status).toBe(201);
    const location = created.headers.get('location');
    expect(await first.stop()).toEqual({ code: 0, signal: null });
    expect(await portOpen(pgPort)).toBe(false);
    expect(JSON.stringify(first.logs)).not.toContain('postgres:postgres@');

    const second = await start(pgPort);
    const fetched = await fetch(`${second.baseUrl}${location}`);
    expect(fetched.status).toBe(200);
    expect(((await fetched.json()) as { name: string }).name).toBe('survives restarts');
    expect(await second.stop()).toEqual({ code: 0, signal: null });
  }, 240_000); // two PostgreSQL starts, the first with initdb, and two app boots
});
