// The request contract, decided once for every route:
// - bodies are validated strictly (no type coercion: JSON already has types, and `12345` is not a name);
// - path and query values, which HTTP gives as strings, are coerced, but only from their canonical
//   spelling (`42`, never `1e3`, `0x10` or ` 7`);
// - JSON bodies are parsed here, so that strings PostgreSQL cannot store (NUL, lone surrogates) and
//   prototype keys are refused at the edge with a 400 naming the field (see body.ts).
import { AjvCompiler } from '@fastify/ajv-compiler';
import type { FastifySchema, FastifyServerOptions } from 'fastify';

type ValidatorFactory = NonNullable<
  NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator']
>;
type ExternalSchemas = Parameters<ReturnType<typeof AjvCompiler>>[0];

type Compiler = (route: { schema: unknown; method: string; url: string; httpPart?: string }) => Validate;
interface Validate {
  (data: unknown): boolean | Promise<unknown>;
  errors?: unknown[] | null;
}

// Ajv options shared by both compilers; `discriminator` lets POST /api/tasks pick the payload schema by name.
// `useDefaults` fills in every absent property that has a default: with-default.ts relies on it.
const COMMON = { removeAdditional: false, useDefaults: true, allErrors: true, discriminator: true } as const;

const CANONICAL = {
  integer: /^-?(0|[1-9][0-9]*)$/,
  number: /^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/,
} as const;

interface PropertySchema {
  type?: string;
}

/** A string that would be coerced to a number from a spelling other than the canonical one. */
function nonCanonical(schema: PropertySchema | undefined, value: unknown): boolean {
  const pattern =
    schema?.type === 'integer' || schema?.type === 'number' ? CANONICAL[schema.type] : undefined;
  if (!pattern) return false;
  if (!Array.isArray(value)) return typeof value === 'string' && !pattern.test(value);
  return value.some((one) => typeof one === 'string' && !pattern.test(one));
}

/** Refuse non-canonical numbers before Ajv coerces them, with an error in Ajv's own shape. */
function canonicalOnly(schema: { properties?: Record<string, PropertySchema> }, inner: Validate): Validate {
  // Only the numeric properties can be spelled non-canonically; none: Ajv's validator as it is.
  const numeric = Object.entries(schema.properties ?? {}).filter(
    ([, property]) => property.type === 'integer' || property.type === 'number',
  );
  if (numeric.length === 0) return inner;
  const validate: Validate = (data) => {
    if (data && typeof data === 'object') {
      const record = data as Record<string, unknown>;
      // A loop, not filter/map: this runs on every request and allocates only when it refuses.
      let errors: unknown[] | undefined;
      for (const [name, property] of numeric) {
        if (!nonCanonical(property, record[name])) continue;
        errors ??= [];
        errors.push({
          instancePath: `/${name}`,
          keyword: 'canonical',
          params: {},
          message: `must be ${property.type === 'integer' ? 'an integer' : 'a number'} written in plain digits (e.g. 42)`,
        });
      }
      if (errors) {
        validate.errors = errors;
        return false;
      }
    }
    const valid = inner(data);
    validate.errors = inner.errors;
    return valid;
  };
  return validate;
}

/**
 * Fastify `schemaController.compilersFactory.buildValidator`: strict bodies, canonical coercion
 * elsewhere. Each Ajv instance is created when its first schema compiles (see schema-compilers.ts).
 */
function buildStrictValidator(externalSchemas: unknown, serverOptions: { customOptions?: object } = {}) {
  const ajvCompiler = (coerceTypes: false | 'array') => {
    let compiler: Compiler | undefined;
    return (route: Parameters<Compiler>[0]) => {
      compiler ??= AjvCompiler()(externalSchemas as ExternalSchemas, {
        customOptions: { ...serverOptions.customOptions, ...COMMON, coerceTypes },
      }) as Compiler;
      return compiler(route);
    };
  };
  const strict = ajvCompiler(false);
  const coercing = ajvCompiler('array');
  return (route: { schema: FastifySchema; method: string; url: string; httpPart?: string }) => {
    if (route.httpPart === 'body') return strict(route);
    return canonicalOnly(route.schema as { properties?: Record<string, PropertySchema> }, coercing(route));
  };
}

/** Fastify `schemaController.compilersFactory.buildValidator` (its types describe the plain Ajv one). */
export const buildValidator = buildStrictValidator as unknown as ValidatorFactory;
