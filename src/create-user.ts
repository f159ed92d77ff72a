/**
 * `node dist/create-user.js <email>` (`make user EMAIL=...`): create a user who can sign in. The
 * password is read from stdin (one line: typed at the prompt, or piped), never from the command line,
 * where `ps` and shell history would show it. Uses DATABASE_URL (or the embedded development database).
 */
import { createInterface } from 'node:readline/promises';
import { MIN_PASSWORD_LENGTH } from './auth/passwords.js';
import { EMAIL } from './auth/settings-check.js';
import { UserRepository } from './auth/users.js';
import { createPool } from './db/pool.js';
import { prepareDatabase } from './db/prepare.js';
import { createLogger } from './logger.js';
import { loadSettingsOrExit } from './runtime/startup.js';

const settings = loadSettingsOrExit();
const logger = createLogger(settings);
const email = process.argv[2] ?? '';

async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write(`Password for ${email}: `);
  const lines = createInterface({ input: process.stdin, terminal: false });
  for await (const line of lines) {
    lines.close();
    return line;
  }
  return '';
}

if (!EMAIL.test(email)) {
  logger.fatal({ email }, 'usage: node dist/create-user.js <email> (password on stdin)');
  process.exit(2);
}
const password = await readPassword();
if (password.length < MIN_PASSWORD_LENGTH) {
  logger.fatal(`the password must have at least ${MIN_PASSWORD_LENGTH} characters`);
  process.exit(2);
}
const database = await prepareDatabase(settings, logger);
const pool = createPool(
  {
    connectionString: database.url,
    size: 1,
    connectTimeoutMs: settings.DB_CONNECT_TIMEOUT_MS,
  },
  logger,
);
try {
  const created = await new UserRepository(pool).createIfMissing(email, password);
  logger.info({ email, created }, created ? 'user created' : 'a user with this email exists: unchanged');
  process.exitCode = created ? 0 : 1;
} catch (error) {
  logger.fatal({ err: (error as Error).message }, 'user not created');
  process.exitCode = 1;
} finally {
  await pool.end();
  await database.stop();
}
