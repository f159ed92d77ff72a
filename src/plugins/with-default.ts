import { type Static, type TSchema, Type } from 'typebox';

/**
 * A query parameter (or property) with a default: optional in the OpenAPI document, since a client may
 * leave it out, yet typed as always present in the handler, since Ajv fills the default in before the
 * handler runs (`useDefaults` in validation.ts). `Type.Optional` alone would type it `T | undefined`.
 * A module of its own: the task worker loads the example routes' hash function, not Ajv.
 */
export function withDefault<T extends TSchema>(schema: T, value: Static<T>): T {
  return Object.assign(Type.Optional(schema), { default: value }) as unknown as T;
}
