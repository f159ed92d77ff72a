/** Shared by run.ts and report.ts: scenarios.json, the result file shape, percentiles. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const LOADTEST_DIR = import.meta.dirname;
export const ROOT = resolve(LOADTEST_DIR, '..');
export const DEFAULT_RESULTS_DIR = resolve(LOADTEST_DIR, 'results');

export interface Thresholds {
  maxErrorRate: number;
  p95Ms: number;
  p99Ms: number;
}

export interface RouteSpec {
  name: string;
  /** light | db | cpu | io | task: how report.ts groups routes (CPU-bound vs I/O-bound). */
  kind: string;
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
  weight: number;
  /** "task": POST path, then GET pollPath until the task is completed (end-to-end latency). */
  flow?: 'task';
  pollPath?: string;
  pollIntervalMs?: number;
  timeoutMs?: number;
  /** A flow route is judged by its own thresholds, not by the request totals. */
  thresholds?: Partial<Thresholds>;
}

interface ScenarioSpec {
  description: string;
  levels: number[];
  extends?: string;
  routes: RouteSpec[];
}

export interface ScenarioFile {
  defaults: {
    rate: number;
    duration: number;
    /** Requests per route sent, and not counted, before the load: JIT, pools and caches warm. */
    warmupRequests: number;
    /** A smoke test: a few seconds, few samples, so looser latency limits than a real run. */
    quick: { rate: number; duration: number; thresholds?: Partial<Thresholds> };
    thresholds: Thresholds;
  };
  scenarios: Record<string, ScenarioSpec>;
}

export interface Scenario {
  name: string;
  description: string;
  routes: RouteSpec[];
}

export function loadScenarioFile(file = resolve(LOADTEST_DIR, 'scenarios.json')): ScenarioFile {
  return JSON.parse(readFileSync(file, 'utf8')) as ScenarioFile;
}

/** The scenario named, or the one whose `levels` include the level; `extends` prepends the parent's routes. */
export function resolveScenario(file: ScenarioFile, level: number, name?: string): Scenario {
  const entry = name
    ? Object.entries(file.scenarios).find(([key]) => key === name)
    : Object.entries(file.scenarios).find(([, spec]) => spec.levels.includes(level));
  if (!entry)
    throw new Error(`no scenario ${name ? `named ${name}` : `for level ${level}`} in scenarios.json`);
  const [key, spec] = entry;
  const parent = spec.extends ? resolveScenario(file, level, spec.extends).routes : [];
  return { name: key, description: spec.description, routes: [...parent, ...spec.routes] };
}

export interface RouteFigures {
  name: string;
  kind: string;
  /** Requests (or task flows) per second asked for. */
  targetRate: number;
  requests: number;
  errors: number;
  errorRate: number;
  /** Completed responses (or flows) per second. */
  throughput: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** One second of the load window: what completed in it (plain request routes together). */
export interface SecondSample {
  /** Seconds since the load started (0 = the first second). */
  second: number;
  requests: number;
  errors: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

export interface RunResult {
  level: number;
  scenario: string;
  runner: 'autocannon' | 'k6';
  startedAt: string;
  baseUrl: string;
  rate: number;
  duration: number;
  quick: boolean;
  thresholds: Thresholds;
  routes: RouteFigures[];
  /** Every plain request route together (task flows are judged on their own). */
  total: RouteFigures;
  /** Per-second samples (autocannon runs); k6 runs keep only its end-of-run summary, so none. */
  perSecond?: SecondSample[];
  failures: string[];
  passed: boolean;
}

/** Nearest-rank percentile of an ascending-sorted array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export function round(value: number, digits = 2): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
