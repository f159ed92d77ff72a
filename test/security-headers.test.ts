import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import errorsPlugin from '../src/plugins/errors.js';
import securityPlugin, { DOCUMENT_HEADERS, SECURITY_HEADERS } from '../src/plugins/security.js';

const app = Fastify();

beforeAll(async () => {
  await app.register(errorsPlugin, { production: true });
  await app.register(securityPlugin, {
    CORS_ORIGINS: '',
    LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: 0,
    LOAD_SHED_MAX_ELU: 0,
    LOAD_SHED_RETRY_AFTER: 1,
  });
  app.get('/json', async () => ({ ok: true }));
  app.get('/page', async (_request, reply) => reply.type('text/html; charset=utf-8').send('<p>hi</p>'));
  app.get('/image', async (_request, reply) => reply.type('image/svg+xml').send('<svg/>'));
  app.get('/own-policy', async (_request, reply) =>
    reply.header('content-security-policy', "default-src 'none'").type('text/html').send('<p>own</p>'),
  );
  app.get('/text', async () => 'plain');
});
afterAll(() => app.close());

describe('security headers by what a browser does with the answer', () => {
  it('sends the four that protect any response on JSON and text, none of the document-only ones', async () => {
    expect(SECURITY_HEADERS.map(([name]) => name).sort()).toEqual([
      'cross-origin-resource-policy',
      'strict-transport-security',
      'x-content-type-options',
      'x-frame-options',
    ]);
    for (const url of ['/json', '/text', '/missing']) {
      const response = await app.inject(url);
      for (const [name, value] of SECURITY_HEADERS) expect(response.headers[name]).toBe(value);
      for (const [name] of DOCUMENT_HEADERS) expect(response.headers[name], `${url} ${name}`).toBeUndefined();
      expect(response.headers['content-security-policy']).toBeUndefined();
    }
  });

  it("gives documents (HTML, SVG) helmet's full set and its default CSP, without upgrading to HTTPS", async () => {
    for (const url of ['/page', '/image']) {
      const response = await app.inject(url);
      for (const [name, value] of [...SECURITY_HEADERS, ...DOCUMENT_HEADERS])
        expect(response.headers[name], `${url} ${name}`).toBe(value);
      expect(response.headers['content-security-policy']).toContain("default-src 'self'");
      expect(response.headers['content-security-policy']).toContain("script-src 'self'");
      expect(response.headers['content-security-policy']).not.toContain('upgrade-insecure-requests');
    }
  });

  it("keeps a route's own CSP", async () => {
    const response = await app.inject('/own-policy');
    expect(response.headers['content-security-policy']).toBe("default-src 'none'");
    expect(response.headers['referrer-policy']).toBe('no-referrer');
  });
});
