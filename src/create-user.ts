/**
 * `node dist/create-user.js <email> [user|admin]` (`make user EMAIL=... ROLE=admin`): create a user who
 * can sign in. Without a role, the first user of the database is an admin and later ones users. The
 * password is read from stdin (one line: typed at the prompt, or piped), never from the command line,
 * where `ps` and shell history would show it. Uses DATABASE_URL (or the embedded development database).
 */
import { createInterface } from 'node:readline/promises';
import { MIN_PASSWORD_LENGTH } from './auth/passwords.js';
import { EMAIL } from './auth/settings-check.js';
import { ROLES, type Role, UserRepository } from './auth/users.js';
import { createPool } from './db/pool.js';
import { prepareDatabase } from './db/prepare.js';
import { createLogger } from './logger.js';
import { loadSettingsOrExit } from './runtime/startup.js';

const settings = loadSettingsOrExit();
const logger = createLogger(settings);
const email = process.argv[2] ?? '';
const role = process.argv[3] || undefined;

async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write(`Password for ${email}: `);
  const lines = createInterface({ input: process.stdin, terminal: false });
  for await (const line of lines) {
    lines.close();
    return line;
  }
  return '';
}

if (!EMAIL.test(email) || (role !== undefined && !ROLES.includes(role as Role))) {
  logger.fatal({ email, role }, 'usage: node dist/create-user.js <email> [user|admin] (password on stdin)');
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
  const created = await new UserRepository(pool).createIfMissing(email, password, role as Role | undefined);
  logger.info(
    { email, role, created },
    created ? 'user created' : 'a user with this email exists: unchanged',
  );
  process.exitCode = created ? 0 : 1;
} catch (error) {
  logger.fatal({ err: (error as Error).message }, 'user not created');
  process.exitCode = 1;
} finally {
  await pool.end();
  await database.stop();
}
