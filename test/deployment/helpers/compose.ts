import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { settingsSchema } from '../../../src/settings.js';
import { ROOT } from '../../helpers/process.js';

/** Setting names listed in .env.example, read at test time (lines look like `# NAME=default`). */
export function envExampleNames(): Set<string> {
  const text = readFileSync(join(ROOT, '.env.example'), 'utf8');
  return new Set([...text.matchAll(/^#? ?([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1] as string));
}

/** The default value .env.example shows for a setting (`# NAME=value`), if any. */
export function envExampleDefault(name: string): string | undefined {
  const text = readFileSync(join(ROOT, '.env.example'), 'utf8');
  return new RegExp(`^#? ?${name}=(.*)$`, 'm').exec(text)?.[1];
}

const VARIABLE = /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g;

/** Names of the variables a compose file interpolates (`${NAME}`, `${NAME:-x}`, `$NAME`; not `$$`). */
export function interpolatedNames(text: string): string[] {
  const names = new Set<string>();
  const unescaped = text.replace(/\$\$/g, '');
  for (const match of unescaped.matchAll(VARIABLE)) names.add((match[1] ?? match[3]) as string);
  return [...names].sort();
}

/** Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$. */
export function interpolate(value: string, env: Record<string, string>): string {
  const parts = value.split('$$');
  return parts
    .map((part) =>
      part.replace(
        VARIABLE,
        (_all, braced: string | undefined, modifier: string, bare: string | undefined) => {
          const name = (braced ?? bare) as string;
          const current = env[name];
          if (!braced || modifier === '') return current ?? '';
          const operator = /^(:?[-?])/.exec(modifier)?.[1];
          const argument = modifier.slice(operator?.length ?? 0);
          const unset = operator?.startsWith(':')
            ? current === undefined || current === ''
            : current === undefined;
          if (operator?.endsWith('-')) return unset ? argument : (current as string);
          if (operator?.endsWith('?')) {
            if (unset) throw new Error(`required variable ${name} is missing: ${argument}`);
            return current as string;
          }
          throw new Error(`unsupported interpolation \${${name}${modifier}}`);
        },
      ),
    )
    .join('$');
}

function interpolateDeep(value: unknown, env: Record<string, string>): unknown {
  if (typeof value === 'string') return interpolate(value, env);
  if (Array.isArray(value)) return value.map((item) => interpolateDeep(item, env));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, interpolateDeep(item, env)]));
  }
  return value;
}

export interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  environment?: Record<string, string | number | boolean | null>;
  profiles?: string[];
  ports?: Array<string | { target: number; published?: number | string }>;
  container_name?: string;
  restart?: string;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: string[] | string; disable?: boolean; interval?: string; timeout?: string };
  stop_grace_period?: string;
  labels?: string[] | Record<string, string>;
  volumes?: string[];
  networks?: Record<string, { aliases?: string[] } | null>;
  deploy?: {
    mode?: string;
    replicas?: number | string;
    resources?: { limits?: { cpus?: string; memory?: string }; reservations?: Record<string, string> };
    update_config?: Record<string, unknown>;
    rollback_config?: Record<string, unknown>;
    restart_policy?: Record<string, unknown>;
  };
  [key: string]: unknown;
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  [key: string]: unknown;
}

/** A compose file as Compose reads it: YAML merge keys applied, then variables interpolated. */
export function loadCompose(path: string, env: Record<string, string> = {}): ComposeFile {
  const raw = parse(readFileSync(path, 'utf8'), { merge: true }) as ComposeFile;
  return interpolateDeep(raw, env) as ComposeFile;
}

/** Seconds in a compose duration such as 45s, 1m30s or 500ms. */
export function durationSeconds(value: string): number {
  let total = 0;
  for (const match of value.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)) {
    const amount = Number(match[1]);
    total += { ms: amount / 1000, s: amount, m: amount * 60, h: amount * 3600 }[
      match[2] as 'ms' | 's' | 'm' | 'h'
    ];
  }
  return total;
}

/** The schema default of a setting in src/settings.ts. */
export function settingDefault(name: keyof typeof settingsSchema.properties): unknown {
  return (settingsSchema.properties[name] as { default?: unknown }).default;
}
