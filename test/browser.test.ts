import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { holdEngineLock } from './deployment/helpers/docker-engine.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { freePort, type ServerProcess, startProcess, waitForHttp } from './helpers/process.js';
import { dropPrefix, taskEnv, uniquePrefix } from './helpers/tasks.js';
import { signInOverHttp, TEST_USER } from './helpers/user.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const USER = 'ops';
const PASSWORD = 'correct-horse-battery';

let database: TestDatabase;
let server: ServerProcess;
let releaseEngine: (() => void) | undefined;
const prefix = uniquePrefix();
/** Pages on origins of their own (other ports): one listed in CORS_ORIGINS, one not. */
let allowedPage: PageServer;
let otherPage: PageServer;

interface PageServer {
  server: Server;
  origin: string;
}

/** A tiny site on a port of its own: another origin than the API's. */
async function servePage(): Promise<PageServer> {
  const page = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end('<!doctype html><title>Another origin</title><p>A browser client of the API</p>');
  });
  page.listen(0, '127.0.0.1');
  await once(page, 'listening');
  return { server: page, origin: `http://127.0.0.1:${(page.address() as AddressInfo).port}` };
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (.ci/run does)`);
  // Not while a container test's dockerd changes the network (Chromium: ERR_NETWORK_CHANGED).
  releaseEngine = await holdEngineLock();
  database = await createTestDatabase();
  allowedPage = await servePage();
  otherPage = await servePage();
  server = startProcess({
    PORT: String(await freePort()),
    DATABASE_URL: database.url,
    CORS_ORIGINS: allowedPage.origin,
    ...taskEnv(prefix, { BULL_BOARD_USER: USER, BULL_BOARD_PASSWORD: PASSWORD }),
  });
  await waitForHttp(`${server.baseUrl}/health/ready`);
}, 15 * 60_000); // it may wait for a container test file to finish
afterAll(async () => {
  await server?.stop();
  allowedPage?.server.close();
  otherPage?.server.close();
  await dropPrefix(prefix);
  await database?.drop();
  releaseEngine?.();
});

async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Uncaught page errors and console errors (a blocked stylesheet or script is one). */
function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  return errors;
}

describe('bull-board dashboard in a real browser', () => {
  it('refuses the dashboard without credentials, and with wrong ones', async () => {
    const anonymous = await fetch(`${server.baseUrl}/admin/queues`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic/);
    const wrong = await fetch(`${server.baseUrl}/admin/queues/api/queues`, {
      headers: { authorization: `Basic ${Buffer.from(`${USER}:nope`).toString('base64')}` },
    });
    expect(wrong.status).toBe(401);
  });

  it('shows the queues and a job to an authenticated user', async () => {
    const enqueued = await fetch(`${server.baseUrl}/api/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await signInOverHttp(server.baseUrl)) },
      body: JSON.stringify({ name: 'report.generate', payload: { rounds: 10 }, delayMs: 600_000 }),
    });
    expect(enqueued.status).toBe(202);
    const { id } = (await enqueued.json()) as { id: string };
    const jobId = id.split('.')[1];

    const browser = await launch();
    try {
      const context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD } });
      const page = await context.newPage();
      const errors = collectErrors(page);
      // bull-board links its fonts from Google Fonts. CI has no internet, so the stylesheet is answered
      // here; what this test checks is that the CSP lets the request out (it blocked it before).
      let fontStylesheetRequested = false;
      await page.route('https://fonts.googleapis.com/**', (route) => {
        fontStylesheetRequested = true;
        return route.fulfill({ status: 200, contentType: 'text/css', body: '' });
      });
      const response = await page.goto(`${server.baseUrl}/admin/queues`);
      expect(response?.status()).toBe(200);
      await page.getByText('default', { exact: true }).first().waitFor({ timeout: 15_000 });
      await page.getByText('cpu', { exact: true }).first().waitFor({ timeout: 15_000 });
      await page.goto(`${server.baseUrl}/admin/queues/queue/cpu?status=delayed`);
      await page.getByText(`#${jobId}`).first().waitFor({ timeout: 15_000 });
      expect(await page.getByText('report.generate').count()).toBeGreaterThan(0);
      expect(fontStylesheetRequested).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it('refuses the page in the browser without credentials', async () => {
    const browser = await launch();
    try {
      const page = await browser.newPage();
      // Headless Chromium answers a basic-auth challenge it has no credentials for by failing the load.
      await expect(page.goto(`${server.baseUrl}/admin/queues`)).rejects.toThrow(
        /ERR_INVALID_AUTH_CREDENTIALS/,
      );
      expect(await page.getByText('report.generate').count()).toBe(0);
    } finally {
      await browser.close();
    }
  });
});

describe('OpenAPI docs UI in a real browser', () => {
  it('renders the operations generated from the route schemas', async () => {
    const browser = await launch();
    try {
      const page = await browser.newPage();
      const errors = collectErrors(page);
      const response = await page.goto(`${server.baseUrl}/docs`);
      expect(response?.status()).toBe(200);
      await page.getByText('/api/items/{id}').first().waitFor({ timeout: 15_000 });
      await page.getByText('/api/tasks/{id}').first().waitFor({ timeout: 15_000 });
      // The OAuth2 password flow of the document gives the UI its Authorize button.
      await page
        .getByRole('button', { name: /Authorize/ })
        .first()
        .waitFor({ timeout: 15_000 });
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});

describe('CORS: a page on another origin uses the API through fetch() in a real browser', () => {
  /** In the page: sign in, then create, rename, delete and look up an item, each a cross-origin fetch. */
  const itemLifecycle = async ({ api, user }: { api: string; user: { email: string; password: string } }) => {
    // A form body: the token endpoint takes RFC 6749's form, a request the browser sends without preflight.
    const token = await fetch(`${api}/api/auth/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'password', username: user.email, password: user.password }),
    });
    const { access_token: accessToken } = (await token.json()) as { access_token: string };
    const authorization = `Bearer ${accessToken}`;
    // Authorization, a JSON body, Idempotency-Key and X-Request-Id: each needs the preflight's consent.
    const created = await fetch(`${api}/api/items`, {
      method: 'POST',
      headers: {
        authorization,
        'content-type': 'application/json',
        'idempotency-key': `"${crypto.randomUUID()}"`, // an sf-string, as the header's syntax says
        'x-request-id': 'cors-create-1',
      },
      body: JSON.stringify({ name: 'from another origin' }),
    });
    const location = created.headers.get('location');
    const patched = await fetch(`${api}${location}`, {
      method: 'PATCH',
      headers: { authorization, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'renamed across origins' }),
    });
    const renamed = (await patched.json()) as { name: string };
    const deleted = await fetch(`${api}${location}`, { method: 'DELETE', headers: { authorization } });
    const gone = await fetch(`${api}${location}`);
    return {
      token: token.status,
      created: created.status,
      location,
      requestId: created.headers.get('x-request-id'),
      patched: patched.status,
      name: renamed.name,
      deleted: deleted.status,
      gone: gone.status,
      goneType: gone.headers.get('content-type'),
      goneDetail: ((await gone.json()) as { detail: string }).detail,
    };
  };

  it('signs in, creates, updates and deletes an item from an allowed origin', async () => {
    const browser = await launch();
    try {
      const page = await browser.newPage();
      const errors = collectErrors(page);
      await page.goto(`${allowedPage.origin}/`);
      const result = await page.evaluate(itemLifecycle, { api: server.baseUrl, user: TEST_USER });
      expect(result).toEqual({
        token: 200,
        created: 201,
        location: expect.stringMatching(/^\/api\/items\/\d+$/),
        requestId: 'cors-create-1',
        patched: 200,
        name: 'renamed across origins',
        deleted: 204,
        gone: 404,
        goneType: 'application/problem+json; charset=utf-8',
        goneDetail: expect.stringMatching(/does not exist/),
      });
      // The one console line: Chromium reports the 404 the page asked for.
      expect(errors.filter((error) => !/status of 404/.test(error))).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it('gives a page on an origin not in CORS_ORIGINS nothing to read', async () => {
    const browser = await launch();
    try {
      const page = await browser.newPage();
      await page.goto(`${otherPage.origin}/`);
      const outcome = await page.evaluate(async (api) => {
        const attempt = (init?: RequestInit) =>
          fetch(`${api}/api/items`, init).then(
            (response) => `read ${response.status}`,
            (error: Error) => error.name,
          );
        return {
          read: await attempt(),
          write: await attempt({
            method: 'POST',
            headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
            body: '{"name":"x"}',
          }),
        };
      }, server.baseUrl);
      expect(outcome).toEqual({ read: 'TypeError', write: 'TypeError' });
    } finally {
      await browser.close();
    }
  });
});
