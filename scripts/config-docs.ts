/**
 * Generates .env.example and docs/configuration.md from the settings schema, so the three never drift.
 *   npx tsx scripts/config-docs.ts          write both files
 *   npx tsx scripts/config-docs.ts --check  exit 1 when either is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { levelPresets, settingsSchema } from '../src/settings.js';

interface Property {
  default?: unknown;
  description?: string;
}

const root = resolve(import.meta.dirname, '..');
export const ENV_EXAMPLE_PATH = resolve(root, '.env.example');
export const CONFIG_DOC_PATH = resolve(root, 'docs/configuration.md');

function entries(): Array<[string, Property]> {
  return Object.entries(settingsSchema.properties as Record<string, Property>);
}

function defaultText(property: Property): string {
  return property.default === undefined ? '' : String(property.default);
}

export function renderEnvExample(): string {
  const lines = [
    '# Generated from src/settings.ts by `npm run config:docs`; edit the schema, not this file.',
    '# Every variable is optional and shown commented out with its default, so copying this file to .env',
    '# changes nothing until you uncomment a line (an explicit value also overrides the LEVEL preset).',
    '',
  ];
  for (const [name, property] of entries()) {
    lines.push(`# ${property.description ?? ''}`, `# ${name}=${defaultText(property)}`, '');
  }
  return lines.join('\n');
}

export function renderConfigDoc(): string {
  const rows = entries().map(
    ([name, property]) =>
      `| \`${name}\` | ${defaultText(property) === '' ? '(unset)' : `\`${defaultText(property)}\``} | ${property.description ?? ''} |`,
  );
  const presets = Object.entries(levelPresets).map(([level, preset]) => {
    const values = Object.entries(preset).map(([name, value]) => `\`${name}=${value}\``);
    return `| ${level} | ${values.length > 0 ? values.join(', ') : '(schema defaults)'} |`;
  });
  return [
    '# Configuration',
    '',
    '<!-- Generated from src/settings.ts by `npm run config:docs`; a test fails when this drifts. -->',
    '',
    'All configuration comes from environment variables; a `.env` file in the working directory is read',
    'when present (real environment variables win). A bad value stops start-up with exit code 78 and one',
    'line per variable naming it, what was wrong and what is expected. Secrets (passwords in URLs) are',
    'masked in every message and log line.',
    '',
    '## Variables',
    '',
    '| Variable | Default | Description |',
    '| --- | --- | --- |',
    ...rows,
    '',
    '## LEVEL presets',
    '',
    '`LEVEL` sets defaults for its flags; a variable set explicitly always wins.',
    '',
    '| LEVEL | Preset defaults |',
    '| --- | --- |',
    ...presets,
    '',
    '## Production',
    '',
    'With `NODE_ENV=production` the service refuses to start without `DATABASE_URL` (the embedded',
    'PostgreSQL is for development only) and with `CORS_ORIGINS=*`. Migrations are not applied at start-up',
    'in production: run `node dist/migrate.js` as a one-shot step. The API also refuses to start without a',
    'strong `AUTH_SECRET`, which may come from a file instead: `AUTH_SECRET_FILE` (and',
    '`AUTH_PREVIOUS_SECRET_FILE`) name a file whose trimmed contents are the value, as the official images',
    'do with `_FILE` (Docker and Kubernetes secrets); it is read only when the variable itself is unset, and',
    'a missing or empty file stops start-up like any bad value. `docker compose up` generates that file once',
    'per install ([deployment.md](deployment.md#docker-compose)).',
    '',
    '## Behind a proxy',
    '',
    "`TRUST_PROXY` takes what Fastify's `trustProxy` takes: `false`, `true`, a hop count, or",
    'comma-separated addresses and CIDR ranges (each checked at start). Name only the addresses your',
    'proxies connect from: see [deployment.md](deployment.md#behind-a-proxy) for why and for what each',
    'template sets.',
    '',
  ].join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const outputs: Array<[string, string]> = [
    [ENV_EXAMPLE_PATH, renderEnvExample()],
    [CONFIG_DOC_PATH, renderConfigDoc()],
  ];
  if (process.argv.includes('--check')) {
    const stale = outputs.filter(([path, text]) => readFileSync(path, 'utf8') !== text).map(([path]) => path);
    if (stale.length > 0) {
      console.error(`out of date: ${stale.join(', ')}; run npm run config:docs`);
      process.exit(1);
    }
  } else {
    for (const [path, text] of outputs) writeFileSync(path, text);
  }
}
