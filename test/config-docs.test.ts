import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CONFIG_DOC_PATH,
  ENV_EXAMPLE_PATH,
  renderConfigDoc,
  renderEnvExample,
} from '../scripts/config-docs.js';
import { settingsSchema } from '../src/settings.js';

const schemaNames = Object.keys(settingsSchema.properties).sort();

describe('configuration docs stay in step with the schema', () => {
  it('.env.example lists exactly the schema variables', () => {
    const text = readFileSync(ENV_EXAMPLE_PATH, 'utf8');
    const names = [...text.matchAll(/^# ([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]).sort();
    expect(names).toEqual(schemaNames);
    expect(text).toBe(renderEnvExample());
  });

  it('docs/configuration.md lists exactly the schema variables with defaults and descriptions', () => {
    const text = readFileSync(CONFIG_DOC_PATH, 'utf8');
    const names = [...text.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \|/gm)].map((match) => match[1]).sort();
    expect(names).toEqual(schemaNames);
    expect(text).toBe(renderConfigDoc());
  });
});
