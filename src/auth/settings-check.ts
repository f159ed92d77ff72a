import type { SettingProblem } from '../settings-errors.js';

/** The subset of settings the check reads (settings.ts imports this module, so no import back). */
interface AuthSettings {
  AUTH_SECRET: string;
  AUTH_PREVIOUS_SECRET: string;
  FIRST_USER_EMAIL: string;
  FIRST_USER_PASSWORD: string;
}

export const MIN_SECRET_LENGTH = 32;
export const MIN_PRODUCTION_PASSWORD_LENGTH = 12;

/** Keys that are plainly not secret: one repeated character, or a well-known placeholder. */
function weakness(secret: string): string | undefined {
  if (secret.length < MIN_SECRET_LENGTH) return `is shorter than ${MIN_SECRET_LENGTH} characters`;
  if (new Set(secret).size < 8) return 'has fewer than 8 distinct characters';
  if (/change.?me|secret|example|password/i.test(secret)) return 'looks like a placeholder';
  return undefined;
}

const EXPECTED_SECRET = `${MIN_SECRET_LENGTH}+ random characters, e.g. \`openssl rand -base64 48\``;

/**
 * Only a process that signs tokens (the HTTP server) needs the key, so only there is a missing key an
 * error in production: task workers and migrations run without it.
 */
export function checkAuthSettings(
  settings: AuthSettings,
  production: boolean,
  signsTokens: boolean,
): SettingProblem[] {
  const problems: SettingProblem[] = [];
  if (settings.AUTH_SECRET === '') {
    if (production && signsTokens)
      problems.push({
        name: 'AUTH_SECRET',
        value: undefined,
        problem:
          'is not set (nor AUTH_SECRET_FILE), and NODE_ENV=production never signs tokens with the development key',
        expected: EXPECTED_SECRET,
      });
  } else {
    const weak = weakness(settings.AUTH_SECRET);
    if (weak && production)
      problems.push({
        name: 'AUTH_SECRET',
        value: settings.AUTH_SECRET,
        problem: weak,
        expected: EXPECTED_SECRET,
      });
    else if (settings.AUTH_SECRET.length < MIN_SECRET_LENGTH)
      problems.push({
        name: 'AUTH_SECRET',
        value: settings.AUTH_SECRET,
        problem: `is shorter than ${MIN_SECRET_LENGTH} characters`,
        expected: EXPECTED_SECRET,
      });
  }
  if (settings.AUTH_PREVIOUS_SECRET !== '') {
    const weak = weakness(settings.AUTH_PREVIOUS_SECRET);
    if (weak && (production || settings.AUTH_PREVIOUS_SECRET.length < MIN_SECRET_LENGTH))
      problems.push({
        name: 'AUTH_PREVIOUS_SECRET',
        value: settings.AUTH_PREVIOUS_SECRET,
        problem: weak,
        expected: `the former AUTH_SECRET (${MIN_SECRET_LENGTH}+ characters), or empty`,
      });
  }
  if ((settings.FIRST_USER_EMAIL === '') !== (settings.FIRST_USER_PASSWORD === '')) {
    problems.push({
      name: settings.FIRST_USER_EMAIL ? 'FIRST_USER_PASSWORD' : 'FIRST_USER_EMAIL',
      value: undefined,
      problem: 'is empty while the other first-user setting is set',
      expected: 'both FIRST_USER_EMAIL and FIRST_USER_PASSWORD, or neither',
    });
  } else if (settings.FIRST_USER_EMAIL !== '' && !EMAIL.test(settings.FIRST_USER_EMAIL)) {
    problems.push({
      name: 'FIRST_USER_EMAIL',
      value: settings.FIRST_USER_EMAIL,
      problem: 'is not an email address',
      expected: 'an address such as admin@example.com',
    });
  } else if (production && settings.FIRST_USER_PASSWORD.length > 0) {
    if (settings.FIRST_USER_PASSWORD.length < MIN_PRODUCTION_PASSWORD_LENGTH)
      problems.push({
        name: 'FIRST_USER_PASSWORD',
        value: settings.FIRST_USER_PASSWORD,
        problem: `is shorter than ${MIN_PRODUCTION_PASSWORD_LENGTH} characters, which NODE_ENV=production refuses`,
        expected: `a password of ${MIN_PRODUCTION_PASSWORD_LENGTH} or more characters`,
      });
  }
  return problems;
}

/** Deliberately loose (one @, something either side, a dot in the domain): the mailbox decides the rest. */
export const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
