import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { isDatabaseUnavailable } from '../db/pool.js';
import { isRedisUnavailable } from '../redis/errors.js';
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
  const child = issue.params?.missingProperty ?? issue.params?.additionalProperty;
  if (typeof child === 'string') return base ? `${base}/${child}` : child;
  return base || '(root)';
}

export function fieldErrors(issues: ValidationIssue[], location?: string): FieldError[] {
  return issues.map((issue) => ({
    field: fieldOf(issue),
    message: issue.keyword === 'additionalProperties' ? 'is not allowed' : (issue.message ?? 'is invalid'),
    ...(location ? { in: location } : {}),
  }));
}

// Fastify's own client-error codes and the status each deserves.
const CLIENT_ERROR_STATUS: Record<string, number> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 400,
  FST_ERR_CTP_EMPTY_JSON_BODY: 400,
  FST_ERR_CTP_BODY_TOO_LARGE: 413,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 415,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 400,
};

export function toProblem(error: FastifyError, production: boolean): Problem {
  if (error.validation) {
    const errors = fieldErrors(error.validation as ValidationIssue[], error.validationContext);
    const summary = errors.map((e) => `${e.field} ${e.message}`).join('; ');
    return problem(400, `Invalid ${error.validationContext ?? 'request'}: ${summary}`, { errors });
  }
  if (isDatabaseUnavailable(error)) return problem(503, 'The database is unavailable; retry shortly');
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
    const body = toProblem(error, options.production);
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
