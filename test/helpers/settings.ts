import { expect } from 'vitest';
import { loadSettings, type Settings, SettingsError } from '../../src/settings.js';

/** Settings from `env` alone (no .env file read). */
export const loadFromEnv = (env: Record<string, string>): Settings => loadSettings(env, { envFile: null });

/** The SettingsError message `env` is refused with (fails the test when it is accepted). */
export function settingsProblemOf(env: Record<string, string>): string {
  try {
    loadFromEnv(env);
  } catch (error) {
    expect(error).toBeInstanceOf(SettingsError);
    return (error as Error).message;
  }
  throw new Error('expected a SettingsError');
}
