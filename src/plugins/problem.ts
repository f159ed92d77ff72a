import { STATUS_CODES } from 'node:http';
import { Type } from 'typebox';

/** RFC 9457 problem details: the one shape of every error this service returns. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    instance: Type.Optional(Type.String()),
    requestId: Type.Optional(Type.String()),
    errors: Type.Optional(
      Type.Array(
        Type.Object({ field: Type.String(), message: Type.String(), in: Type.Optional(Type.String()) }),
      ),
    ),
  },
  { $id: 'Problem', description: 'application/problem+json error body' },
);

export interface FieldError {
  field: string;
  message: string;
  in?: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  requestId?: string;
  errors?: FieldError[];
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

export function problem(status: number, detail: string, extra: Partial<Problem> = {}): Problem {
  const title = STATUS_CODES[status] ?? 'Error';
  return {
    type: 'about:blank',
    title,
    status,
    detail,
    ...extra,
  };
}

/** Reference to the shared schema. */
export const problemRef = Type.Unsafe<Problem>({ $ref: 'Problem#' });

/** An error response as the document shows it: problem+json, with what the status means here. */
export function problemResponse(description: string) {
  return { description, content: { 'application/problem+json': { schema: problemRef } } };
}

/** Route `response` entries for errors, e.g. `problemResponses({ 404: 'No such item' })`. */
export function problemResponses<Codes extends number>(descriptions: Record<Codes, string>) {
  const responses = {} as Record<Codes, ReturnType<typeof problemResponse>>;
  for (const [code, description] of Object.entries(descriptions) as Array<[string, string]>)
    responses[Number(code) as Codes] = problemResponse(description);
  return responses;
}

/** Statuses every /api route can answer besides its own (validation, rate limit, overload). */
export const COMMON_PROBLEMS = {
  400: 'The request does not match the schema; `errors` names each field',
  429: 'Rate limit exceeded; retry after the Retry-After seconds',
  503: 'A dependency is unavailable, the server is overloaded, or the request passed its deadline; retry after Retry-After',
} as const;

/** Statuses of routes that take a body. */
export const BODY_PROBLEMS = {
  413: 'The body is larger than BODY_LIMIT',
  415: 'The Content-Type is not one this route takes',
} as const;

/** The 401 of every protected route (the auth plugin's `authenticate` hook). */
export const UNAUTHORIZED =
  'Missing, invalid, expired or revoked access token (sign in: POST /api/auth/token)';
