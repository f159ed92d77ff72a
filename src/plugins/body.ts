import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { FieldError } from './problem.js';

/** A body refused before validation: 400 with the field at fault (the error handler renders it). */
export class BodyError extends Error {
  readonly statusCode = 400;
  constructor(
    readonly code: string,
    message: string,
    readonly errors: FieldError[] = [],
  ) {
    super(message);
    this.name = 'BodyError';
  }
}

// With the u flag a paired surrogate is one code point; only a lone one is in category Cs.
const LONE_SURROGATE = /\p{Cs}/u;

/** Why PostgreSQL (text/jsonb) or a JSON consumer could not keep this string, or undefined if it can. */
export function unstorable(value: string): string | undefined {
  if (value.includes('\u0000')) return 'contains a NUL character (\\u0000), which cannot be stored';
  if (LONE_SURROGATE.test(value)) return 'contains a lone UTF-16 surrogate, which is not valid Unicode';
  return undefined;
}

/** Deeper bodies are refused: no schema here nests that far, and walking them costs time. */
export const MAX_BODY_DEPTH = 64;

interface Node {
  value: unknown;
  key: string;
  parent: Node | undefined;
  depth: number;
}

function fieldOf(node: Node): string {
  const keys: string[] = [];
  for (let at: Node | undefined = node; at?.parent; at = at.parent) keys.unshift(at.key);
  return keys.length === 0 ? '(root)' : keys.join('/');
}

function refuseString(node: Node, problem: string, location: string): never {
  const field = fieldOf(node);
  throw new BodyError('BODY_UNSTORABLE_STRING', `${field} ${problem}`, [
    { field, message: problem, in: location },
  ]);
}

/**
 * Check every key and string of a parsed body: no unstorable strings, no prototype keys, bounded
 * depth. Iterative with parent links, so a deep body costs linear time and no stack.
 */
export function checkBody(root: unknown, location = 'body'): void {
  const stack: Node[] = [{ value: root, key: '', parent: undefined, depth: 0 }];
  while (stack.length > 0) {
    const node = stack.pop() as Node;
    const { value } = node;
    if (typeof value === 'string') {
      const problem = unstorable(value);
      if (problem) refuseString(node, problem, location);
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    if (node.depth >= MAX_BODY_DEPTH)
      throw new BodyError('BODY_TOO_DEEP', `The body nests deeper than ${MAX_BODY_DEPTH} levels`);
    const entries: Array<[string, unknown]> = Array.isArray(value)
      ? value.map((element, index) => [String(index), element])
      : Object.entries(value);
    for (const [key, child] of entries) {
      const childNode: Node = { value: child, key, parent: node, depth: node.depth + 1 };
      if (!Array.isArray(value)) {
        const keyProblem = unstorable(key);
        if (keyProblem) refuseString(childNode, `key ${keyProblem}`, location);
        if (key === '__proto__' || (key === 'constructor' && child !== null && typeof child === 'object')) {
          const field = fieldOf(childNode);
          throw new BodyError(
            'BODY_FORBIDDEN_KEY',
            `${field} is not allowed: "${key}" keys are refused (prototype pollution)`,
            [{ field, message: 'is a forbidden key', in: location }],
          );
        }
      }
      stack.push(childNode);
    }
  }
}

/** JSON.parse, then checkBody; an empty body counts as no body (the schema then says it is required). */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new BodyError('BODY_MALFORMED_JSON', `Malformed JSON in request body: ${(error as Error).message}`);
  }
  checkBody(value);
  return value;
}

/**
 * RFC 6749 form bodies (application/x-www-form-urlencoded): every value a string, none repeated.
 * Registered only where a route takes forms (the token endpoint); elsewhere the type gets 415.
 */
export function parseFormBody(text: string): Record<string, string> {
  const params = new URLSearchParams(text);
  const body: Record<string, string> = Object.create(null);
  for (const [key, value] of params) {
    if (key in body)
      throw new BodyError('BODY_REPEATED_PARAMETER', `${key} is repeated; send each parameter once`, [
        { field: key, message: 'is repeated', in: 'body' },
      ]);
    body[key] = value;
  }
  checkBody(body);
  return { ...body };
}

const onParsed =
  <T>(parse: (text: string) => T) =>
  (_request: FastifyRequest, text: string | Buffer, done: (error: Error | null, body?: T) => void) => {
    try {
      done(null, parse(text.toString()));
    } catch (error) {
      done(error as Error);
    }
  };

/** Replace Fastify's JSON and text parsers: JSON is checked here; text/plain is not a type we take (415). */
export function useStrictJsonParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, onParsed(parseJsonBody));
}

export function useFormParser(app: FastifyInstance): void {
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string' },
    onParsed(parseFormBody),
  );
}
