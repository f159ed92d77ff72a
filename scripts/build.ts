/**
 * `npm run build`: src/**\/*.ts -> dist/, one JavaScript file per source file (esbuild; type
 * checking is `npm run typecheck`), plus dist/vendor/: the dependencies in VENDORED bundled into a
 * few files. Node resolves and loads every module file on its own, and a package of hundreds of
 * small files (TypeBox has 709) costs a process ~90 ms to start even with V8's compile cache;
 * as one bundle it costs ~3 ms. Every process of every level pays that, and a LEVEL=3 start pays
 * it twice in a row (the primary, then its workers). Our own files stay separate, so lazy
 * `import()`s stay lazy and each module keeps its path.
 */
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { Ajv } from 'ajv';
import standalone from 'ajv/dist/standalone/index.js';
import { build, type Plugin } from 'esbuild';
import { settingsSchema } from '../src/settings.js';
import {
  PRECOMPILED_VALIDATOR_FILE,
  SETTINGS_AJV_OPTIONS,
  validatedSchema,
} from '../src/settings-validator.js';

const ROOT = resolve(import.meta.dirname, '..');
const OUT = join(ROOT, 'dist');
const TARGET = 'node22';

/**
 * Import specifiers served from dist/vendor/ instead of node_modules: pure JavaScript packages
 * that read no files next to their own code and need no load-time instrumentation (tracing
 * patches pg and ioredis as they load, so those stay in node_modules).
 */
export const VENDORED = {
  typebox: 'typebox',
  'typebox-compile': 'typebox/compile',
  fastify: 'fastify',
  'fastify-plugin': 'fastify-plugin',
  'ajv-compiler': '@fastify/ajv-compiler',
  'fast-json-stringify-compiler': '@fastify/fast-json-stringify-compiler',
} as const;

const vendorFileOf = new Map<string, string>(
  Object.entries(VENDORED).map(([file, specifier]) => [specifier, `${file}.js`]),
);

/** Keep every import as it is, except vendored packages, which point at their bundle. */
function importsAsWritten(): Plugin {
  return {
    name: 'imports-as-written',
    setup(builder) {
      builder.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === 'entry-point') return undefined;
        const vendorFile = vendorFileOf.get(args.path);
        if (!vendorFile) return { path: args.path, external: true };
        const from = dirname(join(OUT, relative(join(ROOT, 'src'), args.importer)));
        const path = posix.normalize(
          relative(from, join(OUT, 'vendor', vendorFile))
            .split('\\')
            .join('/'),
        );
        return { path: path.startsWith('.') ? path : `./${path}`, external: true };
      });
    },
  };
}

/**
 * One entry per vendored specifier, exporting exactly the names Node gives an importer of the
 * package itself (for CommonJS that is what Node's export detection finds, and `default`).
 */
async function vendorEntries(): Promise<Plugin> {
  const stubs = new Map<string, string>();
  for (const specifier of Object.values(VENDORED)) {
    const namespace: object = await import(specifier);
    const names = Object.keys(namespace).filter(
      // Node 24 also lists 'module.exports' for CommonJS; only plain identifiers are named exports.
      (name) => name !== 'default' && /^[A-Za-z_$][\w$]*$/.test(name),
    );
    const lines = [`import * as namespace from '${specifier}';`];
    if ('default' in namespace) lines.push('export default namespace.default;');
    if (names.length > 0) lines.push(`export const { ${names.join(', ')} } = namespace;`);
    stubs.set(specifier, lines.join('\n'));
  }
  return {
    name: 'vendor-entries',
    setup(builder) {
      builder.onResolve({ filter: /^vendor:/ }, (args) => ({
        path: args.path.slice(7),
        namespace: 'vendor',
      }));
      builder.onLoad({ filter: /.*/, namespace: 'vendor' }, (args) => ({
        contents: stubs.get(args.path) as string,
        resolveDir: ROOT,
      }));
    },
  };
}

/** The settings validator as Ajv standalone code (src/settings-validator.ts loads it). */
function writeSettingsValidator(): void {
  const ajv = new Ajv({ ...SETTINGS_AJV_OPTIONS, code: { source: true } });
  const validate = ajv.compile(validatedSchema(settingsSchema));
  writeFileSync(join(OUT, PRECOMPILED_VALIDATOR_FILE), standalone.default(ajv, validate));
}

async function main(): Promise<void> {
  rmSync(OUT, { recursive: true, force: true });
  const sources = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))
    .map((file) => join('src', file));
  await build({
    absWorkingDir: ROOT,
    entryPoints: sources,
    outdir: OUT,
    outbase: 'src',
    bundle: true,
    plugins: [importsAsWritten()],
    platform: 'node',
    format: 'esm',
    target: TARGET,
    sourcemap: true,
    logLevel: 'warning',
  });
  await build({
    absWorkingDir: ROOT,
    entryPoints: Object.fromEntries(
      Object.entries(VENDORED).map(([file, specifier]) => [file, `vendor:${specifier}`]),
    ),
    plugins: [await vendorEntries()],
    // One copy of what our code also imports (or tracing patches): those stay in node_modules.
    external: ['pino', 'pg', 'ioredis', 'prom-client', '@opentelemetry/*'],
    outdir: join(OUT, 'vendor'),
    bundle: true,
    splitting: true,
    chunkNames: 'shared-[hash]',
    // CommonJS packages call require() for Node's own modules; an ES module has no require of its own.
    banner: {
      js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
    },
    platform: 'node',
    format: 'esm',
    target: TARGET,
    logLevel: 'warning',
  });
  writeSettingsValidator();
}

await main();
