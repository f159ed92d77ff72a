import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { QUERY_CANCELED } from '../db/cancel.js';
import { isDatabaseUnavailable } from '../db/pool.js';
import { isRedisUnavailable } from '../redis/errors.js';
import { BodyError } from './body.js';
import { type FieldError, PROBLEM_CONTENT_TYPE, type Problem, problem } from './problem.js';

interface ValidationIssue {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Name the field a schema violation is about: `name`, `limit`, `items/0/name`. */
export function fieldOf(issue: ValidationIssue): string {
  const base = (issue.instancePath ?? '').replace(/^\//, '');
  const child =
    issue.params?.missingProperty ??
    issue.params?.additionalProperty ??
    (issue.keyword === 'discriminator' ? issue.params?.tag : undefined);
  if (typeof child === 'string') return base ? `${base}/${child}` : child;
  return base || '(root)';
}

/** What a failed keyword means, in words: "must be string or null", "is required". */
function messageOf(issue: ValidationIssue, typesAt: Map<string, string[]>): string {
  if (issue.keyword === 'additionalProperties') return 'is not allowed';
  if (issue.keyword === 'required') return 'is required';
  if (issue.keyword === 'anyOf' || issue.keyword === 'oneOf') {
    const types = typesAt.get(issue.instancePath ?? '');
    if (types) return `must be ${types.join(' or ')}`;
  }
  if (issue.keyword === 'discriminator')
    return issue.params?.error === 'mapping' ? 'is not a known value' : 'is required and must be a string';
  return issue.message ?? 'is invalid';
}

/**
 * Ajv's issues as field errors. A union that failed reports one line ("must be string or null")
 * instead of one per branch plus "must match a schema in anyOf".
 */
export function fieldErrors(issues: ValidationIssue[], location?: string): FieldError[] {
  const unionPaths = new Set(
    issues.filter((i) => i.keyword === 'anyOf' || i.keyword === 'oneOf').map((i) => i.instancePath ?? ''),
  );
  const typesAt = new Map<string, string[]>();
  for (const issue of issues) {
    const path = issue.instancePath ?? '';
    if (issue.keyword === 'type' && unionPaths.has(path))
      typesAt.set(path, [...(typesAt.get(path) ?? []), String(issue.params?.type)]);
  }
  const errors: FieldError[] = [];
  for (const issue of issues) {
    const path = issue.instancePath ?? '';
    if (issue.keyword === 'if') continue; // "must match then schema": the `then` issue says what
    if (unionPaths.has(path) && issue.keyword !== 'anyOf' && issue.keyword !== 'oneOf' && typesAt.has(path))
      continue; // folded into the union's line
    const error: FieldError = {
      field: fieldOf(issue),
      message: messageOf(issue, typesAt),
      ...(location ? { in: location } : {}),
    };
    if (!errors.some((seen) => seen.field === error.field && seen.message === error.message))
      errors.push(error);
  }
  return errors;
}

/** The request as a whole is missing or not an object: say so in words. */
function bodyShapeProblem(errors: FieldError[], location: string | undefined): string | undefined {
  if (location !== 'body') return undefined;
  const root = errors.find((error) => error.field === '(root)' && /must be object/.test(error.message));
  return root ? 'A JSON object body is required (Content-Type: application/json)' : undefined;
}

// Fastify's own client-error codes and the status each deserves.
const CLIENT_ERROR_STATUS: Record<string, number> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 400,
  FST_ERR_CTP_EMPTY_JSON_BODY: 400,
  FST_ERR_CTP_BODY_TOO_LARGE: 413,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 415,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 400,
};

export function toProblem(error: FastifyError, production: boolean, contentType?: string): Problem {
  if (error.validation) {
    const errors = fieldErrors(error.validation as ValidationIssue[], error.validationContext);
    const summary = errors.map((e) => `${e.field} ${e.message}`).join('; ');
    const detail =
      bodyShapeProblem(errors, error.validationContext) ??
      `Invalid ${error.validationContext ?? 'request'}: ${summary}`;
    return problem(400, detail, { errors });
  }
  if (error instanceof BodyError)
    return problem(400, error.message, error.errors.length > 0 ? { errors: error.errors } : {});
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    const sent = contentType ? `Content-Type ${contentType.split(';')[0]}` : 'A body without a Content-Type';
    return problem(415, `${sent} is not accepted here; send application/json`);
  }
  if (isDatabaseUnavailable(error)) return problem(503, 'The database is unavailable; retry shortly');
  // statement_timeout, a cancel request, or a query refused after its request's deadline: not a fault
  // of the request, and worth a retry.
  if (error.code === QUERY_CANCELED || error.code === 'QUERY_ABORTED')
    return problem(503, 'A database statement was cancelled before it finished; retry shortly');
  if (isRedisUnavailable(error)) return problem(503, 'Redis is unavailable; retry shortly');
  const status = CLIENT_ERROR_STATUS[error.code] ?? error.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    const detail =
      error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? 'Malformed JSON in request body' : error.message;
    return problem(status, detail);
  }
  // Server errors never leak internals in production.
  return problem(status >= 500 && status < 600 ? status : 500, production ? 'Internal error' : error.message);
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, body: Problem): FastifyReply {
  if (body.status === 503 && !reply.hasHeader('retry-after')) reply.header('retry-after', '5');
  return reply
    .code(body.status)
    .type(PROBLEM_CONTENT_TYPE)
    .send({ ...body, instance: request.url, requestId: request.id });
}

async function errorsPlugin(app: FastifyInstance, options: { production: boolean }): Promise<void> {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const body = toProblem(error, options.production, request.headers['content-type']);
    if (body.status >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ status: body.status, code: error.code }, body.detail);
    return sendProblem(reply, request, body);
  });
  // Unknown paths and unknown methods on known paths both answer 404 (Fastify routes by method+path).
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, request, problem(404, `No route for ${request.method} ${request.url.split('?')[0]}`)),
  );
}

export default fp(errorsPlugin, { name: 'errors' });
