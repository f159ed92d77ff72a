import { type AddressInfo, connect } from 'node:net';
import Fastify from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientErrorHandler, parserProblem, rawProblemResponse } from '../src/plugins/framework-errors.js';
import { problem } from '../src/plugins/problem.js';
import { SECURITY_HEADERS } from '../src/plugins/security.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { parseResponses, type RawResponse } from './helpers/http.js';
import { freePort, type ServerProcess, startProcess, waitForHttp } from './helpers/process.js';

let database: TestDatabase;
let server: ServerProcess;

beforeAll(async () => {
  database = await createTestDatabase();
  server = startProcess({ DATABASE_URL: database.url, PORT: String(await freePort()) });
  await waitForHttp(`${server.baseUrl}/health/ready`);
});
afterAll(async () => {
  await server?.stop();
  await database?.drop();
});

/** Write raw bytes on a connection of their own; the one answer, once the server has closed it. */
function exchange(bytes: string, port = server.port): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
    });
    // A reset after the answer (the server closes with our bytes unread) is fine.
    socket.on('error', () => {});
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.on('close', () => {
      clearTimeout(timer);
      const [response] = parseResponses(received);
      if (response) resolve(response);
      else reject(new Error(`no complete answer: ${JSON.stringify(received.slice(0, 300))}`));
    });
  });
}

const request = (line: string, headers: string[] = []) =>
  `${line}\r\nHost: localhost\r\nConnection: close\r\n${headers.map((header) => `${header}\r\n`).join('')}\r\n`;

/** Problem+json with the request id in the body and the header, and every security header. */
function expectProblem(response: RawResponse, status: number) {
  expect(response.status, response.body).toBe(status);
  expect(response.headers['content-type']).toBe('application/problem+json; charset=utf-8');
  const body = JSON.parse(response.body) as Record<string, unknown>;
  expect(body).toMatchObject({
    type: 'about:blank',
    title: expect.any(String),
    status,
    detail: expect.any(String),
  });
  expect(body.requestId).toBe(response.headers['x-request-id']);
  for (const [name, value] of SECURITY_HEADERS) expect(response.headers[name], name).toBe(value);
  return body as { detail: string; requestId: string; instance?: string };
}

describe("Fastify's router errors (frameworkErrors)", () => {
  it('a malformed percent-encoding in the URL: 400, honouring the incoming request id', async () => {
    const response = await exchange(request('GET /api/items/%E0%A4%A HTTP/1.1', ['X-Request-Id: bad-url-1']));
    const body = expectProblem(response, 400);
    expect(body.detail).toMatch(/^The URL is malformed/);
    expect(body.requestId).toBe('bad-url-1');
    expect(body.instance).toBe('/api/items/%E0%A4%A');
    await server.waitForLog((line) => line.reqId === 'bad-url-1' && line.code === 'FST_ERR_BAD_URL', 5000);
  });

  it('a path parameter longer than the router takes: 414', async () => {
    const response = await exchange(request(`GET /api/items/${'1'.repeat(150)} HTTP/1.1`));
    expect(expectProblem(response, 414).detail).toBe('A path parameter is longer than the server accepts');
  });
});

describe("Node's parser errors (clientError): answered on the socket, then closed", () => {
  it.each([
    {
      what: 'headers larger than the server takes',
      bytes: request('GET /api/items HTTP/1.1', [`X-Big: ${'a'.repeat(20_000)}`]),
      status: 431,
      detail: /larger than the server accepts/,
    },
    {
      what: 'a Content-Length that is not a number',
      bytes: request('POST /api/items HTTP/1.1', ['Content-Length: abc']),
      status: 400,
      detail: /Content-Length header is not a valid length/,
    },
    {
      what: 'Content-Length and chunked together',
      bytes: `${request('POST /api/items HTTP/1.1', ['Content-Length: 3', 'Transfer-Encoding: chunked'])}0\r\n\r\n`,
      status: 400,
      detail: /Transfer-Encoding/,
    },
    {
      what: 'bytes that are not HTTP',
      bytes: 'HELLO\r\n\r\n',
      status: 400,
      detail: /not valid HTTP\/1\.1 \(HPE_INVALID_METHOD\)/,
    },
  ])(
    '$what: $status problem+json with a request id, security headers and Connection: close',
    async ({ bytes, status, detail }) => {
      const response = await exchange(bytes);
      const body = expectProblem(response, status);
      expect(body.detail).toMatch(detail);
      expect(response.headers.connection).toBe('close');
      expect(body.requestId).toMatch(/^[0-9a-f-]{36}$/);
      // The log line carries the id the client was given.
      const line = await server.waitForLog((entry) => entry.reqId === body.requestId, 5000);
      expect(line.status).toBe(status);
    },
  );

  it('keeps serving, and every line it wrote is JSON', async () => {
    expect((await fetch(`${server.baseUrl}/health/live`)).status).toBe(200);
    expect(server.nonJsonLines()).toEqual([]);
  });
});

describe('a request not received within the request timeout', () => {
  it('gets 408 problem+json on the socket (REQUEST_TIMEOUT, checked here every 100 ms)', async () => {
    // The app's own process checks every 30 s (Node's default): a server of its own, same handler.
    const app = Fastify({
      requestTimeout: 500,
      http: { connectionsCheckingInterval: 100 },
      clientErrorHandler: clientErrorHandler(pino({ level: 'silent' })),
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { port } = app.server.address() as AddressInfo;
      const response = await exchange('GET /health HTTP/1.1\r\nHost: localhost\r\n', port);
      expect(expectProblem(response, 408).detail).toMatch(/REQUEST_TIMEOUT/);
      expect(response.headers.connection).toBe('close');
    } finally {
      await app.close();
    }
  });
});

describe('the raw answer', () => {
  it("uses Node's status for each parser error, 400 for the rest", () => {
    expect(parserProblem('HPE_HEADER_OVERFLOW').status).toBe(431);
    expect(parserProblem('ERR_HTTP_REQUEST_TIMEOUT').status).toBe(408);
    expect(parserProblem('HPE_CHUNK_EXTENSIONS_OVERFLOW').status).toBe(413);
    expect(parserProblem('HPE_SOMETHING_NEW')).toMatchObject({
      status: 400,
      detail: expect.stringContaining('HPE_SOMETHING_NEW'),
    });
    expect(parserProblem(undefined).status).toBe(400);
  });

  it('is one well-framed HTTP/1.1 answer whose Content-Length counts bytes', () => {
    const raw = rawProblemResponse(problem(400, 'détail non ASCII'), 'id-1');
    const [head = '', body = ''] = raw.split('\r\n\r\n');
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(head).toContain(`\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`);
    expect(head.endsWith('\r\nconnection: close')).toBe(true);
    expect(JSON.parse(body)).toMatchObject({ status: 400, detail: 'détail non ASCII', requestId: 'id-1' });
  });
});
