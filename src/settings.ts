import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseEnv } from 'node:util';
import { type Static, Type } from 'typebox';
import { checkAuthSettings } from './auth/settings-check.js';
import { redisConfigured } from './redis/target.js';
import { describeExpected, formatSettingsErrors, type SettingProblem } from './settings-errors.js';
import { checkRedisSettings } from './settings-redis.js';
import { parseTrustProxy, TRUST_PROXY_EXPECTED, type TrustProxy } from './settings-trust-proxy.js';
import { type AjvError, settingsValidator } from './settings-validator.js';

/**
 * Every environment variable the service reads, declared once: type, default, description.
 * `.env.example` and `docs/configuration.md` are generated from this schema (`npm run config:docs`).
 */
export const settingsSchema = Type.Object({
  LEVEL: Type.Integer({
    minimum: 1,
    maximum: 4,
    default: 1,
    description:
      'Scaling level preset: 1 one process, 2 cluster, 3 supervised cluster, 4 level 3 + task workers',
  }),
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], {
    default: 'development',
    description: 'Runtime environment; production refuses insecure or missing essentials',
  }),
  HOST: Type.String({ minLength: 1, default: '0.0.0.0', description: 'Interface the HTTP server binds to' }),
  PORT: Type.Integer({
    minimum: 0,
    maximum: 65535,
    default: 3000,
    description: 'TCP port of the HTTP server',
  }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info', description: 'pino log level; logs are JSON, pretty only when stdout is a terminal' },
  ),
  DATABASE_URL: Type.Optional(
    Type.String({
      description:
        'PostgreSQL URL (postgres://user:pass@host:5432/db); unset outside production = embedded PostgreSQL',
    }),
  ),
  MIGRATIONS_DATABASE_URL: Type.Optional(
    Type.String({
      description:
        'Direct PostgreSQL URL for migrations, which need a session (advisory lock); set it when DATABASE_URL goes through PgBouncer (default: DATABASE_URL)',
    }),
  ),
  DB_POOL_SIZE: Type.Integer({
    minimum: 1,
    maximum: 1000,
    default: 10,
    description: 'Connections per process in the pg pool',
  }),
  DB_CONNECT_TIMEOUT_MS: Type.Integer({
    minimum: 100,
    default: 2000,
    description: 'How long a query waits for a connection before answering 503 (ms)',
  }),
  DB_STATEMENT_TIMEOUT_MS: Type.Integer({
    minimum: 0,
    default: 10000,
    description:
      'statement_timeout of the app database (ms, 0 = none), set as a database default by the migrate step so it holds through PgBouncer',
  }),
  EMBEDDED_PG_PORT: Type.Integer({
    minimum: 1,
    maximum: 65535,
    default: 54329,
    description: 'Port of the embedded development PostgreSQL (used only when DATABASE_URL is unset)',
  }),
  EMBEDDED_PG_DIR: Type.String({
    minLength: 1,
    default: '.data/postgres',
    description: 'Data directory of the embedded development PostgreSQL',
  }),
  BODY_LIMIT: Type.Integer({
    minimum: 1,
    default: 1048576,
    description: 'Largest accepted request body (bytes)',
  }),
  KEEP_ALIVE_TIMEOUT: Type.Number({
    exclusiveMinimum: 0,
    default: 65,
    description: 'Idle keep-alive timeout (s); keep it longer than your load balancer idle timeout',
  }),
  REQUEST_TIMEOUT: Type.Number({
    minimum: 0,
    default: 60,
    description: 'Longest time to receive a whole request (s, 0 = none)',
  }),
  // 10 s: under GRACEFUL_TIMEOUT (a shutdown never has to cut a request) and the proxy templates' 60 s
  // read timeout (the client reads our 503, not a proxy's 504); equal to DB_STATEMENT_TIMEOUT_MS, and a
  // request's statements start after the request, so the deadline fires first and statement_timeout
  // is the backstop for a cancel that never lands.
  REQUEST_DEADLINE_MS: Type.Integer({
    minimum: 0,
    maximum: 86_400_000,
    default: 10000,
    description:
      'Longest a request may take from arrival to its answer: then 503 + Retry-After, and the database query running for it is cancelled (ms, 0 = off); keep it at or below DB_STATEMENT_TIMEOUT_MS so it fires first',
  }),
  GRACEFUL_TIMEOUT: Type.Number({
    exclusiveMinimum: 0,
    default: 30,
    description: 'Time in-flight requests get to finish on shutdown or recycle before exit is forced (s)',
  }),
  CORS_ORIGINS: Type.String({
    default: '',
    description: 'Comma-separated allowed CORS origins; empty = CORS off; * = any (refused in production)',
  }),
  // A string parsed by settings-trust-proxy.ts: Fastify's forms, validated entry by entry.
  TRUST_PROXY: Type.String({
    default: 'false',
    description:
      'Peers whose X-Forwarded-For/-Proto/-Host are believed: false, true (any), a hop count, or comma-separated addresses/CIDRs of your proxies (narrowest is safest; docs/deployment.md#behind-a-proxy)',
  }),
  OPENAPI_DOCS: Type.Boolean({ default: true, description: 'Serve /docs (UI) and /openapi.json' }),
  LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: Type.Integer({
    minimum: 0,
    default: 1000,
    description:
      'Answer 503 + Retry-After when the mean event-loop delay over a 1 s sample exceeds this (ms, 0 = off)',
  }),
  LOAD_SHED_MAX_ELU: Type.Number({
    minimum: 0,
    maximum: 1,
    default: 0,
    description: 'Answer 503 + Retry-After when event-loop utilisation exceeds this (0-1, 0 = off)',
  }),
  LOAD_SHED_RETRY_AFTER: Type.Integer({
    minimum: 1,
    default: 5,
    description: 'Retry-After sent with load-shedding 503s (s)',
  }),
  WORKERS: Type.Integer({
    minimum: 0,
    maximum: 256,
    default: 0,
    description: 'App processes at LEVEL>=2 (0 = the CPUs available to this process, cgroup limits included)',
  }),
  LISTEN_REUSE_PORT: Type.Optional(
    Type.Boolean({
      description:
        'LEVEL>=2: each worker binds its own SO_REUSEPORT listener (kernel spreads connections) instead of the primary handing them out (default: on on Linux)',
    }),
  ),
  WORKER_TIMEOUT: Type.Number({
    exclusiveMinimum: 0,
    default: 30,
    description: 'LEVEL 3: seconds without a heartbeat before a worker counts as hung and is replaced',
  }),
  WORKER_BOOT_TIMEOUT: Type.Number({
    exclusiveMinimum: 0,
    default: 30,
    description: 'LEVEL>=2: seconds a new worker has to become ready before it counts as failed',
  }),
  MAX_REQUESTS: Type.Integer({
    minimum: 0,
    default: 0,
    description: 'LEVEL 3: recycle a worker after this many requests (0 = off; preset 10000 at LEVEL>=3)',
  }),
  MAX_REQUESTS_JITTER: Type.Integer({
    minimum: 0,
    default: 0,
    description: 'LEVEL 3: random extra requests per worker in [0, jitter] so workers recycle apart',
  }),
  MAX_WORKER_MEMORY_MB: Type.Integer({
    minimum: 0,
    default: 0,
    description: 'LEVEL 3: recycle a worker whose RSS exceeds this (MB, 0 = off; preset 1024 at LEVEL>=3)',
  }),
  PID_FILE: Type.String({ default: '', description: 'LEVEL>=2: write the primary pid here (empty = none)' }),
  REDIS_URL: Type.Optional(
    Type.String({
      description:
        'Redis for background tasks (redis://[:password@]host:6379/0); unset outside production = redis://127.0.0.1:6379',
    }),
  ),
  REDIS_SENTINELS: Type.Optional(
    Type.String({
      description:
        'Redis Sentinel addresses (host:port,host:port); with REDIS_SENTINEL_NAME every Redis client finds the master through them, and REDIS_URL gives only credentials and db',
    }),
  ),
  REDIS_SENTINEL_NAME: Type.Optional(
    Type.String({
      minLength: 1,
      description: 'Master group name the sentinels monitor (with REDIS_SENTINELS)',
    }),
  ),
  REDIS_SENTINEL_PASSWORD: Type.Optional(
    Type.String({
      description: 'Password of the sentinels themselves (requirepass in sentinel.conf), if any',
    }),
  ),
  ENABLE_BACKGROUND_TASKS: Type.Boolean({
    default: false,
    description: 'Task API and queues on Redis (BullMQ); preset true at LEVEL=4',
  }),
  TASK_WORKERS: Type.Integer({
    minimum: 0,
    maximum: 64,
    default: 1,
    description:
      'Task-worker processes the LEVEL=4 primary runs beside the HTTP workers (0 = run them elsewhere)',
  }),
  TASK_CONCURRENCY: Type.Integer({
    minimum: 1,
    maximum: 1000,
    default: 10,
    description: 'I/O jobs at once per task-worker process (queue "default")',
  }),
  TASK_CPU_CONCURRENCY: Type.Integer({
    minimum: 1,
    maximum: 64,
    default: 1,
    description: 'CPU-heavy jobs at once per task-worker process, each in a worker thread (queue "cpu")',
  }),
  TASK_SHUTDOWN_TIMEOUT: Type.Number({
    exclusiveMinimum: 0,
    default: 30,
    description:
      'Seconds a task worker waits for active jobs on shutdown before abandoning them (they are retried)',
  }),
  TASK_LOCK_DURATION: Type.Number({
    minimum: 1,
    default: 30,
    description: 'Seconds a job lock lasts; a job whose worker died is retried about this long after',
  }),
  TASK_KEEP_COMPLETED_AGE: Type.Integer({
    minimum: 0,
    default: 86400,
    description: 'Keep completed jobs this many seconds',
  }),
  TASK_KEEP_COMPLETED_COUNT: Type.Integer({
    minimum: 0,
    default: 1000,
    description: 'Keep at most this many completed jobs per queue',
  }),
  TASK_KEEP_FAILED_AGE: Type.Integer({
    minimum: 0,
    default: 604800,
    description: 'Keep failed jobs this many seconds',
  }),
  TASK_KEEP_FAILED_COUNT: Type.Integer({
    minimum: 0,
    default: 5000,
    description: 'Keep at most this many failed jobs per queue',
  }),
  TASK_EVENTS_MAX_LEN: Type.Integer({
    minimum: 100,
    default: 10000,
    description: 'Cap of each queue event stream in Redis',
  }),
  QUEUE_PREFIX: Type.String({
    minLength: 1,
    pattern: '^[A-Za-z0-9_{}.-]+$',
    default: 'bull',
    description:
      'BullMQ key prefix (also of cache and rate-limit keys); on Redis Cluster use one hash tag such as {bull}',
  }),
  REDIS_ALLOW_EVICTION: Type.Boolean({
    default: false,
    description:
      "Start task workers in production although Redis's maxmemory-policy is not noeviction (evicted keys lose BullMQ jobs)",
  }),
  TASK_WORKER_HEALTH_PORT: Type.Integer({
    minimum: 0,
    maximum: 65535,
    default: 3001,
    description: 'Task worker liveness and metrics port (GET /health/live, /metrics; 0 = off)',
  }),
  OUTBOX_POLL_MS: Type.Integer({
    minimum: 1,
    maximum: 60000,
    default: 50,
    description:
      'How often each task worker relays committed outbox rows to Redis (ms); a full batch is followed at once by the next',
  }),
  OUTBOX_BATCH_SIZE: Type.Integer({
    minimum: 1,
    maximum: 1000,
    default: 100,
    description: 'Outbox rows a relay claims and hands to BullMQ per transaction',
  }),
  OUTBOX_RETENTION: Type.Integer({
    minimum: 0,
    default: 3600,
    description: 'Keep relayed (or cancelled) outbox rows this many seconds, then prune them (0 = at once)',
  }),
  SHARED_CACHE_URL: Type.Optional(
    Type.String({ description: 'Redis for the shared cache and rate limits (default: REDIS_URL)' }),
  ),
  RATE_LIMIT_MAX: Type.Integer({
    minimum: 0,
    default: 0,
    description: 'Requests per client IP per window on /api routes (0 = no limit)',
  }),
  RATE_LIMIT_WINDOW: Type.Number({ exclusiveMinimum: 0, default: 60, description: 'Rate-limit window (s)' }),
  RATE_LIMIT_FAIL_OPEN: Type.Boolean({
    default: true,
    description: 'With the shared store unreachable: true lets requests through, false answers 503',
  }),
  CACHE_TTL: Type.Number({
    exclusiveMinimum: 0,
    default: 60,
    description: 'Seconds a cached item stays valid (invalidated on change)',
  }),
  IDEMPOTENCY_KEY_TTL: Type.Integer({
    minimum: 60,
    maximum: 30 * 86400,
    default: 86400,
    description:
      'How long the first answer to a POST/PATCH with an Idempotency-Key is kept and replayed (s); then the key is free again',
  }),
  IDEMPOTENCY_KEY_LEASE: Type.Integer({
    minimum: 1,
    maximum: 3600,
    default: 60,
    description:
      'A keyed request still in flight after this long (its process died) may be run again by a retry (s); keep it above your longest request',
  }),
  SESSION_AFFINITY: Type.Boolean({
    default: false,
    description:
      'Sticky sessions: the app issues the lb_affinity cookie and the nginx/Traefik templates pin each client to one server',
  }),
  BULL_BOARD_USER: Type.String({
    default: '',
    description: 'bull-board dashboard (/admin/queues) basic-auth user; empty = dashboard off',
  }),
  BULL_BOARD_PASSWORD: Type.String({
    default: '',
    description: 'bull-board dashboard basic-auth password (at least 12 characters in production)',
  }),
  BULL_BOARD_READ_ONLY: Type.Boolean({
    default: false,
    description: 'bull-board without retry, promote or remove buttons',
  }),
  // OpenTelemetry tracing: the standard OTEL_* names, read here so that a .env file works too and a
  // bad value stops start-up like any other setting. Tracing is on when an OTLP endpoint is set.
  OTEL_SDK_DISABLED: Type.Boolean({
    default: false,
    description: 'Tracing off even when an OTLP endpoint is set',
  }),
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(
    Type.String({
      description:
        'OTLP/HTTP collector base URL (http://collector:4318; spans go to <url>/v1/traces); set = tracing on',
    }),
  ),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Type.Optional(
    Type.String({
      description: 'Full OTLP/HTTP traces URL (wins over OTEL_EXPORTER_OTLP_ENDPOINT); set = tracing on',
    }),
  ),
  OTEL_EXPORTER_OTLP_PROTOCOL: Type.Union([Type.Literal('http/protobuf'), Type.Literal('http/json')], {
    default: 'http/protobuf',
    description: "OTLP encoding (grpc is not supported: use the collector's HTTP port 4318)",
  }),
  OTEL_EXPORTER_OTLP_HEADERS: Type.String({
    default: '',
    description: 'Headers sent with every export, key=value pairs separated by commas (e.g. an API key)',
  }),
  OTEL_EXPORTER_OTLP_TIMEOUT: Type.Integer({
    minimum: 1,
    default: 10000,
    description: 'Longest wait for the collector to accept one batch (ms)',
  }),
  OTEL_SERVICE_NAME: Type.Optional(
    Type.String({
      minLength: 1,
      description:
        'service.name of every span (default: service.name in OTEL_RESOURCE_ATTRIBUTES, else node-levels-starter)',
    }),
  ),
  OTEL_RESOURCE_ATTRIBUTES: Type.String({
    default: '',
    description:
      'Extra resource attributes, key=value pairs separated by commas (service.instance.id is set per process)',
  }),
  OTEL_TRACES_SAMPLER: Type.Union(
    [
      Type.Literal('always_on'),
      Type.Literal('always_off'),
      Type.Literal('traceidratio'),
      Type.Literal('parentbased_always_on'),
      Type.Literal('parentbased_always_off'),
      Type.Literal('parentbased_traceidratio'),
    ],
    {
      default: 'parentbased_always_on',
      description:
        'Which traces are recorded; parentbased_* follow the sampled flag of an incoming traceparent',
    },
  ),
  OTEL_TRACES_SAMPLER_ARG: Type.Number({
    minimum: 0,
    maximum: 1,
    default: 1,
    description: 'Ratio of traces kept by the traceidratio samplers (0-1)',
  }),
  OTEL_BSP_MAX_QUEUE_SIZE: Type.Integer({
    minimum: 1,
    default: 2048,
    description: 'Finished spans held for export per process; past it spans are dropped (and counted)',
  }),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: Type.Integer({
    minimum: 1,
    default: 512,
    description: 'Most spans sent in one export (at most OTEL_BSP_MAX_QUEUE_SIZE)',
  }),
  OTEL_BSP_SCHEDULE_DELAY: Type.Integer({
    minimum: 1,
    default: 5000,
    description: 'Longest time a finished span waits before its batch is exported (ms)',
  }),
  OTEL_BSP_EXPORT_TIMEOUT: Type.Integer({
    minimum: 1,
    default: 30000,
    description: 'Longest time one batch export may take, retries included, before it is abandoned (ms)',
  }),
  AUTH_SECRET: Type.String({
    default: '',
    description:
      'Key that signs access and refresh tokens (32+ characters; required in production; empty = a fixed development key)',
  }),
  AUTH_PREVIOUS_SECRET: Type.String({
    default: '',
    description:
      'Key rotation: tokens signed with this older key are still accepted; new ones use AUTH_SECRET',
  }),
  AUTH_SECRET_FILE: Type.Optional(
    Type.String({
      description:
        'File whose contents (trimmed) are AUTH_SECRET when AUTH_SECRET is unset: a Docker or Kubernetes secret, or the compose secrets-init volume',
    }),
  ),
  AUTH_PREVIOUS_SECRET_FILE: Type.Optional(
    Type.String({
      description: 'File whose contents (trimmed) are AUTH_PREVIOUS_SECRET when that is unset',
    }),
  ),
  AUTH_ACCESS_TOKEN_TTL: Type.Integer({
    minimum: 1,
    maximum: 86400,
    default: 900,
    description: 'Lifetime of an access token (s)',
  }),
  AUTH_REFRESH_TOKEN_TTL: Type.Integer({
    minimum: 60,
    default: 1209600,
    description:
      'Lifetime of a refresh token (s): a session unused this long ends; each refresh rotates the token and starts it again',
  }),
  AUTH_SESSION_MAX_AGE: Type.Integer({
    minimum: 60,
    default: 2592000,
    description:
      'Absolute lifetime of a sign-in session (s), whatever the refreshes: then the user signs in again',
  }),
  FIRST_USER_EMAIL: Type.String({
    default: '',
    description: 'Created at start when missing (idempotent across workers and replicas); empty = none',
  }),
  FIRST_USER_PASSWORD: Type.String({
    default: '',
    description:
      'Password of FIRST_USER_EMAIL when it is created (12+ characters in production); never updated',
  }),
  LOGIN_RATE_LIMIT_MAX: Type.Integer({
    minimum: 0,
    default: 10,
    description:
      'Sign-in attempts per account and per client address per LOGIN_RATE_LIMIT_WINDOW (0 = no limit)',
  }),
  LOGIN_RATE_LIMIT_WINDOW: Type.Number({
    exclusiveMinimum: 0,
    default: 300,
    description: 'Window of the sign-in rate limit (s)',
  }),
});

export type Settings = Static<typeof settingsSchema>;
export type SettingName = keyof Settings;

/** Defaults a LEVEL brings; any variable set explicitly wins over its preset. */
export const levelPresets: Record<number, Partial<Record<SettingName, string>>> = {
  1: {},
  2: {},
  3: { MAX_REQUESTS: '10000', MAX_REQUESTS_JITTER: '1000', MAX_WORKER_MEMORY_MB: '1024' },
  4: {
    MAX_REQUESTS: '10000',
    MAX_REQUESTS_JITTER: '1000',
    MAX_WORKER_MEMORY_MB: '1024',
    ENABLE_BACKGROUND_TASKS: 'true',
  },
};

/** Variables whose values must never appear in logs or error messages. */
export const secretSettings: ReadonlySet<string> = new Set([
  'DATABASE_URL',
  'MIGRATIONS_DATABASE_URL',
  'REDIS_URL',
  'SHARED_CACHE_URL',
  'REDIS_SENTINEL_PASSWORD',
  'BULL_BOARD_PASSWORD',
  'OTEL_EXPORTER_OTLP_HEADERS',
  'AUTH_SECRET',
  'AUTH_PREVIOUS_SECRET',
  'FIRST_USER_PASSWORD',
]);

export class SettingsError extends Error {
  constructor(readonly problems: SettingProblem[]) {
    super(formatSettingsErrors(problems));
    this.name = 'SettingsError';
  }
}

export interface LoadOptions {
  /** Path of a dotenv file to read if present; null to read none. */
  envFile?: string | null;
  /** The process signs sign-in tokens (the HTTP server): production then requires a strong AUTH_SECRET. */
  signsTokens?: boolean;
}

function readEnvFile(path: string | null): Record<string, string> {
  if (!path || !existsSync(path)) return {};
  return parseEnv(readFileSync(path, 'utf8')) as Record<string, string>;
}

/**
 * Secrets that may come from a file, as the official images' `X_FILE` convention has it (Docker and
 * Kubernetes secrets are mounted as files): X_FILE names the file, and X set directly wins.
 */
const FILE_SETTINGS = [
  ['AUTH_SECRET', 'AUTH_SECRET_FILE'],
  ['AUTH_PREVIOUS_SECRET', 'AUTH_PREVIOUS_SECRET_FILE'],
] as const;

/** Fill each unset X from X_FILE, in place; one problem per file that cannot be used (never its contents). */
function readSecretFiles(explicit: Record<string, string>): SettingProblem[] {
  const problems: SettingProblem[] = [];
  for (const [name, fileName] of FILE_SETTINGS) {
    const path = explicit[fileName];
    if (path === undefined || explicit[name] !== undefined) continue;
    let contents: string;
    try {
      contents = readFileSync(path, 'utf8').trim();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      problems.push({
        name: fileName,
        value: path,
        problem: `cannot be read (${code})`,
        expected: `a readable file holding ${name}, or ${name} itself`,
      });
      continue;
    }
    if (contents === '') {
      problems.push({
        name: fileName,
        value: path,
        problem: 'is an empty file',
        expected: `a file holding ${name}, or ${name} itself`,
      });
      continue;
    }
    explicit[name] = contents;
  }
  return problems;
}

/**
 * Preset entries that make no sense beside a value the user set: the preset yields, so a preset
 * never causes an error; only the user's own contradictions do (checkSemantics).
 */
const presetYieldsTo: Partial<Record<SettingName, (explicit: Record<string, string>) => boolean>> = {
  // MAX_REQUESTS=0 turns recycling off: the preset's jitter has nothing left to spread.
  MAX_REQUESTS_JITTER: (explicit) =>
    explicit.MAX_REQUESTS !== undefined && Number(explicit.MAX_REQUESTS) === 0,
};

function presetFor(
  rawLevel: string | undefined,
  explicit: Record<string, string> = {},
): Record<string, string> {
  const level = rawLevel === undefined || rawLevel === '' ? 1 : Number(rawLevel);
  const preset = levelPresets[level] ?? {}; // an unknown LEVEL is reported by the schema check below
  return Object.fromEntries(
    Object.entries(preset).filter(([name]) => !presetYieldsTo[name as SettingName]?.(explicit)),
  ) as Record<string, string>;
}

/** Variables that once existed and would now silently do nothing: refused, with what replaced them. */
const RETIRED_SETTINGS: Record<string, string> = {
  ENABLE_DISTRIBUTED_MODE:
    'rate limits and the cache are always shared (in Redis when a Redis URL is set, else in PostgreSQL) and sessions live in PostgreSQL',
};

function retiredProblems(env: Record<string, string | undefined>): SettingProblem[] {
  return Object.entries(RETIRED_SETTINGS)
    .filter(([name]) => env[name] !== undefined && env[name] !== '')
    .map(([name, replacement]) => ({
      name,
      value: env[name],
      problem: 'is retired',
      expected: `it removed: ${replacement}`,
    }));
}

/** Load, coerce and validate settings. Throws SettingsError naming every bad variable. */
export function loadSettings(env: NodeJS.ProcessEnv = process.env, options: LoadOptions = {}): Settings {
  const fromFile = readEnvFile(options.envFile === undefined ? '.env' : options.envFile);
  const retired = retiredProblems({ ...fromFile, ...env });
  if (retired.length > 0) throw new SettingsError(retired);
  const explicit: Record<string, string> = { ...fromFile };
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && key in settingsSchema.properties) explicit[key] = value;
  }
  // An empty value means "not set", so the default (or preset) applies.
  for (const key of Object.keys(explicit)) if (explicit[key] === '') delete explicit[key];
  const fileProblems = readSecretFiles(explicit);
  if (fileProblems.length > 0) throw new SettingsError(fileProblems);

  const data = { ...presetFor(explicit.LEVEL, explicit), ...explicit };
  const validate = settingsValidator(settingsSchema);
  const coerced: Record<string, unknown> = { ...data };
  if (!validate(coerced)) throw new SettingsError(problemsFromAjv(validate.errors ?? [], data));
  const settings = coerced as Settings;
  const problems = checkSemantics(settings, options.signsTokens ?? false);
  if (problems.length > 0) throw new SettingsError(problems);
  if (settings.WORKERS === 0) settings.WORKERS = availableParallelism();
  return settings;
}

function problemsFromAjv(errors: AjvError[], data: Record<string, string>): SettingProblem[] {
  const seen = new Set<string>();
  const problems: SettingProblem[] = [];
  for (const error of errors) {
    const name = error.instancePath.replace(/^\//, '').split('/')[0] ?? '';
    if (!name || seen.has(name)) continue;
    seen.add(name);
    const property = settingsSchema.properties[name as SettingName];
    problems.push({
      name,
      value: data[name],
      problem: 'is not valid',
      expected: property ? describeExpected(property) : 'a valid value',
    });
  }
  return problems;
}

function checkSemantics(settings: Settings, signsTokens: boolean): SettingProblem[] {
  const problems: SettingProblem[] = [];
  if (settings.LISTEN_REUSE_PORT && !REUSE_PORT_PLATFORMS.has(process.platform)) {
    problems.push({
      name: 'LISTEN_REUSE_PORT',
      value: 'true',
      problem: `is not supported on ${process.platform}`,
      expected: 'false, or a platform with SO_REUSEPORT balancing (Linux, FreeBSD, Solaris, AIX)',
    });
  }
  const production = settings.NODE_ENV === 'production';
  if (settings.DATABASE_URL !== undefined) {
    const problem = checkPostgresUrl(settings.DATABASE_URL);
    if (problem) {
      problems.push({
        name: 'DATABASE_URL',
        value: settings.DATABASE_URL,
        problem,
        expected: 'postgres://user:password@host:5432/database',
      });
    }
  } else if (production) {
    problems.push({
      name: 'DATABASE_URL',
      value: undefined,
      problem: 'is not set, and NODE_ENV=production never uses the embedded PostgreSQL',
      expected: 'postgres://user:password@host:5432/database',
    });
  }
  if (settings.MIGRATIONS_DATABASE_URL !== undefined) {
    const problem =
      settings.DATABASE_URL === undefined
        ? 'is set while DATABASE_URL is not (the embedded PostgreSQL migrates itself)'
        : checkPostgresUrl(settings.MIGRATIONS_DATABASE_URL);
    if (problem) {
      problems.push({
        name: 'MIGRATIONS_DATABASE_URL',
        value: settings.MIGRATIONS_DATABASE_URL,
        problem,
        expected: 'postgres://user:password@host:5432/database (PostgreSQL itself, not PgBouncer)',
      });
    }
  }
  if (production && settings.CORS_ORIGINS.split(',').some((origin) => origin.trim() === '*')) {
    problems.push({
      name: 'CORS_ORIGINS',
      value: settings.CORS_ORIGINS,
      problem: 'allows any origin, which NODE_ENV=production refuses',
      expected: 'a comma-separated list of origins such as https://app.example.com',
    });
  }
  const trust = parseTrustProxy(settings.TRUST_PROXY);
  if (typeof trust === 'string') {
    problems.push({
      name: 'TRUST_PROXY',
      value: settings.TRUST_PROXY,
      problem: trust,
      expected: TRUST_PROXY_EXPECTED,
    });
  }
  problems.push(...checkBackgroundTasks(settings, production));
  problems.push(...checkTracing(settings));
  problems.push(...checkAuthSettings(settings, production, signsTokens));
  if (settings.MAX_REQUESTS === 0 && settings.MAX_REQUESTS_JITTER > 0) {
    problems.push({
      name: 'MAX_REQUESTS_JITTER',
      value: String(settings.MAX_REQUESTS_JITTER),
      problem: 'is set while MAX_REQUESTS=0 (recycling off)',
      expected: '0, or set MAX_REQUESTS too',
    });
  }
  return problems;
}

function checkPostgresUrl(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    return `has scheme "${url.protocol.replace(/:$/, '')}"`;
  }
  if (!url.hostname && !url.searchParams.get('host')) return 'names no host';
  return undefined;
}

function checkBackgroundTasks(settings: Settings, production: boolean): SettingProblem[] {
  const problems: SettingProblem[] = checkRedisSettings(settings, production);
  const user = settings.BULL_BOARD_USER;
  const password = settings.BULL_BOARD_PASSWORD;
  if ((user === '') !== (password === '')) {
    problems.push({
      name: user ? 'BULL_BOARD_PASSWORD' : 'BULL_BOARD_USER',
      value: undefined,
      problem: 'is empty while the other dashboard credential is set',
      expected: 'both BULL_BOARD_USER and BULL_BOARD_PASSWORD, or neither (dashboard off)',
    });
  } else if (production && password !== '' && password.length < 12) {
    problems.push({
      name: 'BULL_BOARD_PASSWORD',
      value: password,
      problem: 'is shorter than 12 characters, which NODE_ENV=production refuses',
      expected: 'a password of 12 or more characters',
    });
  }
  return problems;
}

function checkTracing(settings: Settings): SettingProblem[] {
  const problems: SettingProblem[] = [];
  for (const name of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] as const) {
    const value = settings[name];
    if (value === undefined) continue;
    let protocol = '';
    try {
      protocol = new URL(value).protocol;
    } catch {}
    if (protocol !== 'http:' && protocol !== 'https:') {
      problems.push({ name, value, problem: 'is not an http(s) URL', expected: 'http://collector:4318' });
    }
  }
  if (settings.OTEL_BSP_MAX_EXPORT_BATCH_SIZE > settings.OTEL_BSP_MAX_QUEUE_SIZE) {
    problems.push({
      name: 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
      value: String(settings.OTEL_BSP_MAX_EXPORT_BATCH_SIZE),
      problem: 'is larger than OTEL_BSP_MAX_QUEUE_SIZE',
      expected: `at most ${settings.OTEL_BSP_MAX_QUEUE_SIZE}`,
    });
  }
  return problems;
}

/** Platforms where Node's `listen({ reusePort: true })` balances connections across sockets. */
const REUSE_PORT_PLATFORMS: ReadonlySet<string> = new Set(['linux', 'freebsd', 'sunos', 'aix']);

/** Cluster workers bind their own SO_REUSEPORT listener: explicit, or on by default on Linux. */
export function listensWithReusePort(settings: Settings): boolean {
  return settings.LISTEN_REUSE_PORT ?? process.platform === 'linux';
}

/** TRUST_PROXY parsed (loadSettings has validated it). */
export function trustProxyOf(settings: Settings): TrustProxy {
  const trust = parseTrustProxy(settings.TRUST_PROXY);
  if (typeof trust === 'string') {
    throw new SettingsError([
      { name: 'TRUST_PROXY', value: settings.TRUST_PROXY, problem: trust, expected: TRUST_PROXY_EXPECTED },
    ]);
  }
  return trust;
}

/**
 * Where rate limits and the cache live: in Redis when one is configured (REDIS_URL, REDIS_SENTINELS
 * or SHARED_CACHE_URL), at any level; otherwise in PostgreSQL (limits) and nowhere (cache). Never per
 * process: there is no setting that makes them so. Sessions always live in PostgreSQL.
 */
export function sharedStateStoreOf(settings: Settings): 'redis' | 'postgres' {
  return redisConfigured(settings) ? 'redis' : 'postgres';
}

/** The migrate step's connection: direct to PostgreSQL (a session), never through PgBouncer. */
export function migrationsUrlOf(settings: Settings, databaseUrl: string): string {
  return settings.MIGRATIONS_DATABASE_URL ?? databaseUrl;
}
