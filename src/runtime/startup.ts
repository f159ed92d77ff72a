import { loadSettings, type Settings, SettingsError } from '../settings.js';

/** Exit status for a configuration error (sysexits EX_CONFIG): the platform must not retry blindly. */
export const EXIT_CONFIG = 78;

/** Load settings, or print one line per bad variable to stderr and exit non-zero. */
export function loadSettingsOrExit(options: { signsTokens?: boolean } = {}): Settings {
  try {
    return loadSettings(process.env, { envFile: '.env', ...options });
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(EXIT_CONFIG);
  }
}
