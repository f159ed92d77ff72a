/**
 * Route schemas compiled on first use. Fastify compiles every route's validators (Ajv) and
 * serializers (fast-json-stringify) while the app starts; that was a third of a worker's start-up.
 * Here each one compiles when its route first needs it, and `compilePending` compiles the rest in
 * the background once the app listens, so steady traffic never pays for it.
 */
import SerializerSelector from '@fastify/fast-json-stringify-compiler';
import type { FastifyServerOptions } from 'fastify';
import { buildValidator } from './validation.js';

type CompilersFactory = NonNullable<
  NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']
>;
type ValidatorFactory = NonNullable<CompilersFactory['buildValidator']>;
type SerializerFactory = NonNullable<CompilersFactory['buildSerializer']>;

interface Validate {
  (data: unknown): unknown;
  errors?: unknown;
}
type Serialize = (data: unknown) => string;

export interface SchemaCompilers {
  compilersFactory: CompilersFactory;
  /** Compile every schema not compiled yet, one per macrotask; resolves with how many it compiled. */
  compilePending(): Promise<number>;
}

export function createSchemaCompilers(): SchemaCompilers {
  const pending = new Set<() => unknown>();
  /** `compile` runs once, on the first call of the returned getter (or from compilePending). */
  const onFirstUse = <T>(compile: () => T): (() => T) => {
    let compiled: T | undefined;
    const get = () => {
      if (compiled === undefined) {
        compiled = compile();
        pending.delete(get);
      }
      return compiled;
    };
    pending.add(get);
    return get;
  };

  const lazyValidators = ((externalSchemas: unknown, options: unknown) => {
    const compile = (buildValidator as unknown as (...args: unknown[]) => (route: unknown) => Validate)(
      externalSchemas,
      options,
    );
    return (route: unknown) => {
      const inner = onFirstUse(() => compile(route));
      const validate: Validate = (data) => {
        const compiled = inner();
        const valid = compiled(data);
        validate.errors = compiled.errors;
        return valid;
      };
      return validate;
    };
  }) as unknown as ValidatorFactory;

  const lazySerializers = ((externalSchemas: unknown, options: unknown) => {
    const compile = (
      SerializerSelector() as unknown as (...args: unknown[]) => (route: unknown) => Serialize
    )(externalSchemas, options);
    return (route: unknown) => {
      const inner = onFirstUse(() => compile(route));
      return (data: unknown) => inner()(data);
    };
  }) as unknown as SerializerFactory;

  return {
    compilersFactory: { buildValidator: lazyValidators, buildSerializer: lazySerializers },
    async compilePending() {
      let compiled = 0;
      for (const get of [...pending]) {
        // One schema per macrotask: requests arriving meanwhile are served in between.
        await new Promise<void>((resolve) => setImmediate(resolve));
        get();
        compiled += 1;
      }
      return compiled;
    },
  };
}
