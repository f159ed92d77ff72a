// fast-check arbitraries from an OpenAPI 3.1 document's JSON Schemas: values that the schema accepts,
// and the places in such a value where a mutation makes it invalid. Only the keywords this service's
// document uses are understood; an unknown one fails loudly so the fuzz test never silently weakens.
import fc from 'fast-check';

export type Schema = Record<string, unknown> & {
  type?: string;
  $ref?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  const?: unknown;
  enum?: unknown[];
};

/** Inline every `#/components/schemas/X` reference (the document has no recursive schema). */
export function deref(schema: unknown, components: Record<string, Schema>): Schema {
  if (Array.isArray(schema)) return schema.map((item) => deref(item, components)) as unknown as Schema;
  if (!schema || typeof schema !== 'object') return schema as Schema;
  const record = schema as Schema;
  if (record.$ref) {
    const name = record.$ref.replace('#/components/schemas/', '');
    const target = components[name];
    if (!target) throw new Error(`unresolved $ref ${record.$ref}`);
    const { $ref: _ref, ...siblings } = record;
    return { ...deref(target, components), ...siblings };
  }
  return Object.fromEntries(
    Object.entries(record).map(([key, value]) => [key, deref(value, components)]),
  ) as Schema;
}

/** True when a string is one this service stores: no NUL, no lone surrogate (the contract's rule). */
export const storable = (value: string) => !value.includes('\u0000') && !/\p{Cs}/u.test(value);

const SMALL = 1000;
const INT32 = 2 ** 31 - 1;

function integers(min: number, max: number): fc.Arbitrary<number> {
  const near = (from: number) => fc.integer({ min: from, max: Math.min(max, from + SMALL) });
  const parts = [near(min), fc.constant(max), fc.constant(min)];
  if (min <= INT32 && max >= -INT32)
    parts.push(fc.integer({ min: Math.max(min, -INT32), max: Math.min(max, INT32) }));
  return fc.oneof(...parts);
}

function strings(schema: Schema): fc.Arbitrary<string> {
  const minLength = (schema.minLength as number | undefined) ?? 0;
  const maxLength = (schema.maxLength as number | undefined) ?? 10_000;
  if (typeof schema.pattern === 'string') return fc.stringMatching(new RegExp(schema.pattern));
  if (schema.format === 'email')
    return fc.stringMatching(/^[a-z0-9]{1,20}$/).map((local) => `${local}@example.com`);
  if (schema.format === 'date-time')
    return fc.date({ noInvalidDate: true }).map((date) => date.toISOString());
  // Code points, as JSON Schema counts length; edge lengths too.
  const text = fc
    .string({ unit: 'binary', minLength, maxLength: Math.min(maxLength, Math.max(minLength, 40)) })
    .filter(storable);
  return fc.oneof(
    { weight: 8, arbitrary: text },
    { weight: 1, arbitrary: fc.constant('x'.repeat(maxLength)) },
  );
}

/** A single-value schema (`const`, or `enum` of one, as the document renders literals) that `value` equals. */
const matchesConstant = (rule: Schema, value: unknown) =>
  ('const' in rule && rule.const === value) || (rule.enum?.length === 1 && rule.enum[0] === value);

/** Optional properties of an object that an `allOf: [{ if, then: { required } }]` makes required. */
function requiredByConditions(schema: Schema, value: Record<string, unknown>): string[] {
  return (schema.allOf ?? []).flatMap((condition) => {
    const test = (condition.if as Schema | undefined)?.properties ?? {};
    const matches = Object.entries(test).every(([key, rule]) => matchesConstant(rule, value[key]));
    return matches ? (((condition.then as Schema | undefined)?.required as string[] | undefined) ?? []) : [];
  });
}

function objects(schema: Schema): fc.Arbitrary<Record<string, unknown>> {
  const properties = schema.properties ?? {};
  const required = new Set(schema.required ?? []);
  const names = Object.keys(properties);
  if (names.length === 0) {
    if (schema.additionalProperties === false) return fc.constant({});
    return fc.dictionary(
      fc
        .string({ maxLength: 10 })
        .filter((key) => storable(key) && key !== '__proto__' && key !== 'constructor'),
      fc.jsonValue({ maxDepth: 2 }).filter((value) => storable(JSON.stringify(value))),
      { maxKeys: 3 },
    );
  }
  const values = fc.record(
    Object.fromEntries(names.map((name) => [name, arbitraryFor(properties[name] as Schema)])),
  );
  const keep = fc.record(Object.fromEntries(names.map((name) => [name, fc.boolean()])));
  const minProperties = (schema.minProperties as number | undefined) ?? 0;
  return fc.tuple(values, keep).map(([all, kept]) => {
    const mustHave = new Set([...required, ...requiredByConditions(schema, all)]);
    const chosen = names.filter((name) => mustHave.has(name) || kept[name]);
    for (const name of names) if (chosen.length < minProperties && !chosen.includes(name)) chosen.push(name);
    return Object.fromEntries(chosen.map((name) => [name, all[name]]));
  });
}

const KNOWN = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'anyOf',
  'oneOf',
  'allOf',
  'const',
  'enum',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'minProperties',
  'description',
  'title',
  'default',
  'discriminator',
  '$id',
]);

/** Values the schema accepts. */
export function arbitraryFor(schema: Schema): fc.Arbitrary<unknown> {
  const unknownKeywords = Object.keys(schema).filter((key) => !KNOWN.has(key));
  if (unknownKeywords.length > 0)
    throw new Error(`fuzz generator does not know ${unknownKeywords.join(', ')}`);
  if ('const' in schema) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const union = schema.oneOf ?? schema.anyOf;
  if (union) return fc.oneof(...union.map(arbitraryFor));
  switch (schema.type) {
    case 'string':
      return strings(schema);
    case 'integer':
      return integers(
        (schema.minimum as number | undefined) ?? -Number.MAX_SAFE_INTEGER,
        (schema.maximum as number | undefined) ?? Number.MAX_SAFE_INTEGER,
      );
    case 'number':
      return fc.double({
        min: (schema.minimum as number | undefined) ?? -1e9,
        max: (schema.maximum as number | undefined) ?? 1e9,
        noNaN: true,
        noDefaultInfinity: true,
      });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array':
      return fc.array(arbitraryFor(schema.items ?? {}), { maxLength: 3 });
    case 'object':
      return objects(schema);
    case undefined:
      return fc.jsonValue({ maxDepth: 2 }).filter((value) => storable(JSON.stringify(value)));
    default:
      throw new Error(`fuzz generator does not know type ${schema.type}`);
  }
}

/** The JSON types a schema allows (for wrong-type mutations); empty when it allows anything. */
export function allowedTypes(schema: Schema): Set<string> {
  if ('const' in schema)
    return new Set([
      schema.const === null
        ? 'null'
        : typeof schema.const === 'number'
          ? Number.isInteger(schema.const)
            ? 'integer'
            : 'number'
          : typeof schema.const,
    ]);
  const union = schema.oneOf ?? schema.anyOf;
  if (union) return new Set(union.flatMap((branch) => [...allowedTypes(branch)]));
  if (schema.enum) return new Set(schema.enum.map((value) => typeof value));
  return schema.type ? new Set([schema.type]) : new Set();
}

/** A field of a generated value: where it is and the schema it must satisfy. */
export interface Field {
  path: string[];
  schema: Schema;
  parent: Schema;
}

/** The branch of a union that a value was generated from (by its const discriminator, else the first object). */
function branchOf(schema: Schema, value: unknown): Schema {
  const union = schema.oneOf ?? schema.anyOf;
  if (!union) return schema;
  const record = (value ?? {}) as Record<string, unknown>;
  return (
    union.find((branch) =>
      Object.entries(branch.properties ?? {}).some(
        ([key, rule]) => 'const' in rule && record[key] === rule.const,
      ),
    ) ??
    union.find((branch) => branch.type === 'object') ??
    schema
  );
}

/** Object properties of a value, two levels deep (a task request's own fields and its payload's). */
export function fieldsOf(schema: Schema, value: unknown, path: string[] = [], depth = 0): Field[] {
  const branch = branchOf(schema, value);
  if (branch.type !== 'object' || !value || typeof value !== 'object' || depth > 1) return [];
  return Object.entries(branch.properties ?? {}).flatMap(([name, property]) => {
    const here: Field = { path: [...path, name], schema: property, parent: branch };
    const child = (value as Record<string, unknown>)[name];
    return [here, ...fieldsOf(property, child, [...path, name], depth + 1)];
  });
}

export function objectsOf(schema: Schema, value: unknown, path: string[] = [], depth = 0): Field[] {
  const branch = branchOf(schema, value);
  if (branch.type !== 'object' || !value || typeof value !== 'object' || depth > 1) return [];
  const here: Field = { path, schema: branch, parent: branch };
  return [
    here,
    ...Object.entries(branch.properties ?? {}).flatMap(([name, property]) =>
      objectsOf(property, (value as Record<string, unknown>)[name], [...path, name], depth + 1),
    ),
  ];
}
