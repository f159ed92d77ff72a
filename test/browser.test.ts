import { existsSync } from 'node:fs';
import { chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { holdEngineLock } from './deployment/helpers/docker-engine.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { freePort, type ServerProcess, startProcess, waitForHttp } from './helpers/process.js';
import { dropPrefix, taskEnv, uniquePrefix } from './helpers/tasks.js';
import { signInOverHttp } from './helpers/user.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const USER = 'ops';
const PASSWORD = 'correct-horse-battery';

let database: TestDatabase;
let server: ServerProcess;
let releaseEngine: (() => void) | undefined;
const prefix = uniquePrefix();

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (.ci/run does)`);
  // Not while a container test's dockerd changes the network (Chromium: ERR_NETWORK_CHANGED).
  releaseEngine = await holdEngineLock();
  database = await createTestDatabase();
  server = startProcess({
    PORT: String(await freePort()),
    DATABASE_URL: database.url,
    ...taskEnv(prefix, { BULL_BOARD_USER: USER, BULL_BOARD_PASSWORD: PASSWORD }),
  });
  await waitForHttp(`${server.baseUrl}/health/ready`);
}, 15 * 60_000); // it may wait for a container test file to finish
afterAll(async () => {
  await server?.stop();
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
