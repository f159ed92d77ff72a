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

/** Reference to the shared schema for route `response` maps, e.g. `{ 404: problemRef }`. */
export const problemRef = Type.Unsafe<Problem>({ $ref: 'Problem#' });
