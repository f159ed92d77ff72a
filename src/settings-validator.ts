/**
 * The Ajv validator of the settings schema: coerces the environment's strings, fills defaults,
 * drops unknown variables and reports every bad one. `npm run build` compiles it ahead of time into
 * dist/settings-validator.generated.cjs (Ajv's standalone code), so a process of the built service
 * loads a plain function instead of building an Ajv instance and compiling ~60 properties, which
 * was a fifth of every process's start-up. Without that file (tsx, tests on src/) it compiles here.
 */
import { createRequire } from 'node:module';

/** Ajv options for the settings: the same as env-schema's (which this replaces). */
export const SETTINGS_AJV_OPTIONS = {
  allErrors: true,
  removeAdditional: true,
  useDefaults: true,
  coerceTypes: true,
  allowUnionTypes: true,
  addUsedSchema: false,
} as const;

/** Written by scripts/build.ts next to the compiled settings module. */
export const PRECOMPILED_VALIDATOR_FILE = 'settings-validator.generated.cjs';

export interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
}

/** Validates (and coerces, in place) the variables; `errors` names what failed. */
export type SettingsValidator = ((data: Record<string, unknown>) => boolean) & { errors?: AjvError[] | null };

/** The schema as validated: variables it does not declare are removed, not refused. */
export function validatedSchema(schema: object): object {
  return { ...structuredClone(schema), additionalProperties: false };
}

const require = createRequire(import.meta.url);
let validator: SettingsValidator | undefined;

export function settingsValidator(schema: object): SettingsValidator {
  if (validator) return validator;
  try {
    validator = require(`./${PRECOMPILED_VALIDATOR_FILE}`) as SettingsValidator;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
    const { default: Ajv } = require('ajv') as typeof import('ajv');
    validator = new Ajv(SETTINGS_AJV_OPTIONS).compile(validatedSchema(schema)) as SettingsValidator;
  }
  return validator;
}
