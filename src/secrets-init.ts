/**
 * `node dist/secrets-init.js <file>`: a random AUTH_SECRET for this install, made once. The file is
 * created only when it does not exist yet, so the key survives restarts, `down` and `up`, and every
 * API container signs with the same one. docker-compose.yml runs this in its one-shot `secrets-init`
 * service on a named volume that the API containers mount read-only (AUTH_SECRET_FILE). The key
 * itself is never printed.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pino } from 'pino';
import { isoTime } from './logger.js';

/** 48 random bytes, 64 base64 characters: what `openssl rand -base64 48` gives. */
export const SECRET_BYTES = 48;

/**
 * Create `path` holding a new random key unless it exists. The key is written to a temporary file
 * first and linked into place, which fails when `path` exists: two runs at once, or a run killed
 * half-way, never leave a partial or a second key.
 */
export function ensureSecretFile(path: string): 'created' | 'kept' {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${randomBytes(SECRET_BYTES).toString('base64')}\n`, { mode: 0o400 });
  try {
    linkSync(temporary, path);
    return 'created';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    if (readFileSync(path, 'utf8').trim() === '') throw new Error(`${path} exists but is empty`);
    return 'kept';
  } finally {
    rmSync(temporary, { force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  // JSON lines like every other process; no settings read (this runs before anything else exists).
  const logger = pino({ base: { pid: process.pid, role: 'secrets-init' }, timestamp: isoTime });
  const path = process.argv[2];
  if (!path) {
    logger.fatal('usage: node dist/secrets-init.js <file>');
    process.exit(2);
  }
  try {
    const outcome = ensureSecretFile(path);
    logger.info(
      { file: path, outcome },
      outcome === 'created' ? 'generated a new AUTH_SECRET' : 'AUTH_SECRET exists: kept',
    );
  } catch (error) {
    logger.fatal({ file: path, err: error }, 'could not write AUTH_SECRET');
    process.exit(1);
  }
}
