import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildOpenapiDocument, CLIENT_DIR, clientTypes, documentText } from '../scripts/openapi.js';
import { ROOT } from './helpers/process.js';

const run = promisify(execFile);
const committed = (file: string) => readFileSync(`${CLIENT_DIR}${file}`, 'utf8');

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: { default?: unknown };
}

interface Operation {
  operationId?: string;
  description?: string;
  security?: unknown[];
  responses: Record<string, { description: string; content?: Record<string, unknown> }>;
}

describe('the OpenAPI document and the client generated from it', () => {
  it('is committed exactly as the server builds it (run `npm run client:generate` when this fails)', async () => {
    const document = await buildOpenapiDocument();
    expect(committed('openapi.json')).toBe(documentText(document));
    expect(committed('schema.d.ts')).toBe(await clientTypes(document));
  });

  it('lints clean under Redocly recommended rules: no errors, no warnings', async () => {
    const { stdout } = await run(
      `${ROOT}/node_modules/.bin/redocly`,
      ['lint', 'clients/typescript/openapi.json', '--format=json'],
      // No telemetry or update check from CI.
      {
        cwd: ROOT,
        env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
      },
    );
    const report = JSON.parse(stdout) as {
      totals: { errors: number; warnings: number };
      problems: Array<{ ruleId: string; message: string }>;
    };
    expect(report.problems.map((problem) => `${problem.ruleId}: ${problem.message}`)).toEqual([]);
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  });

  it('gives every operation an id, a description, problem+json (or RFC 6749) errors and a security decision', () => {
    const document = JSON.parse(committed('openapi.json')) as {
      paths: Record<string, Record<string, Operation>>;
      servers: unknown[];
    };
    expect(document.servers.length).toBeGreaterThan(0);
    const ids = new Set<string>();
    const protectedIds: string[] = [];
    for (const [path, methods] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        const where = `${method.toUpperCase()} ${path}`;
        expect(operation.operationId, where).toMatch(/^[a-z][A-Za-z]+$/);
        ids.add(operation.operationId as string);
        expect(operation.description, where).toBeTruthy();
        for (const [status, response] of Object.entries(operation.responses)) {
          expect(response.description, `${where} ${status}`).not.toBe('Default Response');
          // The token endpoint answers RFC 6749 §5.2 JSON, what OAuth clients read; its 5xx stay problem+json.
          const oauthError = path === '/api/auth/token' && Number(status) < 500;
          if (Number(status) >= 400 && !path.startsWith('/health'))
            expect(Object.keys(response.content ?? {}), `${where} ${status}`).toEqual([
              oauthError ? 'application/json' : 'application/problem+json',
            ]);
        }
        if (operation.security === undefined) protectedIds.push(operation.operationId as string);
        else expect(operation.security, where).toEqual([]);
      }
    }
    // Writes and the caller's own session need a token (the document's global oauth2); reads are public,
    // but for the example that holds a database connection while it sleeps.
    expect(protectedIds.sort()).toEqual(
      [
        'cancelTask',
        'createItem',
        'dbSleepExample',
        'deleteItem',
        'enqueueTask',
        'getCurrentUser',
        'logout',
        'updateItem',
      ].sort(),
    );
    expect(ids.size).toBe(Object.values(document.paths).flatMap((methods) => Object.keys(methods)).length);
  });

  it('never requires a parameter that has a default (a contract validator would refuse a request without it)', () => {
    const document = JSON.parse(committed('openapi.json')) as {
      paths: Record<string, Record<string, { parameters?: Parameter[] }>>;
    };
    const defaulted: string[] = [];
    const requiredWithDefault: string[] = [];
    for (const [path, methods] of Object.entries(document.paths))
      for (const [method, operation] of Object.entries(methods))
        for (const parameter of operation.parameters ?? []) {
          if (parameter.schema?.default === undefined) continue;
          const where = `${method.toUpperCase()} ${path} ${parameter.in} ${parameter.name}`;
          defaulted.push(where);
          if (parameter.required === true) requiredWithDefault.push(where);
        }
    expect(defaulted).toEqual(
      expect.arrayContaining([
        'GET /api/items query limit',
        'GET /api/examples/sleep query ms',
        'GET /api/examples/db-sleep query ms',
        'GET /api/examples/hash query rounds',
      ]),
    );
    expect(requiredWithDefault).toEqual([]);
  });
});
