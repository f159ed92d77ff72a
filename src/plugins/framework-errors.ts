// The errors that happen before a route exists: Fastify's router refusing a URL (frameworkErrors),
// and Node's HTTP parser refusing the bytes before any request exists (the server's clientError).
// Both answer problem+json with the headers every other answer carries, like every error of the service.
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger, FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { sendProblem, toProblem } from './errors.js';
import { PROBLEM_CONTENT_TYPE, type Problem, problem } from './problem.js';
import { SECURITY_HEADERS } from './security.js';

/** The router's errors, in words that do not echo the URL back. */
const ROUTER_ERROR_DETAILS: Record<string, string> = {
  FST_ERR_BAD_URL: 'The URL is malformed: a percent-encoded sequence does not decode to UTF-8',
  FST_ERR_MAX_PARAM_LENGTH: 'A path parameter is longer than the server accepts',
};

/** The problem for an error of Fastify's router (bad URL, path parameter too long, constraint failed). */
export function routerProblem(error: FastifyError, production: boolean): Problem {
  const detail = ROUTER_ERROR_DETAILS[error.code];
  const status = error.statusCode ?? 500;
  return detail ? problem(status, detail) : toProblem(error, production);
}

/**
 * Fastify's `frameworkErrors`: called instead of the routing, so no hook ran; the request id and
 * security headers the hooks would have set are set here.
 */
export function frameworkErrorHandler(production: boolean) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    const body = routerProblem(error, production);
    request.log.info({ status: body.status, code: error.code }, body.detail);
    reply.header('x-request-id', request.id);
    for (const [name, value] of SECURITY_HEADERS) reply.header(name, value);
    sendProblem(reply, request, body);
  };
}

/** Node's parser errors, with the status Node itself would answer (everything else is a 400). */
const PARSER_ERRORS: Record<string, { status: number; detail: string }> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    detail: 'The request line and headers are larger than the server accepts',
  },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: {
    status: 413,
    detail: 'The chunk extensions are larger than the server accepts',
  },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, detail: 'The request was not received within REQUEST_TIMEOUT' },
  HPE_INVALID_CONTENT_LENGTH: { status: 400, detail: 'The Content-Length header is not a valid length' },
  HPE_UNEXPECTED_CONTENT_LENGTH: {
    status: 400,
    detail: 'Content-Length and Transfer-Encoding are both set; send one',
  },
  HPE_INVALID_TRANSFER_ENCODING: {
    status: 400,
    detail: 'The Transfer-Encoding header is not valid, or is sent with Content-Length; send one',
  },
};

/** Status and detail for a parser error code. */
export function parserProblem(code: string | undefined): Problem {
  const known = code === undefined ? undefined : PARSER_ERRORS[code];
  if (known) return problem(known.status, known.detail);
  return problem(400, `The request is not valid HTTP/1.1${code ? ` (${code})` : ''}`);
}

/** A whole HTTP/1.1 answer as bytes for a socket: problem+json, the security headers, then close. */
export function rawProblemResponse(body: Problem, requestId: string): string {
  const json = JSON.stringify({ ...body, requestId });
  const headers: Array<readonly [string, string]> = [
    ['content-type', PROBLEM_CONTENT_TYPE],
    ['content-length', String(Buffer.byteLength(json))],
    ['x-request-id', requestId],
    ...SECURITY_HEADERS,
    ['connection', 'close'],
  ];
  const head = headers.map(([name, value]) => `${name}: ${value}\r\n`).join('');
  return `HTTP/1.1 ${body.status} ${STATUS_CODES[body.status] ?? 'Error'}\r\n${head}\r\n${json}`;
}

interface ClientError extends Error {
  code?: string;
}

/** Node sets this on a socket while a response is being written on it (not in its types). */
interface HttpSocket extends Socket {
  _httpMessage?: { headersSent?: boolean } | null;
}

/**
 * Fastify's `clientErrorHandler` (the server's 'clientError' event): no request exists, so the answer
 * is written on the socket, with an id of its own that the log line carries too, and the socket closed.
 */
export function clientErrorHandler(log: FastifyBaseLogger) {
  return (error: ClientError, socket: Socket): void => {
    // Reset by the peer: nobody is left to answer.
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const body = parserProblem(error.code);
    const requestId = randomUUID();
    log.info({ reqId: requestId, status: body.status, code: error.code }, body.detail);
    // As Node does: never write into a response already under way on this connection.
    const response = (socket as HttpSocket)._httpMessage;
    if (socket.writable && !response?.headersSent) socket.write(rawProblemResponse(body, requestId));
    socket.destroy(error);
  };
}
