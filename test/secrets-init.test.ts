/**
 * `node dist/secrets-init.js <file>`, what docker-compose.yml's one-shot secrets-init runs: a random
 * AUTH_SECRET made once and kept, which the API then reads through AUTH_SECRET_FILE.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ensureSecretFile, SECRET_BYTES } from '../src/secrets-init.js';
import { loadSettings } from '../src/settings.js';
import { ROOT } from './helpers/process.js';

const run = promisify(execFile);
const SCRIPT = join(ROOT, 'dist/secrets-init.js');

/** Run the built script; its exit code and its output lines, each parsed as JSON (a non-JSON line fails). */
async function secretsInit(
  ...args: string[]
): Promise<{ code: number; lines: Array<Record<string, unknown>> }> {
  const result = await run(process.execPath, [SCRIPT, ...args]).then(
    (output) => ({ code: 0, ...output }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
  const text = `${result.stdout}${result.stderr}`;
  const lines = text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { code: result.code, lines };
}

describe('ensureSecretFile', () => {
  it('creates a random 48-byte base64 key readable by its owner only, then keeps it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'secrets-'));
    const file = join(dir, 'auth_secret');
    expect(ensureSecretFile(file)).toBe('created');
    const key = readFileSync(file, 'utf8');
    expect(key).toMatch(/^[A-Za-z0-9+/]{64}\n$/);
    expect(Buffer.from(key.trim(), 'base64')).toHaveLength(SECRET_BYTES);
    expect(statSync(file).mode & 0o777).toBe(0o400);
    expect(ensureSecretFile(file)).toBe('kept');
    expect(readFileSync(file, 'utf8')).toBe(key);
    expect(readdirSync(dir)).toEqual(['auth_secret']); // no temporary file left behind
    // Another install gets another key.
    const other = join(dir, 'other');
    ensureSecretFile(other);
    expect(readFileSync(other, 'utf8')).not.toBe(key);
  });

  it('refuses to keep an empty file (the API would refuse it too)', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'secrets-')), 'auth_secret');
    writeFileSync(file, '');
    expect(() => ensureSecretFile(file)).toThrow(/exists but is empty/);
  });
});

describe.skipIf(!existsSync(SCRIPT))('node dist/secrets-init.js', () => {
  it('logs JSON lines only, never the key; a second run keeps the key; the API settings read it', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'secrets-')), 'auth_secret');
    const first = await secretsInit(file);
    expect(first.code).toBe(0);
    expect(first.lines).toMatchObject([{ level: 30, outcome: 'created', file, role: 'secrets-init' }]);
    const key = readFileSync(file, 'utf8').trim();
    const second = await secretsInit(file);
    expect(second.lines).toMatchObject([{ outcome: 'kept', msg: 'AUTH_SECRET exists: kept' }]);
    expect(JSON.stringify([...first.lines, ...second.lines])).not.toContain(key);
    expect(readFileSync(file, 'utf8').trim()).toBe(key);

    // What an API container of docker-compose.yml loads: production, a process that signs tokens.
    const settings = loadSettings(
      {
        NODE_ENV: 'production',
        DATABASE_URL: 'postgres://app:app@postgres:5432/app',
        AUTH_SECRET_FILE: file,
      },
      { envFile: null, signsTokens: true },
    );
    expect(settings.AUTH_SECRET).toBe(key);
  });

  it('fails with exit 1 and one JSON line when the file cannot be written, exit 2 without a path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'secrets-'));
    const failed = await secretsInit(join(dir, 'missing-folder', 'auth_secret'));
    expect(failed.code).toBe(1);
    expect(failed.lines).toMatchObject([{ level: 60, msg: 'could not write AUTH_SECRET' }]);
    const usage = await secretsInit();
    expect(usage.code).toBe(2);
    expect(usage.lines).toMatchObject([{ level: 60 }]);
  });
});
