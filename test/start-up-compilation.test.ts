/**
 * What start-up no longer compiles, and that nothing is lost by it: route schemas compile on first
 * use (or in the background once listening), and the built service validates its settings with
 * the validator `npm run build` generated ahead of time.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { createSchemaCompilers } from '../src/plugins/schema-compilers.js';
import { settingsSchema } from '../src/settings.js';
import {
  PRECOMPILED_VALIDATOR_FILE,
  SETTINGS_AJV_OPTIONS,
  type SettingsValidator,
  validatedSchema,
} from '../src/settings-validator.js';
import { useTestApp } from './helpers/app.js';

const ROOT = join(import.meta.dirname, '..');

describe('route schemas compile on first use', () => {
  async function smallApp() {
    const schemas = createSchemaCompilers();
    const app = Fastify({ schemaController: { compilersFactory: schemas.compilersFactory } });
    app.post(
      '/echo',
      {
        schema: {
          body: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } },
          querystring: { type: 'object', properties: { times: { type: 'integer' } } },
          response: {
            200: { type: 'object', properties: { name: { type: 'string' }, times: { type: 'integer' } } },
          },
        },
      },
      async (request) => ({
        ...(request.body as object),
        times: (request.query as { times?: number }).times ?? 1,
        secret: 'never serialized',
      }),
    );
    await app.ready();
    return { app, schemas };
  }

  it('validates and serializes a route the first time it is called, before any background compilation', async () => {
    const { app } = await smallApp();
    const bad = await app.inject({ method: 'POST', url: '/echo?times=2', payload: { name: 12 } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toContain('body/name must be string');
    const badQuery = await app.inject({ method: 'POST', url: '/echo?times=1e3', payload: { name: 'a' } });
    expect(badQuery.statusCode).toBe(400);
    const good = await app.inject({ method: 'POST', url: '/echo?times=2', payload: { name: 'a' } });
    expect(good.json()).toEqual({ name: 'a', times: 2 }); // the response schema dropped `secret`
    await app.close();
  });

  it('leaves every schema to compile after start-up, and compiles each exactly once', async () => {
    const { app, schemas } = await smallApp();
    expect(await schemas.compilePending()).toBe(3); // body, querystring, response 200
    expect(await schemas.compilePending()).toBe(0);
    const again = await app.inject({ method: 'POST', url: '/echo', payload: {} });
    expect(again.statusCode).toBe(400);
    await app.close();
  });

  const served = useTestApp();
  it('the real app: every route schema compiles', async () => {
    const compiled = await served.app.compilePendingSchemas();
    expect(compiled).toBeGreaterThan(20);
    expect(await served.app.compilePendingSchemas()).toBe(0);
  });
});

describe('the precompiled settings validator (dist/) agrees with Ajv compiling the schema', () => {
  const file = join(ROOT, 'dist', PRECOMPILED_VALIDATOR_FILE);
  const cases: Array<Record<string, string>> = [
    {},
    { LEVEL: '3', WORKERS: '4', PORT: '8080', NODE_ENV: 'production' },
    { LEVEL: '5' },
    { WORKERS: 'abc', PORT: '-1', LOG_LEVEL: 'loud' },
    { LISTEN_REUSE_PORT: 'false', OPENAPI_DOCS: 'true', TRUST_PROXY: 'true' },
    { NOT_A_SETTING: 'dropped', BODY_LIMIT: '1.5' },
  ];

  it.each(cases)('same verdict, same coerced values, same errors: %o', (env) => {
    expect(existsSync(file), 'run `npm run build` first (npm test does)').toBe(true);
    const precompiled = createRequire(import.meta.url)(file) as SettingsValidator;
    const compiled = new Ajv(SETTINGS_AJV_OPTIONS).compile(
      validatedSchema(settingsSchema),
    ) as SettingsValidator;
    const [a, b] = [{ ...env }, { ...env }];
    expect(precompiled(a)).toBe(compiled(b));
    expect(a).toEqual(b);
    expect(precompiled.errors ?? null).toEqual(compiled.errors ?? null);
  });
});
